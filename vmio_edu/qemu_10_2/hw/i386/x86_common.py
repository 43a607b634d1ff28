"""hw/i386/x86-common.c (QEMU v10.2.0): where a GSI goes (1.6.1's kvm_pc_gsi_handler, merged into
`gsi_handler`).

With KVM's in-kernel irqchip an ISA line (0-15) goes to the PIC input *and then falls through* to the
IOAPIC pin, so raising IRQ 14 makes two KVM_IRQ_LINE_STATUS ioctls in 10.2 (kvm_pic_set_irq, then
kvm_ioapic_set_irq, both for GSI 14); 1.6.1 made one and let the kernel fan it out.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ....trace.tracepoint import tracepoint
from ..core.irq import IRQState, qemu_allocate_irqs, qemu_set_irq

ISA_NUM_IRQS = 16
IOAPIC_NUM_PINS = 24


@dataclass
class GSIState:
    i8259_irq: list[IRQState] = field(default_factory=list)
    ioapic_irq: list[IRQState] = field(default_factory=list)


@tracepoint("qemu-cpu", args=("opaque=s", "n", "level"))
def gsi_handler(s: GSIState, n: int, level: int) -> None:
    """An ISA line to the PIC (if there is one) and on to the IOAPIC; higher GSIs to the IOAPIC only."""
    if n < ISA_NUM_IRQS and s.i8259_irq and s.i8259_irq[n] is not None:
        qemu_set_irq(s.i8259_irq[n], level)  # "Under KVM, Kernel will forward to both PIC and IOAPIC"
    if n < IOAPIC_NUM_PINS:
        qemu_set_irq(s.ioapic_irq[n], level)


def x86_gsi_irqs(s: GSIState) -> list[IRQState]:
    """x86ms->gsi = qemu_allocate_irqs(gsi_handler, gsi_state, GSI_NUM_PINS)."""
    return qemu_allocate_irqs(gsi_handler, s, IOAPIC_NUM_PINS)
