#ifndef CVMFS_NET_H
#define CVMFS_NET_H

// Network calls for the VMM (TAP devices carrying virtio-net headers) and the host agent's virtual
// switches (TAP creation, AF_PACKET uplinks with VLAN tags, running ip/nft/tc). All return -errno
// on failure.

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

/// TUNSETOFFLOAD flags (`<linux/if_tun.h>`).
extern const unsigned int CVMFS_TUN_F_CSUM;
extern const unsigned int CVMFS_TUN_F_TSO4;
extern const unsigned int CVMFS_TUN_F_TSO6;
extern const unsigned int CVMFS_TUN_F_TSO_ECN;

/// Creates a TAP interface named `name` (IFF_TAP | IFF_NO_PI, plus IFF_VNET_HDR when
/// `vnet_header`) and returns its descriptor (close-on-exec, non-persistent: the interface goes
/// away with the last descriptor). -EEXIST when an interface of that name exists already, -EPERM
/// without CAP_NET_ADMIN, -ENOENT when /dev/net/tun is missing.
int cvmfs_tap_create(const char *name, int vnet_header);
/// TUNGETIFF: the interface's flags (IFF_*) and name (16 bytes); 0 or -errno (-EBADFD when `fd`
/// is not an attached TUN/TAP descriptor).
int cvmfs_tap_info(int fd, unsigned int *flags, char name[16]);
/// 1 when the IFF_VNET_HDR flag is among `flags`.
int cvmfs_tap_flags_have_vnet_header(unsigned int flags);
/// 1 when the IFF_TAP flag is among `flags`.
int cvmfs_tap_flags_are_tap(unsigned int flags);
/// TUNSETVNETHDRSZ; 0 or -errno.
int cvmfs_tap_set_vnet_header_size(int fd, int size);
/// TUNSETOFFLOAD with CVMFS_TUN_F_* flags; 0 or -errno.
int cvmfs_tap_set_offload(int fd, unsigned int flags);

/// Adds O_NONBLOCK to the descriptor's status flags; 0 or -errno.
int cvmfs_set_nonblocking(int fd);
/// writev(2) of `count` buffers (at most 1024); bytes written or -errno (EINTR retried).
ssize_t cvmfs_writev(int fd, const void *const *bases, const size_t *lengths, int count);
/// read(2) with EINTR retried; bytes read, 0 at end of file, or -errno (-EAGAIN when nothing is ready).
ssize_t cvmfs_read(int fd, void *buffer, size_t length);
/// poll(2) on two descriptors (a negative one is ignored) for POLLIN; sets *ready_a / *ready_b
/// to 1 when readable (or hung up). Returns the number ready (0 on timeout) or -errno; EINTR
/// returns 0.
int cvmfs_poll_two(int fd_a, int fd_b, int timeout_ms, int *ready_a, int *ready_b);

/// An AF_PACKET raw socket bound to interface `name` for every protocol, receiving VLAN tags as
/// auxiliary data, ignoring its own transmissions, in promiscuous mode, non-blocking,
/// close-on-exec. A descriptor or -errno (-ENODEV when the interface does not exist).
int cvmfs_packet_socket(const char *name);
/// Receives one frame. *vlan is the 802.1Q tag control information the kernel took off the
/// frame, or -1 when the frame had none. Returns the frame's length (larger than `length` when it
/// did not fit and was cut short), or -errno (-EAGAIN when none is ready).
ssize_t cvmfs_packet_receive(int fd, void *buffer, size_t length, int *vlan);
/// Sends one complete frame on the socket's interface; bytes sent or -errno.
ssize_t cvmfs_packet_send(int fd, const void *frame, size_t length);
/// if_nametoindex; the index, or 0 when there is no such interface.
unsigned int cvmfs_interface_index(const char *name);
/// 1 when interface `name` is up with its link running (IFF_UP and IFF_RUNNING), 0 when not,
/// -errno when it cannot be asked (-ENODEV: no such interface).
int cvmfs_interface_running(const char *name);
/// Moves the calling thread (only) into a new network namespace (unshare(CLONE_NEWNET)); 0 or -errno.
/// Threads and processes it starts afterwards are in that namespace too.
int cvmfs_unshare_network(void);
/// Lowers the calling thread's scheduling priority to `nice` (setpriority on its thread id); 0 or -errno.
int cvmfs_set_thread_nice(int nice);

/// Runs `path` with `argv` (NULL-terminated) to completion: `input` (may be NULL) on its standard
/// input, standard output and error captured together into `output` (at most `capacity` bytes are
/// kept; *output_length says how many). Every other descriptor is closed in the child. Returns
/// the exit status (0…255, or 128 + signal) or -errno when it could not be started.
int cvmfs_run_command(const char *path, char *const argv[], const void *input, size_t input_length,
                      char *output, size_t capacity, size_t *output_length);

#endif
