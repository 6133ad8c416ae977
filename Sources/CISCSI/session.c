// The iSCSI session behind VMFSCore's ISCSIBlockDevice: libiscsi's asynchronous API driven by one
// event-loop thread per session, fed by any number of caller threads (see CISCSI.h).
//
// Ownership: the loop thread alone touches the libiscsi context while it is installed. A
// reconnect builds a new context on the caller's thread and hands it over; a dropped connection
// is destroyed by the loop thread, which then fails everything still in flight.

// _GNU_SOURCE comes from the package manifest.
#include "CISCSI.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

// One request on its way: submitted to libiscsi, or waiting to be.
struct flight {
    cvi_request *request;
    struct scsi_task *task;
    struct scsi_iovec iov;
    struct scsi_persistent_reserve_out_basic pr;
    struct cvi_session *session;
    struct flight *next, *prev;
    int timed_out;
};

struct cvi_session {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    pthread_mutex_t reconnect_lock;
    pthread_t thread;
    int wake_fd;
    int stop;

    // Loop thread only (installed under `lock`).
    struct iscsi_context *ctx;
    struct flight *flying;          // submitted, not answered

    // Under `lock`.
    struct flight *pending;         // queued by callers, not yet submitted (singly linked via next)
    struct flight *pending_tail;
    struct iscsi_context *replacement;  // a new connection for the loop thread to install
    int drop_requested;
    int connected;
    // Loop thread only: a callback saw the connection cancel its commands.
    int broken;
    uint64_t epoch;

    // Fixed after open.
    char portal[256];
    char target[256];
    char user[256];
    char password[256];
    char initiator[256];
    int has_credentials;
    int lun;
    uint32_t block_size;
    uint64_t block_count;
    int unmap_zeroes;
};

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void wake(struct cvi_session *s) {
    uint64_t one = 1;
    ssize_t ignored = write(s->wake_fd, &one, sizeof one);
    (void)ignored;
}

// ---- Connecting ----------------------------------------------------------------------------

struct wait_state {
    int done;
    int status;
    struct scsi_task *task;
};

static void on_step(struct iscsi_context *ctx, int status, void *command_data, void *private_data) {
    (void)ctx;
    struct wait_state *w = private_data;
    w->done = 1;
    w->status = status;
    w->task = command_data;
}

// Services `ctx` until `w->done` or the deadline; returns 0 when done.
static int wait_step(struct iscsi_context *ctx, struct wait_state *w, int64_t deadline) {
    while (!w->done) {
        int64_t left = deadline - now_ns();
        if (left <= 0) return -1;
        struct pollfd pfd = {.fd = iscsi_get_fd(ctx), .events = (short)iscsi_which_events(ctx)};
        int timeout = (int)(left / 1000000) + 1;
        if (timeout > 100) timeout = 100;
        int n = poll(&pfd, 1, timeout);
        if (n < 0 && errno != EINTR) return -1;
        if (n > 0 && iscsi_service(ctx, pfd.revents) < 0) {
            if (!w->done) return -2;
        }
    }
    return 0;
}

static void fail(int *failure, int code, char *message, size_t size, const char *text, const char *detail) {
    *failure = code;
    if (message && size) snprintf(message, size, "%s%s%s", text, detail && *detail ? ": " : "", detail ? detail : "");
}

static int classify_login_error(const char *error) {
    if (!error) return CVI_CONNECT_OTHER;
    if (strstr(error, "Authentication failure") || strstr(error, "Authorization failure")) return CVI_CONNECT_AUTH;
    if (strstr(error, "Target not found") || strstr(error, "Target removed")) return CVI_CONNECT_NO_TARGET;
    return CVI_CONNECT_OTHER;
}

