#ifndef CKVM_H
#define CKVM_H

// KVM ioctl request numbers (function-like _IO* macros are not imported by Swift) and the few
// calls the VMM needs that Swift cannot express directly (signal handler installation,
// pthread_kill, mincore). The implementation is compiled with _GNU_SOURCE; this header never
// defines it.

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include <linux/kvm.h>

// ---- /dev/kvm ------------------------------------------------------------------------------
extern const unsigned long CKVM_GET_API_VERSION;
extern const unsigned long CKVM_CREATE_VM;
extern const unsigned long CKVM_CHECK_EXTENSION;
extern const unsigned long CKVM_GET_VCPU_MMAP_SIZE;
extern const unsigned long CKVM_GET_SUPPORTED_CPUID;

// ---- VM fd ---------------------------------------------------------------------------------
extern const unsigned long CKVM_CREATE_VCPU;
extern const unsigned long CKVM_SET_USER_MEMORY_REGION;
extern const unsigned long CKVM_SET_TSS_ADDR;
extern const unsigned long CKVM_SET_IDENTITY_MAP_ADDR;
extern const unsigned long CKVM_CREATE_IRQCHIP;
extern const unsigned long CKVM_CREATE_PIT2;
extern const unsigned long CKVM_IRQ_LINE;
extern const unsigned long CKVM_GET_DIRTY_LOG;

// ---- vCPU fd -------------------------------------------------------------------------------
extern const unsigned long CKVM_RUN;
extern const unsigned long CKVM_GET_REGS;
extern const unsigned long CKVM_SET_REGS;
extern const unsigned long CKVM_GET_SREGS;
extern const unsigned long CKVM_SET_SREGS;
extern const unsigned long CKVM_GET_FPU;
extern const unsigned long CKVM_SET_FPU;
extern const unsigned long CKVM_GET_MSRS;
extern const unsigned long CKVM_SET_MSRS;
extern const unsigned long CKVM_GET_LAPIC;
extern const unsigned long CKVM_SET_LAPIC;
extern const unsigned long CKVM_SET_CPUID2;
extern const unsigned long CKVM_GET_MP_STATE;
extern const unsigned long CKVM_SET_MP_STATE;

// ---- Variable-length structs, built in C so Swift never guesses their layout ---------------
/// Allocates a zeroed `struct kvm_cpuid2` with room for `capacity` entries (`nent` = capacity).
struct kvm_cpuid2 *ckvm_cpuid2_allocate(uint32_t capacity);
/// Allocates a zeroed `struct kvm_msrs` with room for `capacity` entries (`nmsrs` = capacity).
struct kvm_msrs *ckvm_msrs_allocate(uint32_t capacity);
/// Returns a pointer to entry `index` of a cpuid2 / msrs block.
struct kvm_cpuid_entry2 *ckvm_cpuid2_entry(struct kvm_cpuid2 *cpuid, uint32_t index);
struct kvm_msr_entry *ckvm_msrs_entry(struct kvm_msrs *msrs, uint32_t index);
void ckvm_free(void *pointer);

// ---- Threads and signals -------------------------------------------------------------------
/// Installs a no-op handler (without SA_RESTART) for `signal`, used to kick vCPU threads out of
/// KVM_RUN. Returns 0 or -errno.
int ckvm_install_kick_handler(int signal);
/// Signal number used to kick vCPU threads (SIGUSR1).
extern const int CKVM_KICK_SIGNAL;
/// pthread_kill(thread, signal); 0 or an errno value.
int ckvm_thread_kick(unsigned long thread, int signal);
/// Blocks `signal` in the calling thread (0 or errno), so only vCPU threads receive kicks.
int ckvm_unblock_signal(int signal);

// ---- Memory --------------------------------------------------------------------------------
/// Number of resident pages in [address, address+length) as reported by mincore(2); -errno on failure.
long ckvm_resident_pages(void *address, size_t length);
/// MADV_MERGEABLE, MADV_DONTNEED, MADV_HUGEPAGE constants (some are _GNU_SOURCE-only).
extern const int CKVM_MADV_MERGEABLE;
extern const int CKVM_MADV_DONTNEED;
extern const int CKVM_MAP_NORESERVE;

#endif
