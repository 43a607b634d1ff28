"""arch/x86/kvm/ioapic.c (Linux v6.12; virt/kvm/ioapic.c in 3.7): the in-kernel IOAPIC in its reset state.

As in the 3.7 model, only what userspace can see is modelled: after reset every redirection entry is
masked, so a raised line is not delivered (`ioapic_service` answers -1) and a lowered one returns 1; that
value is part of the status KVM_IRQ_LINE_STATUS returns. The state record is shared with the 3.7 model.
"""
from __future__ import annotations

from vmio_edu.linux.virt.kvm.ioapic import IOAPIC_NUM_PINS, kvm_ioapic  # noqa: F401
from vmio_edu.trace.tracepoint import tracepoint


@tracepoint("kvm", args=("ioapic", "irq", "irq_source_id", "level", "line_status"))
def kvm_ioapic_set_irq(ioapic: kvm_ioapic, irq: int, irq_source_id: int, level: int,
                       line_status: bool = True) -> int:
    """Drive pin `irq` (ioapic.c:485, with ioapic_set_irq 206 and ioapic_service 442)."""
    if not 0 <= irq < IOAPIC_NUM_PINS:
        raise ValueError(f"IOAPIC pin {irq} out of range")
    if level:  # __kvm_irq_line_state
        ioapic.irq_states[irq] |= 1 << irq_source_id
    else:
        ioapic.irq_states[irq] &= ~(1 << irq_source_id)
    irq_level = 1 if ioapic.irq_states[irq] else 0
    mask = 1 << irq
    edge = not ioapic.trig_level[irq]
    if not irq_level:
        ioapic.irr &= ~mask
        return 1
    old_irr = ioapic.irr
    ioapic.irr |= mask
    if edge and old_irr == ioapic.irr:
        return 0  # coalesced
    return -1 if ioapic.mask[irq] else 1  # ioapic_service: a masked entry is not delivered
