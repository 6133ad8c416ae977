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
#include <unistd.h>

const unsigned long CKVM_GET_API_VERSION = KVM_GET_API_VERSION;
const unsigned long CKVM_CREATE_VM = KVM_CREATE_VM;
const unsigned long CKVM_CHECK_EXTENSION = KVM_CHECK_EXTENSION;
const unsigned long CKVM_GET_VCPU_MMAP_SIZE = KVM_GET_VCPU_MMAP_SIZE;
const unsigned long CKVM_GET_SUPPORTED_CPUID = KVM_GET_SUPPORTED_CPUID;

const unsigned long CKVM_CREATE_VCPU = KVM_CREATE_VCPU;
const unsigned long CKVM_SET_USER_MEMORY_REGION = KVM_SET_USER_MEMORY_REGION;
const unsigned long CKVM_SET_TSS_ADDR = KVM_SET_TSS_ADDR;
const unsigned long CKVM_SET_IDENTITY_MAP_ADDR = KVM_SET_IDENTITY_MAP_ADDR;
const unsigned long CKVM_CREATE_IRQCHIP = KVM_CREATE_IRQCHIP;
const unsigned long CKVM_CREATE_PIT2 = KVM_CREATE_PIT2;
const unsigned long CKVM_IRQ_LINE = KVM_IRQ_LINE;
const unsigned long CKVM_GET_DIRTY_LOG = KVM_GET_DIRTY_LOG;

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
