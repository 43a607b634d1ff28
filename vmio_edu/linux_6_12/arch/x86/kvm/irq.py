"""arch/x86/kvm/irq.c (Linux v6.12): where a vCPU's next interrupt comes from.

With the in-kernel irqchip the PIC's output counts as an "ExtINT" (`kvm_cpu_has_extint`, irq.c:48) if the
LAPIC accepts PIC interrupts (its reset state does: LVT0 = ExtINT). The model's LAPIC has no interrupts
of its own, so that is the whole answer; acknowledging it is the PIC's INTA cycle, `kvm_pic_read_irq`.
"""
from __future__ import annotations

from vmio_edu.linux_6_12.include.linux.kvm_host import lapic_in_kernel
from vmio_edu.trace.tracepoint import tracepoint


def kvm_cpu_has_extint(v) -> bool:
    """Is the PIC (or, without an in-kernel LAPIC, userspace) asking for an interrupt? (irq.c:48)"""
    if not lapic_in_kernel(v):
        return v.arch.interrupt.injected
    return bool(v.kvm.arch.vpic.output)  # kvm_apic_accept_pic_intr: yes, LVT0 = ExtINT


@tracepoint("kvm", args=("v=vcpu",))
def kvm_cpu_has_injectable_intr(vcpu) -> bool:
    """An interrupt that can be injected now (irq.c:82)."""
    return kvm_cpu_has_extint(vcpu)


@tracepoint("kvm", args=("v=vcpu",))
def kvm_cpu_has_interrupt(vcpu) -> bool:
    """Is an interrupt pending for this vCPU, without acknowledging it? (irq.c:98)"""
    return kvm_cpu_has_extint(vcpu)


def kvm_cpu_get_extint(v) -> int:
    if not kvm_cpu_has_extint(v):
        return -1
    if not lapic_in_kernel(v):
        return v.arch.interrupt.nr
    from .i8259 import kvm_pic_read_irq
    return kvm_pic_read_irq(v.kvm)  # PIC


@tracepoint("kvm", args=("v=vcpu",))
def kvm_cpu_get_interrupt(vcpu) -> int:
    """Acknowledge the pending interrupt and return its vector, -1 if none (irq.c:139)."""
    return kvm_cpu_get_extint(vcpu)
