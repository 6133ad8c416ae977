#ifndef _GNU_SOURCE
#error "CKVM must be compiled with _GNU_SOURCE (see Package.swift)"
#endif
#include "CKVM.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <unistd.h>

const unsigned long CKVM_GET_API_VERSION = KVM_GET_API_VERSION;
const unsigned long CKVM_CREATE_VM = KVM_CREATE_VM;
const unsigned long CKVM_CHECK_EXTENSION = KVM_CHECK_EXTENSION;
const unsigned long CKVM_GET_VCPU_MMAP_SIZE = KVM_GET_VCPU_MMAP_SIZE;
const unsigned long CKVM_GET_SUPPORTED_CPUID = KVM_GET_SUPPORTED_CPUID;
const unsigned long CKVM_GET_MSR_INDEX_LIST = KVM_GET_MSR_INDEX_LIST;

const unsigned long CKVM_CREATE_VCPU = KVM_CREATE_VCPU;
const unsigned long CKVM_SET_USER_MEMORY_REGION = KVM_SET_USER_MEMORY_REGION;
const unsigned long CKVM_SET_TSS_ADDR = KVM_SET_TSS_ADDR;
const unsigned long CKVM_SET_IDENTITY_MAP_ADDR = KVM_SET_IDENTITY_MAP_ADDR;
const unsigned long CKVM_CREATE_IRQCHIP = KVM_CREATE_IRQCHIP;
const unsigned long CKVM_CREATE_PIT2 = KVM_CREATE_PIT2;
const unsigned long CKVM_IRQ_LINE = KVM_IRQ_LINE;
const unsigned long CKVM_GET_DIRTY_LOG = KVM_GET_DIRTY_LOG;
const unsigned long CKVM_GET_IRQCHIP = KVM_GET_IRQCHIP;
const unsigned long CKVM_SET_IRQCHIP = KVM_SET_IRQCHIP;
const unsigned long CKVM_GET_PIT2 = KVM_GET_PIT2;
const unsigned long CKVM_SET_PIT2 = KVM_SET_PIT2;
const unsigned long CKVM_GET_CLOCK = KVM_GET_CLOCK;
const unsigned long CKVM_SET_CLOCK = KVM_SET_CLOCK;

const unsigned long CKVM_RUN = KVM_RUN;
const unsigned long CKVM_GET_REGS = KVM_GET_REGS;
const unsigned long CKVM_SET_REGS = KVM_SET_REGS;
const unsigned long CKVM_GET_SREGS = KVM_GET_SREGS;
const unsigned long CKVM_SET_SREGS = KVM_SET_SREGS;
const unsigned long CKVM_GET_FPU = KVM_GET_FPU;
const unsigned long CKVM_SET_FPU = KVM_SET_FPU;
const unsigned long CKVM_GET_MSRS = KVM_GET_MSRS;
const unsigned long CKVM_SET_MSRS = KVM_SET_MSRS;
const unsigned long CKVM_GET_LAPIC = KVM_GET_LAPIC;
const unsigned long CKVM_SET_LAPIC = KVM_SET_LAPIC;
const unsigned long CKVM_SET_CPUID2 = KVM_SET_CPUID2;
const unsigned long CKVM_GET_MP_STATE = KVM_GET_MP_STATE;
const unsigned long CKVM_SET_MP_STATE = KVM_SET_MP_STATE;
const unsigned long CKVM_GET_XSAVE = KVM_GET_XSAVE;
const unsigned long CKVM_SET_XSAVE = KVM_SET_XSAVE;
const unsigned long CKVM_GET_XCRS = KVM_GET_XCRS;
const unsigned long CKVM_SET_XCRS = KVM_SET_XCRS;
const unsigned long CKVM_GET_VCPU_EVENTS = KVM_GET_VCPU_EVENTS;
const unsigned long CKVM_SET_VCPU_EVENTS = KVM_SET_VCPU_EVENTS;
const unsigned long CKVM_GET_DEBUGREGS = KVM_GET_DEBUGREGS;
const unsigned long CKVM_SET_DEBUGREGS = KVM_SET_DEBUGREGS;
const unsigned long CKVM_GET_TSC_KHZ = KVM_GET_TSC_KHZ;
const unsigned long CKVM_SET_TSC_KHZ = KVM_SET_TSC_KHZ;
const unsigned long CKVM_KVMCLOCK_CTRL = KVM_KVMCLOCK_CTRL;