// Connects and logs in a new context, checks the LUN and, with `capacity`, reads its size.
static struct iscsi_context *connect_context(struct cvi_session *s, int timeout_ms, int capacity,
                                             int *failure, char *message, size_t size) {
    int64_t deadline = now_ns() + (int64_t)timeout_ms * 1000000LL;
    struct iscsi_context *ctx = iscsi_create_context(s->initiator);
    if (!ctx) {
        fail(failure, CVI_CONNECT_OTHER, message, size, "cannot create an iSCSI context", NULL);
        return NULL;
    }
    iscsi_set_noautoreconnect(ctx, 1);
    iscsi_set_session_type(ctx, ISCSI_SESSION_NORMAL);
    iscsi_set_header_digest(ctx, ISCSI_HEADER_DIGEST_NONE);
    iscsi_set_targetname(ctx, s->target);
    if (s->has_credentials) iscsi_set_initiator_username_pwd(ctx, s->user, s->password);

    struct wait_state w = {0};
    if (iscsi_connect_async(ctx, s->portal, on_step, &w) != 0) {
        fail(failure, CVI_CONNECT_UNREACHABLE, message, size, "cannot connect", iscsi_get_error(ctx));
        iscsi_destroy_context(ctx);
        return NULL;
    }
    int waited = wait_step(ctx, &w, deadline);
    if (waited != 0 || w.status != 0) {
        fail(failure, waited == -1 ? CVI_CONNECT_UNREACHABLE : CVI_CONNECT_UNREACHABLE, message, size,
             waited == -1 ? "no TCP connection within the time limit" : "TCP connection failed", iscsi_get_error(ctx));
        iscsi_destroy_context(ctx);
        return NULL;
    }
    memset(&w, 0, sizeof w);
    if (iscsi_login_async(ctx, on_step, &w) != 0) {
        fail(failure, CVI_CONNECT_OTHER, message, size, "cannot send the login", iscsi_get_error(ctx));
        iscsi_destroy_context(ctx);
        return NULL;
    }
    waited = wait_step(ctx, &w, deadline);
    if (waited != 0 || w.status != 0) {
        const char *error = iscsi_get_error(ctx);
        fail(failure, waited == -1 ? CVI_CONNECT_TIMEOUT : classify_login_error(error), message, size,
             waited == -1 ? "the login did not finish in time" : "login refused", error);
        iscsi_destroy_context(ctx);
        return NULL;
    }
    // A new session starts with unit attentions (power on, reset): eat them.
    for (int attempt = 0; attempt < 16; attempt++) {
        memset(&w, 0, sizeof w);
        if (!iscsi_testunitready_task(ctx, s->lun, on_step, &w)) {
            fail(failure, CVI_CONNECT_OTHER, message, size, "cannot send TEST UNIT READY", iscsi_get_error(ctx));
            iscsi_destroy_context(ctx);
            return NULL;
        }
        if (wait_step(ctx, &w, deadline) != 0) {
            fail(failure, CVI_CONNECT_TIMEOUT, message, size, "TEST UNIT READY did not answer in time", iscsi_get_error(ctx));
            iscsi_destroy_context(ctx);
            return NULL;
        }
        int status = w.status;
        int key = w.task ? (int)w.task->sense.key : 0;
        int asc = w.task ? (w.task->sense.ascq >> 8) & 0xff : 0;
        if (w.task) scsi_free_scsi_task(w.task);
        if (status == SCSI_STATUS_GOOD || status == SCSI_STATUS_RESERVATION_CONFLICT) break;
        if (status == SCSI_STATUS_CHECK_CONDITION && key == SCSI_SENSE_UNIT_ATTENTION) continue;
        if (status == SCSI_STATUS_CHECK_CONDITION && key == SCSI_SENSE_ILLEGAL_REQUEST && asc == 0x25) {
            char detail[64];
            snprintf(detail, sizeof detail, "LUN %d is not supported by the target", s->lun);
            fail(failure, CVI_CONNECT_NO_LUN, message, size, "no such LUN", detail);
            iscsi_destroy_context(ctx);
            return NULL;
        }
        char detail[96];
        snprintf(detail, sizeof detail, "status 0x%x, sense key 0x%x, asc 0x%x", status, key, asc);
        fail(failure, CVI_CONNECT_NO_LUN, message, size, "the LUN is not ready", detail);
        iscsi_destroy_context(ctx);
        return NULL;
    }
    if (capacity) {
        memset(&w, 0, sizeof w);
        if (!iscsi_readcapacity16_task(ctx, s->lun, on_step, &w) || wait_step(ctx, &w, deadline) != 0) {
            fail(failure, CVI_CONNECT_TIMEOUT, message, size, "READ CAPACITY(16) failed", iscsi_get_error(ctx));
            iscsi_destroy_context(ctx);
            return NULL;
        }
        struct scsi_readcapacity16 *rc = NULL;
        if (w.status == SCSI_STATUS_GOOD && w.task) rc = scsi_datain_unmarshall(w.task);
        if (!rc || rc->block_length == 0) {
            if (w.task) scsi_free_scsi_task(w.task);
            fail(failure, CVI_CONNECT_NO_LUN, message, size, "READ CAPACITY(16) gave no usable answer", NULL);
            iscsi_destroy_context(ctx);
            return NULL;
        }
        s->block_size = rc->block_length;
        s->block_count = rc->returned_lba + 1;
        s->unmap_zeroes = rc->lbpme && rc->lbprz;
        scsi_free_scsi_task(w.task);
    }
    return ctx;
}

