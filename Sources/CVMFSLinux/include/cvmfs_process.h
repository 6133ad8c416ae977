#ifndef CVMFS_PROCESS_H
#define CVMFS_PROCESS_H

// Process, socket and shared-memory calls for the host agent and the VMM processes that Swift's
// Glibc module does not show (CMSG macros, _GNU_SOURCE-only calls, variadic calls). All return
// -errno on failure.

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

/// memfd_create(name, MFD_CLOEXEC [| MFD_ALLOW_SEALING]); a descriptor or -errno.
int cvmfs_memfd_create(const char *name, int allow_sealing);
/// socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC); 0 or -errno.
int cvmfs_seqpacket_pair(int fds[2]);
/// A SOCK_SEQPACKET socket bound to `path` and listening (the path is unlinked first); fd or -errno.
int cvmfs_seqpacket_listen(const char *path, int backlog);
/// A SOCK_SEQPACKET socket connected to `path`; fd or -errno.
int cvmfs_seqpacket_connect(const char *path);
/// accept4(fd, SOCK_CLOEXEC); fd or -errno.
int cvmfs_accept(int fd);
/// Sends one message of `length` bytes with `fd_count` descriptors (SCM_RIGHTS), MSG_NOSIGNAL.
/// Returns the bytes sent or -errno.
ssize_t cvmfs_send_with_fds(int socket, const void *data, size_t length, const int *fds, int fd_count);
/// Receives one message into `buffer` and up to `max_fds` descriptors (marked close-on-exec).
/// Sets *fd_count and *truncated (1 when the message or the descriptors did not fit; extra
/// descriptors are closed). Returns the bytes received (0 at end of stream) or -errno.
ssize_t cvmfs_receive_with_fds(int socket, void *buffer, size_t length, int *fds, int max_fds,
                               int *fd_count, int *truncated);
/// The peer's credentials (SO_PEERCRED); 0 or -errno.
int cvmfs_peer_credentials(int socket, pid_t *pid, uid_t *uid, gid_t *gid);
/// poll(2) on one descriptor for `events` (POLLIN = 1, POLLOUT = 4) up to `timeout_ms` (-1: forever).
/// Returns the revents (0 on timeout) or -errno; EINTR is retried.
int cvmfs_poll_one(int fd, short events, int timeout_ms);
/// pidfd_open(pid, 0); a descriptor or -errno.
int cvmfs_pidfd_open(pid_t pid);
/// Starts `path` with `argv` (NULL-terminated) in a new session (setsid), with the default signal
/// dispositions and an empty signal mask, stdin from /dev/null and stdout/stderr to `log_fd` (or
/// /dev/null when negative). Every other descriptor is closed in the child.
/// Returns the child's pid or -errno.
pid_t cvmfs_spawn_detached(const char *path, char *const argv[], int log_fd);
/// Sends `signal` to `pid`; 0 or -errno.
int cvmfs_kill(pid_t pid, int signal);
/// waitpid(pid, WNOHANG); returns the pid when it exited (status in *status), 0 while it runs, -errno.
pid_t cvmfs_wait_nohang(pid_t pid, int *status);
/// The process's start time in clock ticks since boot (field 22 of /proc/PID/stat); 0 or -errno.
int cvmfs_process_start_time(pid_t pid, uint64_t *ticks);
/// Signal numbers and status decoding Swift cannot use as macros.
int cvmfs_exit_status_exited(int status);
int cvmfs_exit_status_code(int status);
int cvmfs_exit_status_signaled(int status);
int cvmfs_exit_status_signal(int status);

#endif