struct kvm_cpuid2 *ckvm_cpuid2_allocate(uint32_t capacity) {
    struct kvm_cpuid2 *cpuid = calloc(1, sizeof *cpuid + capacity * sizeof(struct kvm_cpuid_entry2));
    if (cpuid) cpuid->nent = capacity;
    return cpuid;
}

struct kvm_msrs *ckvm_msrs_allocate(uint32_t capacity) {
    struct kvm_msrs *msrs = calloc(1, sizeof *msrs + capacity * sizeof(struct kvm_msr_entry));
    if (msrs) msrs->nmsrs = capacity;
    return msrs;
}

struct kvm_cpuid_entry2 *ckvm_cpuid2_entry(struct kvm_cpuid2 *cpuid, uint32_t index) {
    return &cpuid->entries[index];
}

struct kvm_msr_entry *ckvm_msrs_entry(struct kvm_msrs *msrs, uint32_t index) {
    return &msrs->entries[index];
}

void ckvm_free(void *pointer) { free(pointer); }

const int CKVM_KICK_SIGNAL = SIGUSR1;

static void ckvm_kick_handler(int signal) { (void)signal; }

int ckvm_install_kick_handler(int signal) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = ckvm_kick_handler;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
    return sigaction(signal, &action, NULL) == 0 ? 0 : -errno;
}

int ckvm_thread_kick(unsigned long thread, int signal) {
    return pthread_kill((pthread_t)thread, signal);
}

int ckvm_unblock_signal(int signal) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signal);
    return pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

long ckvm_resident_pages(void *address, size_t length) {
    long page = sysconf(_SC_PAGESIZE);
    size_t pages = (length + (size_t)page - 1) / (size_t)page;
    unsigned char *vector = malloc(pages ? pages : 1);
    if (!vector) return -ENOMEM;
    if (mincore(address, length, vector) != 0) {
        int error = errno;
        free(vector);
        return -error;
    }
    long resident = 0;
    for (size_t i = 0; i < pages; i++) resident += vector[i] & 1;
    free(vector);
    return resident;
}

const int CKVM_MADV_MERGEABLE = MADV_MERGEABLE;
const int CKVM_MADV_DONTNEED = MADV_DONTNEED;
const int CKVM_MAP_NORESERVE = MAP_NORESERVE;

long ckvm_msr_index_list(int kvm, uint32_t *indices, uint32_t capacity) {
    struct kvm_msr_list *list = calloc(1, sizeof *list + (size_t)capacity * sizeof(uint32_t));
    if (!list) return -ENOMEM;
    list->nmsrs = capacity;
    int result = ioctl(kvm, KVM_GET_MSR_INDEX_LIST, list);
    long count;
    if (result < 0 && errno == E2BIG) {
        count = list->nmsrs;
    } else if (result < 0) {
        count = -errno;
    } else {
        count = list->nmsrs;
        memcpy(indices, list->indices, (size_t)(count < capacity ? count : capacity) * sizeof(uint32_t));
    }
    free(list);
    return count;
}

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

