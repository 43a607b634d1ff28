"""The host kernel of the modern stack: Linux v6.12's KVM on the I/O path, as a map of its sources.

`vmio_edu/linux/` models Linux 3.7; this tree models the same path in Linux v6.12 (read from
shilei-massclouds/linux-6.12 commit 2974a9e75df28e0b27025e156bede92f4a314128, "Import Linux 6.12 source",
Makefile 6.12.0; every file:line below is at that commit):

    arch/x86/kvm/vmx/vmx.c   vmx_vcpu_run, vmx_exit_handlers_fastpath, vmx_handle_exit, __vmx_handle_exit,
                             handle_io, skip_emulated_instruction, vmx_inject_irq
    arch/x86/kvm/x86.c       kvm_fast_pio (IN and OUT), complete_fast_pio_out / _in, the emulator's PIO
                             callbacks, x86_emulate_instruction, vcpu_enter_guest, vcpu_run,
                             kvm_arch_vcpu_ioctl_run, handle_fastpath_hlt, handle_ud, kvm_arch_vm_ioctl
    arch/x86/kvm/emulate.c   x86_decode_insn, x86_emulate_insn, em_in / em_out, pio_in_emulated
    arch/x86/kvm/mmu/mmu.c   kvm_mmu_page_fault: EPT faults on MMIO, into the emulator
    virt/kvm/kvm_main.c      the /dev/kvm, VM and vCPU files, the KVM I/O buses, halting and kicking
    virt/kvm/irqchip.c, arch/x86/kvm/irq_comm.c, i8259.c, ioapic.c, irq.c   the IRQ 14 route

What changed since 3.7, as userspace sees it (`vmio_edu.kvm.differences` lists each with its lines):
a plain OUT exits with RIP still *on* the instruction (RIP moves on the next KVM_RUN, in
`complete_fast_pio_out`); a plain IN no longer goes through the emulator; a `rep ins` batch counts the room
to the page end in bytes and uses it as an element count; the PIO page is zeroed before an IN exit.

Parts that are the same for both kernels are shared, not copied: the emulated processor (`vmio_edu.cpu`),
`struct kvm_run` and the ioctl numbers (`vmio_edu.linux.include.uapi`), and the decoded-instruction record
of the emulator. Each place that shares says so.
"""
