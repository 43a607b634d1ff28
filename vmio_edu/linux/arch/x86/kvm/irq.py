"""arch/x86/kvm/irq.c (Linux v3.7): where a vCPU's next interrupt comes from.

With the in-kernel irqchip the LAPIC is asked first, then the PIC. The model has no LAPIC beyond its reset
state (no pending APIC interrupts; LVT0 = ExtINT, so PIC interrupts are accepted), so the answer is the
PIC's output line and, on acknowledge, `kvm_pic_read_irq`.
"""
from __future__ import annotations

from vmio_edu.trace.tracepoint import tracepoint
from vmio_edu.linux.include.linux.kvm_host import irqchip_in_kernel


def kvm_apic_accept_pic_intr(vcpu) -> bool:
    return True  # LAPIC reset state: LVT0 unmasked, delivery mode ExtINT


@tracepoint("kvm", args=("v=vcpu",))
def kvm_cpu_has_interrupt(vcpu) -> bool:
    """Is an interrupt pending for this vCPU (without acknowledging it)?"""
    if not irqchip_in_kernel(vcpu.kvm):
        return vcpu.arch.interrupt.pending
    if kvm_apic_accept_pic_intr(vcpu):
        return bool(vcpu.kvm.arch.vpic.output)
    return False


@tracepoint("kvm", args=("v=vcpu",))
def kvm_cpu_get_interrupt(vcpu) -> int:
    """Acknowledge the pending interrupt and return its vector (the PIC's INTA cycle)."""
    from .i8259 import kvm_pic_read_irq
    if not irqchip_in_kernel(vcpu.kvm):
        return vcpu.arch.interrupt.nr
    s = vcpu.kvm.arch.vpic
    s.output = 0
    return kvm_pic_read_irq(vcpu.kvm)
