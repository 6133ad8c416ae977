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
extern const unsigned long CKVM_GET_MSR_INDEX_LIST;

// ---- VM fd ---------------------------------------------------------------------------------
extern const unsigned long CKVM_CREATE_VCPU;
extern const unsigned long CKVM_SET_USER_MEMORY_REGION;
extern const unsigned long CKVM_SET_TSS_ADDR;
extern const unsigned long CKVM_SET_IDENTITY_MAP_ADDR;
extern const unsigned long CKVM_CREATE_IRQCHIP;
extern const unsigned long CKVM_CREATE_PIT2;
extern const unsigned long CKVM_IRQ_LINE;
extern const unsigned long CKVM_GET_DIRTY_LOG;
extern const unsigned long CKVM_GET_IRQCHIP;
extern const unsigned long CKVM_SET_IRQCHIP;
extern const unsigned long CKVM_GET_PIT2;
extern const unsigned long CKVM_SET_PIT2;
extern const unsigned long CKVM_GET_CLOCK;
extern const unsigned long CKVM_SET_CLOCK;

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
extern const unsigned long CKVM_GET_XSAVE;
extern const unsigned long CKVM_SET_XSAVE;
extern const unsigned long CKVM_GET_XCRS;
extern const unsigned long CKVM_SET_XCRS;
extern const unsigned long CKVM_GET_VCPU_EVENTS;
extern const unsigned long CKVM_SET_VCPU_EVENTS;
extern const unsigned long CKVM_GET_DEBUGREGS;
extern const unsigned long CKVM_SET_DEBUGREGS;
extern const unsigned long CKVM_GET_TSC_KHZ;
extern const unsigned long CKVM_SET_TSC_KHZ;
extern const unsigned long CKVM_KVMCLOCK_CTRL;

// ---- Variable-length structs, built in C so Swift never guesses their layout ---------------
/// Allocates a zeroed `struct kvm_cpuid2` with room for `capacity` entries (`nent` = capacity).
struct kvm_cpuid2 *ckvm_cpuid2_allocate(uint32_t capacity);
/// Allocates a zeroed `struct kvm_msrs` with room for `capacity` entries (`nmsrs` = capacity).
struct kvm_msrs *ckvm_msrs_allocate(uint32_t capacity);
/// Returns a pointer to entry `index` of a cpuid2 / msrs block.
struct kvm_cpuid_entry2 *ckvm_cpuid2_entry(struct kvm_cpuid2 *cpuid, uint32_t index);
struct kvm_msr_entry *ckvm_msrs_entry(struct kvm_msrs *msrs, uint32_t index);
void ckvm_free(void *pointer);
/// `KVM_GET_MSR_INDEX_LIST` on the /dev/kvm fd: fills `indices` with at most `capacity` MSR numbers;
/// returns the count (which may exceed `capacity`: call again with more room) or -errno.
long ckvm_msr_index_list(int kvm, uint32_t *indices, uint32_t capacity);

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


// ---- userfaultfd (post-copy migration) -----------------------------------------------------
/// Opens a userfaultfd through /dev/userfaultfd (falling back to the syscall), non-blocking and
/// close-on-exec, and negotiates the API. Returns the descriptor or -errno.
int ckvm_userfaultfd_open(void);
/// Registers [address, address + length) for missing-page faults (UFFDIO_REGISTER_MODE_MISSING). 0 or -errno.
int ckvm_userfaultfd_register(int uffd, void *address, uint64_t length);
/// Unregisters a range. 0 or -errno.
int ckvm_userfaultfd_unregister(int uffd, void *address, uint64_t length);
/// Reads one pagefault event: 1 with the faulting address, 0 when none is pending, -errno on error.
/// Other event kinds are consumed and reported with address 0 and return 2.
int ckvm_userfaultfd_read(int uffd, uint64_t *address);
/// UFFDIO_COPY of `length` bytes from `source` to `destination` (page aligned), waking the faulting
/// threads. 0, -EEXIST when already populated, or -errno.
int ckvm_userfaultfd_copy(int uffd, void *destination, const void *source, uint64_t length);
/// UFFDIO_ZEROPAGE of `length` bytes at `destination`. 0, -EEXIST, or -errno.
int ckvm_userfaultfd_zero(int uffd, void *destination, uint64_t length);
/// UFFDIO_WAKE of [address, address + length). 0 or -errno.
int ckvm_userfaultfd_wake(int uffd, void *address, uint64_t length);

// ---- Page state ----------------------------------------------------------------------------
/// Reads /proc/self/pagemap for `pages` pages starting at `address` and sets bit i of `bitmap`
/// (uint64_t words) when page i is present or swapped (it may hold data); an anonymous private
/// page that is neither has never been written and reads as zeros. Returns 0 or -errno.
int ckvm_populated_pages(void *address, uint64_t pages, uint64_t *bitmap);
/// madvise(MADV_DONTNEED): the pages of an anonymous private range become missing (zero, or
/// faulting into a registered userfaultfd). 0 or -errno.
int ckvm_discard_pages(void *address, uint64_t length);

// ---- Atomic bitmap words (the VMM's own dirty-page bitmap) -------------------------------------
/// Atomically ORs `bits` into `*word`.
void ckvm_atomic_or64(uint64_t *word, uint64_t bits);
/// Atomically replaces `*word` with 0 and returns the old value.
uint64_t ckvm_atomic_take64(uint64_t *word);

#endif
