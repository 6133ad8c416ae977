#include "cvmfs_process.h"
#include "cvmfs_shared.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int cvmfs_memfd_create(const char *name, int allow_sealing) {
    int fd = memfd_create(name, MFD_CLOEXEC | (allow_sealing ? MFD_ALLOW_SEALING : 0));
    return fd < 0 ? -errno : fd;
}

int cvmfs_seqpacket_pair(int fds[2]) {
    return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) == 0 ? 0 : -errno;
}

static int fill_address(struct sockaddr_un *address, const char *path) {
    memset(address, 0, sizeof *address);
    address->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof address->sun_path) return -ENAMETOOLONG;
    strcpy(address->sun_path, path);
    return 0;
}

int cvmfs_seqpacket_listen(const char *path, int backlog) {
    struct sockaddr_un address;
    int r = fill_address(&address, path);
    if (r) return r;
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    unlink(path);
    if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0 || listen(fd, backlog) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int cvmfs_seqpacket_connect(const char *path) {
    struct sockaddr_un address;
    int r = fill_address(&address, path);
    if (r) return r;
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    while (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        if (errno == EINTR) continue;
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int cvmfs_accept(int fd) {
    for (;;) {
        int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        if (c >= 0) return c;
        if (errno != EINTR) return -errno;
    }
}

#define MAX_FDS 64

ssize_t cvmfs_send_with_fds(int socket, const void *data, size_t length, const int *fds, int fd_count) {
    if (fd_count < 0 || fd_count > MAX_FDS) return -EINVAL;
    struct iovec iov = {(void *)data, length};
    struct msghdr message;
    memset(&message, 0, sizeof message);
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    union {
        char buffer[CMSG_SPACE(sizeof(int) * MAX_FDS)];
        struct cmsghdr align;
    } control;
    if (fd_count > 0) {
        memset(&control, 0, sizeof control);
        message.msg_control = control.buffer;
        message.msg_controllen = CMSG_SPACE(sizeof(int) * fd_count);
        struct cmsghdr *header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int) * fd_count);
        memcpy(CMSG_DATA(header), fds, sizeof(int) * fd_count);
    }
    for (;;) {
        ssize_t n = sendmsg(socket, &message, MSG_NOSIGNAL);
        if (n >= 0) return n;
        if (errno != EINTR) return -errno;
    }
}

ssize_t cvmfs_receive_with_fds(int socket, void *buffer, size_t length, int *fds, int max_fds,
                               int *fd_count, int *truncated) {
    *fd_count = 0;
    *truncated = 0;
    struct iovec iov = {buffer, length};
    struct msghdr message;
    union {
        char buffer[CMSG_SPACE(sizeof(int) * MAX_FDS)];
        struct cmsghdr align;
    } control;
    ssize_t n;
    /* A peer that closed with frames of ours unread makes Linux report ECONNRESET once, before
     * the frames it sent us before closing (SOCK_SEQPACKET checks the socket error first): read
     * past one reset, so that those frames, then end of stream, still arrive. */
    int reset_seen = 0;
    for (;;) {
        memset(&message, 0, sizeof message);
        message.msg_iov = &iov;
        message.msg_iovlen = 1;
        message.msg_control = control.buffer;
        message.msg_controllen = sizeof control.buffer;
        n = recvmsg(socket, &message, MSG_CMSG_CLOEXEC);
        if (n >= 0) break;
        if (errno == ECONNRESET && !reset_seen) {
            reset_seen = 1;
            continue;
        }
        if (errno != EINTR) return -errno;
    }
    if (message.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) *truncated = 1;
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header; header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
        int count = (int)((header->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *received = (int *)CMSG_DATA(header);
        for (int i = 0; i < count; i++) {
            if (*fd_count < max_fds) {
                fds[(*fd_count)++] = received[i];
            } else {
                close(received[i]);
                *truncated = 1;
            }
        }
    }
    return n;
}

int cvmfs_peer_credentials(int socket, pid_t *pid, uid_t *uid, gid_t *gid) {
    struct ucred credentials;
    socklen_t size = sizeof credentials;
    if (getsockopt(socket, SOL_SOCKET, SO_PEERCRED, &credentials, &size) != 0) return -errno;
    *pid = credentials.pid;
    *uid = credentials.uid;
    *gid = credentials.gid;
    return 0;
}

int cvmfs_poll_one(int fd, short events, int timeout_ms) {
    struct pollfd entry = {fd, events, 0};
    for (;;) {
        int r = poll(&entry, 1, timeout_ms);
        if (r > 0) return entry.revents;
        if (r == 0) return 0;
        if (errno != EINTR) return -errno;
    }
}

int cvmfs_pidfd_open(pid_t pid) {
    long fd = syscall(SYS_pidfd_open, pid, 0);
    return fd < 0 ? -errno : (int)fd;
}

pid_t cvmfs_spawn_detached(const char *path, char *const argv[], int log_fd) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attributes);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    if (log_fd >= 0) {
        posix_spawn_file_actions_adddup2(&actions, log_fd, 1);
        posix_spawn_file_actions_adddup2(&actions, log_fd, 2);
    } else {
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    }
    /* Nothing of the parent's but stdio reaches the child: not its listening sockets, volumes or
     * other VMs' channels (descriptors NIO opened without O_CLOEXEC included). */
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attributes, &none);
    posix_spawnattr_setsigdefault(&attributes, &all);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid = 0;
    int r = posix_spawn(&pid, path, &actions, &attributes, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    return r == 0 ? pid : -r;
}

int cvmfs_kill(pid_t pid, int signal) { return kill(pid, signal) == 0 ? 0 : -errno; }

pid_t cvmfs_wait_nohang(pid_t pid, int *status) {
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r >= 0) return r;
        if (errno != EINTR) return -errno;
    }
}

int cvmfs_process_start_time(pid_t pid, uint64_t *ticks) {
    char path[64], buffer[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    ssize_t n = read(fd, buffer, sizeof buffer - 1);
    int e = errno;
    close(fd);
    if (n <= 0) return n < 0 ? -e : -EIO;
    buffer[n] = 0;
    /* The command name (field 2) may contain spaces and parentheses: count from the last ')'. */
    char *p = strrchr(buffer, ')');
    if (!p) return -EIO;
    int field = 2;
    for (p++; *p && field < 22; p++)
        if (*p == ' ') field++;
    if (field != 22) return -EIO;
    char *end = NULL;
    unsigned long long value = strtoull(p, &end, 10);
    if (end == p) return -EIO;
    *ticks = value;
    return 0;
}

int cvmfs_exit_status_exited(int status) { return WIFEXITED(status); }
int cvmfs_exit_status_code(int status) { return WEXITSTATUS(status); }
int cvmfs_exit_status_signaled(int status) { return WIFSIGNALED(status); }
int cvmfs_exit_status_signal(int status) { return WTERMSIG(status); }

int cvmfs_memfd_seal_size(int fd) {
    return fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0 ? 0 : -errno;
}

int cvmfs_memfd_size_is_sealed(int fd) {
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0) return -errno;
    return (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) == (F_SEAL_SHRINK | F_SEAL_GROW);
}