// ---- The event loop ------------------------------------------------------------------------

static void finish(struct flight *f, int result, struct scsi_task *task) {
    struct cvi_session *s = f->session;
    cvi_request *r = f->request;
    if (f->timed_out) result = CVI_TIMEOUT;
    r->result = result;
    if (task) {
        r->status = task->status;
        r->sense_key = (int)task->sense.key;
        r->asc = (task->sense.ascq >> 8) & 0xff;
        r->ascq = task->sense.ascq & 0xff;
        if (r->op == CVI_OP_PR_IN && result == CVI_GOOD && task->datain.data && r->buffer) {
            uint32_t n = (uint32_t)task->datain.size;
            if (n > r->length) n = r->length;
            memcpy(r->buffer, task->datain.data, n);
            r->received = n;
        }
        scsi_free_scsi_task(task);
    }
    // Unlink from the flying list.
    if (f->prev) f->prev->next = f->next; else if (s->flying == f) s->flying = f->next;
    if (f->next) f->next->prev = f->prev;
    free(f);
    pthread_mutex_lock(&s->lock);
    r->done = 1;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
}

static void on_command(struct iscsi_context *ctx, int status, void *command_data, void *private_data) {
    (void)ctx;
    struct flight *f = private_data;
    struct scsi_task *task = command_data;
    int result;
    switch (status) {
    case SCSI_STATUS_GOOD: result = CVI_GOOD; break;
    case SCSI_STATUS_CHECK_CONDITION: result = CVI_CHECK_CONDITION; break;
    case SCSI_STATUS_RESERVATION_CONFLICT: result = CVI_RESERVATION_CONFLICT; break;
    case SCSI_STATUS_BUSY: case SCSI_STATUS_TASK_SET_FULL: result = CVI_BUSY; break;
    case SCSI_STATUS_CANCELLED: result = CVI_CONNECTION; f->session->broken = 1; break;
    case SCSI_STATUS_TIMEOUT: result = CVI_TIMEOUT; break;
    default: result = CVI_FAILED; break;
    }
    if (!task) task = f->task;
    f->task = NULL;
    finish(f, result, task);
}

static void on_task_management(struct iscsi_context *ctx, int status, void *command_data, void *private_data) {
    (void)ctx;
    struct flight *f = private_data;
    int response = command_data ? *(uint32_t *)command_data : -1;
    int result = status == SCSI_STATUS_CANCELLED ? CVI_CONNECTION
               : (status == SCSI_STATUS_GOOD && response == 0) ? CVI_GOOD : CVI_FAILED;
    if (status == SCSI_STATUS_CANCELLED) f->session->broken = 1;
    f->request->status = response;
    finish(f, result, NULL);
}