int ckvm_userfaultfd_open(void) {
    int uffd = -1;
    int device = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (device >= 0) {
        uffd = ioctl(device, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
        close(device);
    }
    if (uffd < 0) uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (uffd < 0) return -errno;
    struct uffdio_api api = {.api = UFFD_API, .features = 0};
    if (ioctl(uffd, UFFDIO_API, &api) != 0) {
        int error = errno;
        close(uffd);
        return -error;
    }
    return uffd;
}

int ckvm_userfaultfd_register(int uffd, void *address, uint64_t length) {
    struct uffdio_register reg = {.range = {.start = (uint64_t)(uintptr_t)address, .len = length},
                                  .mode = UFFDIO_REGISTER_MODE_MISSING};
    return ioctl(uffd, UFFDIO_REGISTER, &reg) == 0 ? 0 : -errno;
}

int ckvm_userfaultfd_unregister(int uffd, void *address, uint64_t length) {
    struct uffdio_range range = {.start = (uint64_t)(uintptr_t)address, .len = length};
    return ioctl(uffd, UFFDIO_UNREGISTER, &range) == 0 ? 0 : -errno;
}

int ckvm_userfaultfd_read(int uffd, uint64_t *address) {
    struct uffd_msg message;
    ssize_t n = read(uffd, &message, sizeof message);
    if (n < 0) return errno == EAGAIN ? 0 : -errno;
    if (n != sizeof message) return -EIO;
    if (message.event != UFFD_EVENT_PAGEFAULT) {
        *address = 0;
        return 2;
    }
    *address = message.arg.pagefault.address;
    return 1;
}

int ckvm_userfaultfd_copy(int uffd, void *destination, const void *source, uint64_t length) {
    struct uffdio_copy copy = {.dst = (uint64_t)(uintptr_t)destination, .src = (uint64_t)(uintptr_t)source, .len = length, .mode = 0};
    while (ioctl(uffd, UFFDIO_COPY, &copy) != 0) {
        if (errno == EAGAIN) {
            if (copy.copy > 0) {
                copy.dst += (uint64_t)copy.copy;
                copy.src += (uint64_t)copy.copy;
                copy.len -= (uint64_t)copy.copy;
            }
            copy.copy = 0;
            continue;
        }
        return -errno;
    }
    return 0;
}

int ckvm_userfaultfd_zero(int uffd, void *destination, uint64_t length) {
    struct uffdio_zeropage zero = {.range = {.start = (uint64_t)(uintptr_t)destination, .len = length}, .mode = 0};
    while (ioctl(uffd, UFFDIO_ZEROPAGE, &zero) != 0) {
        if (errno == EAGAIN) {
            if (zero.zeropage > 0) {
                zero.range.start += (uint64_t)zero.zeropage;
                zero.range.len -= (uint64_t)zero.zeropage;
            }
            zero.zeropage = 0;
            continue;
        }
        return -errno;
    }
    return 0;
}

int ckvm_userfaultfd_wake(int uffd, void *address, uint64_t length) {
    struct uffdio_range range = {.start = (uint64_t)(uintptr_t)address, .len = length};
    return ioctl(uffd, UFFDIO_WAKE, &range) == 0 ? 0 : -errno;
}

int ckvm_populated_pages(void *address, uint64_t pages, uint64_t *bitmap) {
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    long page = sysconf(_SC_PAGESIZE);
    uint64_t first = (uint64_t)(uintptr_t)address / (uint64_t)page;
    enum { chunk = 4096 };
    uint64_t entries[chunk];
    for (uint64_t done = 0; done < pages;) {
        uint64_t count = pages - done < chunk ? pages - done : chunk;
        ssize_t n = pread(fd, entries, count * sizeof(uint64_t), (off_t)((first + done) * sizeof(uint64_t)));
        if (n < 0) {
            if (errno == EINTR) continue;
            int error = errno;
            close(fd);
            return -error;
        }
        if (n == 0 || n % sizeof(uint64_t)) {
            close(fd);
            return -EIO;
        }
        uint64_t got = (uint64_t)n / sizeof(uint64_t);
        for (uint64_t i = 0; i < got; i++) {
            uint64_t index = done + i;
            if (entries[i] & ((1ull << 63) | (1ull << 62))) bitmap[index / 64] |= 1ull << (index % 64);
        }
        done += got;
    }
    close(fd);
    return 0;
}

int ckvm_discard_pages(void *address, uint64_t length) {
    return madvise(address, length, MADV_DONTNEED) == 0 ? 0 : -errno;
}

void ckvm_atomic_or64(uint64_t *word, uint64_t bits) { __atomic_fetch_or(word, bits, __ATOMIC_RELEASE); }

uint64_t ckvm_atomic_take64(uint64_t *word) { return __atomic_exchange_n(word, 0, __ATOMIC_ACQ_REL); }
