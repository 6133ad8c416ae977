#ifndef _GNU_SOURCE
#error "CVMFSLinux must be compiled with _GNU_SOURCE (see Package.swift)"
#endif
#include "CVMFSLinux.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
unsigned int if_nametoindex(const char *ifname);

const unsigned int CVMFS_TUN_F_CSUM = TUN_F_CSUM;
const unsigned int CVMFS_TUN_F_TSO4 = TUN_F_TSO4;
const unsigned int CVMFS_TUN_F_TSO6 = TUN_F_TSO6;
const unsigned int CVMFS_TUN_F_TSO_ECN = TUN_F_TSO_ECN;

int cvmfs_tap_create(const char *name, int vnet_header) {
    if (strlen(name) >= IFNAMSIZ || name[0] == 0) return -EINVAL;
    /* TUNSETIFF would attach to an existing TAP of that name: a name in use is a clash, said so. */
    if (if_nametoindex(name) != 0) return -EEXIST;
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct ifreq request;
    memset(&request, 0, sizeof request);
    request.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet_header ? IFF_VNET_HDR : 0);
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &request) != 0) {
        int error = errno;
        close(fd);
        return -error;
    }
    return fd;
}

int cvmfs_tap_info(int fd, unsigned int *flags, char name[16]) {
    struct ifreq request;
    memset(&request, 0, sizeof request);
    if (ioctl(fd, TUNGETIFF, &request) != 0) return -errno;
    *flags = (unsigned short)request.ifr_flags;
    memcpy(name, request.ifr_name, 16);
    name[15] = 0;
    return 0;
}

int cvmfs_tap_flags_have_vnet_header(unsigned int flags) { return (flags & IFF_VNET_HDR) != 0; }
int cvmfs_tap_flags_are_tap(unsigned int flags) { return (flags & IFF_TAP) != 0; }

int cvmfs_tap_set_vnet_header_size(int fd, int size) {
    return ioctl(fd, TUNSETVNETHDRSZ, &size) == 0 ? 0 : -errno;
}

int cvmfs_tap_set_offload(int fd, unsigned int flags) {
    return ioctl(fd, TUNSETOFFLOAD, (unsigned long)flags) == 0 ? 0 : -errno;
}

int cvmfs_set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -errno;
    return fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0 ? 0 : -errno;
}

ssize_t cvmfs_writev(int fd, const void *const *bases, const size_t *lengths, int count) {
    if (count < 0 || count > 1024) return -EINVAL;
    struct iovec vectors[1024];
    for (int i = 0; i < count; i++) {
        vectors[i].iov_base = (void *)bases[i];
        vectors[i].iov_len = lengths[i];
    }
    for (;;) {
        ssize_t n = writev(fd, vectors, count);
        if (n >= 0) return n;
        if (errno != EINTR) return -errno;
    }
}

ssize_t cvmfs_read(int fd, void *buffer, size_t length) {
    for (;;) {
        ssize_t n = read(fd, buffer, length);
        if (n >= 0) return n;
        if (errno != EINTR) return -errno;
    }
}

int cvmfs_poll_two(int fd_a, int fd_b, int timeout_ms, int *ready_a, int *ready_b) {
    struct pollfd fds[2] = {{.fd = fd_a, .events = POLLIN}, {.fd = fd_b, .events = POLLIN}};
    *ready_a = 0;
    *ready_b = 0;
    int n = poll(fds, 2, timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : -errno;
    *ready_a = fd_a >= 0 && (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0;
    *ready_b = fd_b >= 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0;
    return n;
}

int cvmfs_packet_socket(const char *name) {
    unsigned int index = if_nametoindex(name);
    if (index == 0) return -ENODEV;
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_ALL));
    if (fd < 0) return -errno;
    int one = 1;
    struct sockaddr_ll address;
    memset(&address, 0, sizeof address);
    address.sll_family = AF_PACKET;
    address.sll_protocol = htons(ETH_P_ALL);
    address.sll_ifindex = (int)index;
    struct packet_mreq membership;
    memset(&membership, 0, sizeof membership);
    membership.mr_ifindex = (int)index;
    membership.mr_type = PACKET_MR_PROMISC;
    if (setsockopt(fd, SOL_PACKET, PACKET_AUXDATA, &one, sizeof one) != 0
        || setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) != 0
        || bind(fd, (struct sockaddr *)&address, sizeof address) != 0
        || setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &membership, sizeof membership) != 0) {
        int error = errno;
        close(fd);
        return -error;
    }
    return fd;
}

