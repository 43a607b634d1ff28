"""hw/i386/kvm/i8259.c (QEMU v10.2.0): the PIC is in the kernel; QEMU forwards line changes."""
from __future__ import annotations

from .....qemu.state import qemu_state
from .....trace.tracepoint import tracepoint
from ....accel.kvm.kvm_all import kvm_set_irq
from ...core.irq import IRQState, qemu_allocate_irqs

ISA_NUM_IRQS = 16


@tracepoint("qemu-cpu", args=("opaque", "irq", "level"))
def kvm_pic_set_irq(opaque: object, irq: int, level: int) -> None:
    """PIC input `irq` changed: kvm_set_irq(kvm_state, irq, level) (KVM_IRQ_LINE_STATUS)."""
    kvm_set_irq(qemu_state().kvm_state, irq, level)


def kvm_i8259_init() -> list[IRQState]:
    return qemu_allocate_irqs(kvm_pic_set_irq, None, ISA_NUM_IRQS)
