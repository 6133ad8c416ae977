#ifndef CISCSI_H
#define CISCSI_H

// A thin, thread-safe layer over libiscsi for VMFSCore's iSCSI block device.
//
// One `cvi_session` is one iSCSI session (one I_T nexus) to one LUN. A private thread runs
// libiscsi's event loop; any number of caller threads hand it batches of SCSI commands with
// `cvi_execute`, which returns when every command of the batch has completed. Commands of all
// batches are in flight together (up to the queue depth). The header keeps libiscsi's types
// out of Swift: everything crosses as plain integers and pointers.

#include <stdint.h>
#include <stddef.h>

typedef struct cvi_session cvi_session;

/// Why a connection attempt failed.
enum cvi_connect_failure {
    CVI_CONNECT_OK = 0,
    /// TCP connection to the portal failed (refused, no route, timed out).
    CVI_CONNECT_UNREACHABLE = 1,
    /// The target refused the login: no such target name.
    CVI_CONNECT_NO_TARGET = 2,
    /// The target refused the login: authentication or authorization failed.
    CVI_CONNECT_AUTH = 3,
    /// Logged in, but the LUN does not exist or cannot be used.
    CVI_CONNECT_NO_LUN = 4,
    /// The whole attempt did not finish within its time.
    CVI_CONNECT_TIMEOUT = 5,
    /// Anything else (the message says what).
    CVI_CONNECT_OTHER = 6,
};

/// What to connect to.
typedef struct cvi_connect_params {
    /// "host:port" (IPv6 hosts in brackets).
    const char *portal;
    /// Target IQN.
    const char *target;
    int lun;
    /// CHAP user and secret; NULL when none.
    const char *user;
    const char *password;
    /// This initiator's IQN.
    const char *initiator;
    /// Limit for the whole connect + login + LUN check.
    int timeout_ms;
} cvi_connect_params;

/// SCSI commands a request can carry.
enum cvi_op {
    CVI_OP_READ = 0,               // READ(16): buffer receives blocks * block size bytes
    CVI_OP_WRITE = 1,              // WRITE(16): buffer holds blocks * block size bytes
    CVI_OP_COMPARE_AND_WRITE = 2,  // COMPARE AND WRITE: buffer = compare data then write data
    CVI_OP_SYNC = 3,               // SYNCHRONIZE CACHE(16) of the whole LUN
    CVI_OP_TEST_UNIT_READY = 4,
    CVI_OP_RESERVE6 = 5,           // SCSI-2 RESERVE(6) of the whole LUN
    CVI_OP_RELEASE6 = 6,           // SCSI-2 RELEASE(6)
    CVI_OP_PR_IN = 7,              // PERSISTENT RESERVE IN, service action `service_action`; raw data into buffer
    CVI_OP_PR_OUT = 8,             // PERSISTENT RESERVE OUT (`service_action`, `pr_type`, `key`, `sa_key`)
    CVI_OP_LUN_RESET = 9,          // task management: LOGICAL UNIT RESET
    CVI_OP_UNMAP = 10,             // UNMAP of blocks at lba
};

/// How a request ended.
enum cvi_result {
    CVI_GOOD = 0,
    CVI_CHECK_CONDITION = 1,       // sense_key / asc / ascq say why
    CVI_RESERVATION_CONFLICT = 2,
    CVI_BUSY = 3,                  // BUSY or TASK SET FULL: try again
    CVI_CONNECTION = 4,            // the connection broke (or was not up): the command may or may not have run
    CVI_TIMEOUT = 5,               // no answer within the batch's time; the connection was dropped
    CVI_FAILED = 6,                // could not be sent, or another status
};

typedef struct cvi_request {
    int op;
    uint64_t lba;
    uint32_t blocks;
    void *buffer;
    uint32_t length;
    uint8_t service_action;
    uint8_t pr_type;
    uint64_t key;
    uint64_t sa_key;
    // Results.
    int result;
    int status;
    int sense_key;
    int asc;
    int ascq;
    /// Bytes of data received (PERSISTENT RESERVE IN).
    uint32_t received;
    // Used by the session while the request runs.
    void *internal;
    int64_t deadline_ns;
    int done;
} cvi_request;

/// Connects, logs in and checks the LUN (eats the unit attentions of a new session, reads the
/// capacity). Returns NULL on failure with `*failure` set and `message` filled.
cvi_session *cvi_open(const cvi_connect_params *params, int *failure, char *message, size_t message_size);

/// Logs out, stops the event loop and frees the session. No batch may be running.
void cvi_close(cvi_session *session);

/// The LUN's logical block size and block count (READ CAPACITY(16) at open).
uint32_t cvi_block_size(const cvi_session *session);
uint64_t cvi_block_count(const cvi_session *session);
/// Logical block provisioning: 1 when the LUN supports UNMAP and reads unmapped blocks as zero.
int cvi_unmap_zeroes(const cvi_session *session);

/// The connection's generation: +1 on every successful reconnect.
uint64_t cvi_epoch(cvi_session *session);
/// 1 while the connection is up.
int cvi_connected(cvi_session *session);

/// Drops the connection now (commands in flight fail with CVI_CONNECTION). For fault handling:
/// a new connection is a new I_T nexus.
void cvi_disconnect(cvi_session *session);

/// Connects again unless the generation already moved past `seen_epoch` (another thread did it).
/// Returns 0 on success, -1 with `*failure` and `message` set.
int cvi_reconnect(cvi_session *session, uint64_t seen_epoch, int timeout_ms, int *failure, char *message, size_t message_size);

/// Runs `count` requests and returns when each has a result. A request without an answer after
/// `timeout_ms` fails with CVI_TIMEOUT and the connection is dropped, so that no buffer is used
/// after this returns.
void cvi_execute(cvi_session *session, cvi_request *requests, int count, int timeout_ms);

#endif