ssize_t cvmfs_packet_receive(int fd, void *buffer, size_t length, int *vlan) {
    union {
        struct cmsghdr header;
        char space[CMSG_SPACE(sizeof(struct tpacket_auxdata))];
    } control;
    struct iovec vector = {.iov_base = buffer, .iov_len = length};
    struct msghdr message;
    memset(&message, 0, sizeof message);
    message.msg_iov = &vector;
    message.msg_iovlen = 1;
    message.msg_control = control.space;
    message.msg_controllen = sizeof control.space;
    *vlan = -1;
    ssize_t n;
    for (;;) {
        n = recvmsg(fd, &message, MSG_TRUNC);
        if (n >= 0) break;
        if (errno != EINTR) return -errno;
    }
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&message); c; c = CMSG_NXTHDR(&message, c)) {
        if (c->cmsg_level != SOL_PACKET || c->cmsg_type != PACKET_AUXDATA) continue;
        struct tpacket_auxdata aux;
        memcpy(&aux, CMSG_DATA(c), sizeof aux);
        if (aux.tp_status & TP_STATUS_VLAN_VALID) *vlan = aux.tp_vlan_tci;
    }
    return n;
}

ssize_t cvmfs_packet_send(int fd, const void *frame, size_t length) {
    for (;;) {
        ssize_t n = send(fd, frame, length, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n >= 0) return n;
        if (errno != EINTR) return -errno;
    }
}

unsigned int cvmfs_interface_index(const char *name) { return if_nametoindex(name); }

int cvmfs_interface_running(const char *name) {
    if (strlen(name) >= IFNAMSIZ) return -EINVAL;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    int r = ioctl(fd, SIOCGIFFLAGS, &request);
    int error = errno;
    close(fd);
    if (r != 0) return -error;
    return (request.ifr_flags & IFF_UP) && (request.ifr_flags & IFF_RUNNING) ? 1 : 0;
}

int cvmfs_unshare_network(void) { return unshare(CLONE_NEWNET) == 0 ? 0 : -errno; }

int cvmfs_set_thread_nice(int nice) {
    return setpriority(PRIO_PROCESS, (id_t)gettid(), nice) == 0 ? 0 : -errno;
}

int cvmfs_run_command(const char *path, char *const argv[], const void *input, size_t input_length,
                      char *output, size_t capacity, size_t *output_length) {
    *output_length = 0;
    /* The input goes through a memfd, so a child that writes before it reads cannot deadlock us. */
    int in = memfd_create("command-input", MFD_CLOEXEC);
    if (in < 0) return -errno;
    size_t written = 0;
    while (input && written < input_length) {
        ssize_t n = write(in, (const char *)input + written, input_length - written);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int error = errno;
            close(in);
            return -error;
        }
        written += (size_t)n;
    }
    lseek(in, 0, SEEK_SET);
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
        int error = errno;
        close(in);
        return -error;
    }
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attributes);
    posix_spawn_file_actions_adddup2(&actions, in, 0);
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 1);
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 2);
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attributes, &none);
    posix_spawnattr_setsigdefault(&attributes, &all);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid = 0;
    int r = posix_spawn(&pid, path, &actions, &attributes, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    close(in);
    close(pipe_fds[1]);
    if (r != 0) {
        close(pipe_fds[0]);
        return -r;
    }
    char discard[4096];
    for (;;) {
        char *target = *output_length < capacity ? output + *output_length : discard;
        size_t room = *output_length < capacity ? capacity - *output_length : sizeof discard;
        ssize_t n = read(pipe_fds[0], target, room);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (target != discard) *output_length += (size_t)n;
    }
    close(pipe_fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return -errno;
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}
