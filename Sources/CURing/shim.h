#ifndef CURING_SHIM_H
#define CURING_SHIM_H
// liburing.h defines _GNU_SOURCE/_XOPEN_SOURCE before its own includes. Including the glibc
// headers first, with default feature macros, keeps this module's copies of glibc structs
// (fd_set, sigset_t) identical to SwiftGlibc's, which a clean build requires.
#include <sys/select.h>
#include <signal.h>
#include <liburing.h>
#endif