static int submit(struct cvi_session *s, struct flight *f) {
    cvi_request *r = f->request;
    struct iscsi_context *ctx = s->ctx;
    int bs = (int)s->block_size;
    struct scsi_task *task = NULL;
    switch (r->op) {
    case CVI_OP_READ:
        f->iov.iov_base = r->buffer;
        f->iov.iov_len = r->length;
        task = iscsi_read16_iov_task(ctx, s->lun, r->lba, r->length, bs, 0, 0, 0, 0, 0, on_command, f, &f->iov, 1);
        break;
    case CVI_OP_WRITE:
        task = iscsi_write16_task(ctx, s->lun, r->lba, r->buffer, r->length, bs, 0, 0, 0, 0, 0, on_command, f);
        break;
    case CVI_OP_COMPARE_AND_WRITE:
        task = iscsi_compareandwrite_task(ctx, s->lun, r->lba, r->buffer, r->length, bs, 0, 0, 0, 0, 0, on_command, f);
        break;
    case CVI_OP_SYNC:
        task = iscsi_synchronizecache16_task(ctx, s->lun, 0, 0, 0, 0, on_command, f);
        break;
    case CVI_OP_TEST_UNIT_READY:
        task = iscsi_testunitready_task(ctx, s->lun, on_command, f);
        break;
    case CVI_OP_RESERVE6:
        task = iscsi_reserve6_task(ctx, s->lun, on_command, f);
        break;
    case CVI_OP_RELEASE6:
        task = iscsi_release6_task(ctx, s->lun, on_command, f);
        break;
    case CVI_OP_PR_IN:
        task = iscsi_persistent_reserve_in_task(ctx, s->lun, r->service_action,
                                                (uint16_t)(r->length > 0xffff ? 0xffff : r->length), on_command, f);
        break;
    case CVI_OP_PR_OUT:
        memset(&f->pr, 0, sizeof f->pr);
        f->pr.reservation_key = r->key;
        f->pr.service_action_reservation_key = r->sa_key;
        task = iscsi_persistent_reserve_out_task(ctx, s->lun, r->service_action, SCSI_PERSISTENT_RESERVE_SCOPE_LU,
                                                 r->pr_type, &f->pr, on_command, f);
        break;
    case CVI_OP_UNMAP: {
        struct unmap_list list = {.lba = r->lba, .num = r->blocks};
        task = iscsi_unmap_task(ctx, s->lun, 0, 0, &list, 1, on_command, f);
        break;
    }
    case CVI_OP_LUN_RESET:
        if (iscsi_task_mgmt_lun_reset_async(ctx, (uint32_t)s->lun, on_task_management, f) != 0) return -1;
        return 0;
    default:
        return -1;
    }
    if (!task) return -1;
    // Kept to free it if the connection drops before the answer comes.
    f->task = task;
    return 0;
}

// Drops the connection: everything in flight fails (timed-out requests with CVI_TIMEOUT).
static void break_connection(struct cvi_session *s) {
    struct iscsi_context *ctx = s->ctx;
    s->ctx = NULL;
    pthread_mutex_lock(&s->lock);
    s->connected = 0;
    pthread_mutex_unlock(&s->lock);
    if (ctx) {
        // Callbacks may run from here for commands libiscsi still knew of; they finish those.
        iscsi_destroy_context(ctx);
    }
    while (s->flying) {
        struct flight *f = s->flying;
        struct scsi_task *task = f->task;
        f->task = NULL;
        finish(f, CVI_CONNECTION, task);
    }
}

