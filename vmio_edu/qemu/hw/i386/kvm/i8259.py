"""hw/i386/kvm/i8259.c (QEMU v1.6.1): the PIC lives in the kernel; QEMU only forwards line changes."""
from __future__ import annotations

from .....trace.tracepoint import tracepoint
from ...core.irq import IRQState, qemu_allocate_irqs
from ....kvm_all import kvm_set_irq
from ....state import qemu_state


@tracepoint("qemu-cpu", args=("opaque", "irq", "level"))
def kvm_pic_set_irq(opaque: object, irq: int, level: int) -> None:
    """Tell KVM that PIC input `irq` changed (`kvm_set_irq` → KVM_IRQ_LINE_STATUS)."""
    kvm_set_irq(qemu_state().kvm_state, irq, level)


def kvm_i8259_init() -> list[IRQState]:
    """The 16 PIC input lines, each forwarding to KVM."""
    return qemu_allocate_irqs(kvm_pic_set_irq, None, 16)
