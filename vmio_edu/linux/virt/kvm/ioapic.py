"""virt/kvm/ioapic.c (Linux v3.7): the in-kernel IOAPIC, modelled only in its reset state.

KVM_CREATE_IRQCHIP creates an IOAPIC next to the PIC, and `kvm_set_irq` drives both (GSI 0-15 go to PIC and
IOAPIC pins, 16-23 to the IOAPIC only). After reset every redirection entry is masked, so a raised line is
not delivered by the IOAPIC: `kvm_ioapic_set_irq` returns -1 (ignored) for it and 1 when the line goes
down. That return value is all that is modelled, because it is part of the status KVM_IRQ_LINE_STATUS
hands back to userspace. The IOAPIC's MMIO window (0xfec00000) is not modelled: a guest that programs it
would see its accesses exit to userspace.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from vmio_edu.trace.tracepoint import tracepoint

IOAPIC_NUM_PINS = 24


@dataclass
class kvm_ioapic:
    irr: int = 0
    mask: list[int] = field(default_factory=lambda: [1] * IOAPIC_NUM_PINS)  # redirtbl[i].fields.mask
    trig_level: list[int] = field(default_factory=lambda: [0] * IOAPIC_NUM_PINS)
    irq_states: list[int] = field(default_factory=lambda: [0] * IOAPIC_NUM_PINS)


@tracepoint("kvm", args=("ioapic", "irq", "irq_source_id", "level"))
def kvm_ioapic_set_irq(ioapic: kvm_ioapic, irq: int, irq_source_id: int, level: int) -> int:
    if level:
        ioapic.irq_states[irq] |= 1 << irq_source_id
    else:
        ioapic.irq_states[irq] &= ~(1 << irq_source_id)
    irq_level = 1 if ioapic.irq_states[irq] else 0
    mask = 1 << irq
    old_irr = ioapic.irr
    if not irq_level:
        ioapic.irr &= ~mask
        return 1
    ioapic.irr |= mask
    if (not ioapic.trig_level[irq] and old_irr != ioapic.irr) or ioapic.trig_level[irq]:
        return -1 if ioapic.mask[irq] else 1  # ioapic_service: masked -> not injected
    return 0  # coalesced