static void *loop(void *argument) {
    struct cvi_session *s = argument;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        if (s->stop && !s->pending && !s->flying) {
            pthread_mutex_unlock(&s->lock);
            break;
        }
        struct iscsi_context *replacement = s->replacement;
        s->replacement = NULL;
        int drop = s->drop_requested;
        s->drop_requested = 0;
        struct flight *batch = s->pending;
        s->pending = s->pending_tail = NULL;
        pthread_mutex_unlock(&s->lock);

        if (drop) break_connection(s);
        if (replacement) {
            if (s->ctx) break_connection(s);
            s->ctx = replacement;
            pthread_mutex_lock(&s->lock);
            s->connected = 1;
            s->epoch++;
            pthread_cond_broadcast(&s->changed);
            pthread_mutex_unlock(&s->lock);
        }
        while (batch) {
            struct flight *f = batch;
            batch = batch->next;
            f->next = s->flying;
            f->prev = NULL;
            if (s->flying) s->flying->prev = f;
            s->flying = f;
            if (!s->ctx) {
                finish(f, CVI_CONNECTION, NULL);
            } else if (submit(s, f) != 0) {
                struct scsi_task *task = f->task;
                f->task = NULL;
                finish(f, CVI_FAILED, task);
            }
        }

        struct pollfd fds[2] = {{.fd = s->wake_fd, .events = POLLIN}, {.fd = -1}};
        int nfds = 1;
        if (s->ctx) {
            fds[1].fd = iscsi_get_fd(s->ctx);
            fds[1].events = (short)iscsi_which_events(s->ctx);
            nfds = 2;
        }
        int timeout = s->flying ? 10 : 200;
        int n = poll(fds, (nfds_t)nfds, timeout);
        if (n < 0 && errno != EINTR) continue;
        if (fds[0].revents & POLLIN) {
            uint64_t count;
            ssize_t ignored = read(s->wake_fd, &count, sizeof count);
            (void)ignored;
        }
        if (s->ctx && nfds == 2 && fds[1].revents) {
            s->broken = 0;
            int serviced = iscsi_service(s->ctx, fds[1].revents);
            if (serviced < 0 || s->broken || iscsi_get_fd(s->ctx) < 0) break_connection(s);
        }
        // Requests past their deadline: the connection is dropped so the target aborts them and
        // no buffer stays in libiscsi's hands.
        if (s->flying) {
            int64_t now = now_ns();
            int overdue = 0;
            for (struct flight *f = s->flying; f; f = f->next) {
                if (f->request->deadline_ns && now > f->request->deadline_ns) {
                    f->timed_out = 1;
                    overdue = 1;
                }
            }
            if (overdue) break_connection(s);
        }
    }
    if (s->ctx) {
        // A clean logout when the target answers within a second; the connection goes anyway.
        struct wait_state w = {0};
        if (iscsi_logout_async(s->ctx, on_step, &w) == 0) wait_step(s->ctx, &w, now_ns() + 1000000000LL);
        break_connection(s);
    }
    return NULL;
}

// ---- Public API ----------------------------------------------------------------------------

static void copy_string(char *target, size_t size, const char *source) {
    snprintf(target, size, "%s", source ? source : "");
}

cvi_session *cvi_open(const cvi_connect_params *params, int *failure, char *message, size_t message_size) {
    *failure = CVI_CONNECT_OK;
    struct cvi_session *s = calloc(1, sizeof *s);
    if (!s) {
        fail(failure, CVI_CONNECT_OTHER, message, message_size, "out of memory", NULL);
        return NULL;
    }
    copy_string(s->portal, sizeof s->portal, params->portal);
    copy_string(s->target, sizeof s->target, params->target);
    copy_string(s->initiator, sizeof s->initiator, params->initiator);
    s->has_credentials = params->user != NULL && params->user[0] != 0;
    copy_string(s->user, sizeof s->user, params->user);
    copy_string(s->password, sizeof s->password, params->password);
    s->lun = params->lun;
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->reconnect_lock, NULL);
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&s->changed, &attributes);
    pthread_condattr_destroy(&attributes);
    s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    s->ctx = connect_context(s, params->timeout_ms, 1, failure, message, message_size);
    if (!s->ctx || s->wake_fd < 0) {
        if (s->ctx) iscsi_destroy_context(s->ctx);
        if (s->wake_fd >= 0) close(s->wake_fd);
        if (*failure == CVI_CONNECT_OK) fail(failure, CVI_CONNECT_OTHER, message, message_size, "eventfd failed", NULL);
        pthread_cond_destroy(&s->changed);
        pthread_mutex_destroy(&s->lock);
        pthread_mutex_destroy(&s->reconnect_lock);
        free(s);
        return NULL;
    }
    s->connected = 1;
    s->epoch = 1;
    if (pthread_create(&s->thread, NULL, loop, s) != 0) {
        iscsi_destroy_context(s->ctx);
        close(s->wake_fd);
        fail(failure, CVI_CONNECT_OTHER, message, message_size, "cannot start the iSCSI event thread", NULL);
        free(s);
        return NULL;
    }
    return s;
}

