#ifndef CFUSE_SHIM_H
#define CFUSE_SHIM_H
// Must precede every libfuse header; 312 selects the libfuse 3.12 API (opaque fuse_loop_config).
#define FUSE_USE_VERSION 312
#include <sys/select.h>
#include <signal.h>
#include <syslog.h>
#include <fuse_lowlevel.h>

// Small helpers for what Swift cannot call or see directly: variadic functions, C globals that
// Swift 6 rejects as shared mutable state, and constants hidden behind _GNU_SOURCE. All are
// `static inline`, so this system-library module needs no compiled C file.

/// syslog(3) is variadic; this logs one preformatted message.
static inline void cfuse_syslog(int priority, const char *message) {
    syslog(priority, "%s", message);
}

/// The process environment (the C global `environ`), for posix_spawn.
static inline char *const *cfuse_environ(void) {
    extern char **environ;
    return environ;
}

/// syncfs(2), declared by glibc only under _GNU_SOURCE: writes back the kernel's dirty pages of
/// the filesystem holding `fd`.
static inline int cfuse_syncfs(int fd) {
    extern int syncfs(int);
    return syncfs(fd);
}

/// Installs a handler for `signal` that does nothing, without SA_RESTART, so that the signal
/// interrupts blocking calls (sem_wait in fuse_session_loop_mt) of the thread it is sent to.
static inline int cfuse_install_wakeup_handler(int signal_number);

static void cfuse_wakeup_handler(int signal_number) { (void)signal_number; }

static inline int cfuse_install_wakeup_handler(int signal_number) {
    struct sigaction action;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;
    action.sa_handler = cfuse_wakeup_handler;
    return sigaction(signal_number, &action, 0);
}

/// Ignores `signal_number` (SIGPIPE: a reply to an interrupted request must not kill us).
static inline int cfuse_ignore_signal(int signal_number) {
    struct sigaction action;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;
    action.sa_handler = SIG_IGN;
    return sigaction(signal_number, &action, 0);
}

#endif
