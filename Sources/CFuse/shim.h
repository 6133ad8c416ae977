#ifndef CFUSE_SHIM_H
#define CFUSE_SHIM_H
// Must precede every libfuse header; 312 selects the libfuse 3.12 API (opaque fuse_loop_config).
#define FUSE_USE_VERSION 312
#include <sys/select.h>
#include <signal.h>
#include <fuse_lowlevel.h>
#endif