void cvi_close(cvi_session *s) {
    if (!s) return;
    pthread_mutex_lock(&s->lock);
    s->stop = 1;
    pthread_mutex_unlock(&s->lock);
    wake(s);
    pthread_join(s->thread, NULL);
    if (s->replacement) iscsi_destroy_context(s->replacement);
    close(s->wake_fd);
    pthread_cond_destroy(&s->changed);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->reconnect_lock);
    free(s);
}

uint32_t cvi_block_size(const cvi_session *s) { return s->block_size; }
uint64_t cvi_block_count(const cvi_session *s) { return s->block_count; }
int cvi_unmap_zeroes(const cvi_session *s) { return s->unmap_zeroes; }

uint64_t cvi_epoch(cvi_session *s) {
    pthread_mutex_lock(&s->lock);
    uint64_t epoch = s->epoch;
    pthread_mutex_unlock(&s->lock);
    return epoch;
}

int cvi_connected(cvi_session *s) {
    pthread_mutex_lock(&s->lock);
    int connected = s->connected;
    pthread_mutex_unlock(&s->lock);
    return connected;
}

void cvi_disconnect(cvi_session *s) {
    pthread_mutex_lock(&s->lock);
    s->drop_requested = 1;
    pthread_mutex_unlock(&s->lock);
    wake(s);
    // Wait until the loop thread has dropped it.
    pthread_mutex_lock(&s->lock);
    while (s->drop_requested) {
        pthread_mutex_unlock(&s->lock);
        usleep(1000);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
}

int cvi_reconnect(cvi_session *s, uint64_t seen_epoch, int timeout_ms, int *failure, char *message, size_t size) {
    *failure = CVI_CONNECT_OK;
    pthread_mutex_lock(&s->reconnect_lock);
    pthread_mutex_lock(&s->lock);
    int current = s->epoch > seen_epoch && s->connected;
    pthread_mutex_unlock(&s->lock);
    if (current) {
        pthread_mutex_unlock(&s->reconnect_lock);
        return 0;
    }
    struct iscsi_context *ctx = connect_context(s, timeout_ms, 0, failure, message, size);
    if (!ctx) {
        pthread_mutex_unlock(&s->reconnect_lock);
        return -1;
    }
    pthread_mutex_lock(&s->lock);
    if (s->replacement) iscsi_destroy_context(s->replacement);
    s->replacement = ctx;
    uint64_t before = s->epoch;
    pthread_mutex_unlock(&s->lock);
    wake(s);
    pthread_mutex_lock(&s->lock);
    while (s->epoch == before && !s->stop) pthread_cond_wait(&s->changed, &s->lock);
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_unlock(&s->reconnect_lock);
    return 0;
}

void cvi_execute(cvi_session *s, cvi_request *requests, int count, int timeout_ms) {
    if (count <= 0) return;
    int64_t deadline = timeout_ms > 0 ? now_ns() + (int64_t)timeout_ms * 1000000LL : 0;
    struct flight *first = NULL, *last = NULL;
    for (int i = 0; i < count; i++) {
        cvi_request *r = &requests[i];
        r->result = CVI_FAILED;
        r->status = r->sense_key = r->asc = r->ascq = 0;
        r->received = 0;
        r->done = 0;
        r->deadline_ns = deadline;
        struct flight *f = calloc(1, sizeof *f);
        if (!f) {
            r->done = 1;
            continue;
        }
        f->request = r;
        f->session = s;
        if (last) last->next = f; else first = f;
        last = f;
    }
    pthread_mutex_lock(&s->lock);
    if (first) {
        if (s->pending_tail) s->pending_tail->next = first; else s->pending = first;
        s->pending_tail = last;
    }
    pthread_mutex_unlock(&s->lock);
    wake(s);
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < count; i++) {
        while (!requests[i].done) pthread_cond_wait(&s->changed, &s->lock);
    }
    pthread_mutex_unlock(&s->lock);
}
