/* Entry of every vCPU, at CPL3 in 64-bit mode with IOPL=3 (see docs/HYPERVISOR.md):
 * rdi = vCPU index, rsi = parameter block, rdx = vCPU count, rsp = this vCPU's stack top. */
    .section .text.start, "ax"
    .globl _start
_start:
    mov %rdx, %r12          /* the marker write below clobbers eax and dx */
    mov $1, %eax            /* marker 1: first guest instruction */
    mov $0xf8, %dx
    outl %eax, (%dx)
    mov %r12, %rdx
    and $-16, %rsp
    call guest_main         /* guest_main(vcpu, params, count) returns the result code */
    mov $0xf4, %dx          /* power off with the returned status */
    outl %eax, (%dx)
1:  pause
    jmp 1b

    .section .note.GNU-stack, "", @progbits
