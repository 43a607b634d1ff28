"""hw/i386/kvm/ioapic.c (QEMU v1.6.1): with the in-kernel irqchip, ISA lines go straight to KVM."""
from __future__ import annotations

from dataclasses import dataclass, field

from .....trace.tracepoint import tracepoint
from ...core.irq import IRQState, qemu_allocate_irqs, qemu_set_irq

ISA_NUM_IRQS = 16


@dataclass
class GSIState:
    """pc.h's GSIState: where each global system interrupt goes."""

    i8259_irq: list[IRQState] = field(default_factory=list)
    ioapic_irq: list[IRQState] = field(default_factory=list)


@tracepoint("qemu-cpu", args=("opaque=s", "n", "level"))
def kvm_pc_gsi_handler(s: GSIState, n: int, level: int) -> None:
    """An ISA line (< 16) goes to the PIC input; KVM's kernel forwards it to both PIC and IOAPIC."""
    if n < ISA_NUM_IRQS:
        qemu_set_irq(s.i8259_irq[n], level)
    else:
        qemu_set_irq(s.ioapic_irq[n], level)


def pc_gsi_irqs(s: GSIState) -> list[IRQState]:
    """The 24 GSI lines devices connect to (pc_piix.c: qemu_allocate_irqs(kvm_pc_gsi_handler, ...))."""
    return qemu_allocate_irqs(kvm_pc_gsi_handler, s, 24)
