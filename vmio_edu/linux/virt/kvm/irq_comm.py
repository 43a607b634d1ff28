"""virt/kvm/irq_comm.c (Linux v3.7): GSI routing, from an interrupt line number to the irqchip pins.

The default routing (`kvm_setup_default_irq_routing`) sends GSI 0-15 both to the PIC (master pins 0-7,
slave pins 8-15) and to the IOAPIC pin of the same number, and GSI 16-23 to the IOAPIC only: "not possible
to detect if the guest uses the PIC or the IOAPIC, so set the bit in both". IDE's IRQ 14 is PIC slave IR6.
"""
from __future__ import annotations

from vmio_edu.trace.tracepoint import tracepoint
from vmio_edu.linux.include.linux.kvm_host import KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE


def kvm_setup_default_irq_routing(kvm) -> None:
    routes: dict[int, list] = {}
    for gsi in range(24):
        entries = [(KVM_IRQCHIP_IOAPIC, gsi)]
        if gsi < 16:
            entries.append((KVM_IRQCHIP_PIC_SLAVE if gsi >= 8 else KVM_IRQCHIP_PIC_MASTER, gsi))
        routes[gsi] = entries
    kvm.irq_routing = routes


@tracepoint("kvm", args=("kvm", "irq_source_id", "level", "pin"))
def kvm_set_pic_irq(kvm, pin: int, irq_source_id: int, level: int) -> int:
    from vmio_edu.linux.arch.x86.kvm.i8259 import kvm_pic_set_irq
    return kvm_pic_set_irq(kvm.arch.vpic, pin, irq_source_id, level)


@tracepoint("kvm", args=("kvm", "irq_source_id", "level", "pin"))
def kvm_set_ioapic_irq(kvm, pin: int, irq_source_id: int, level: int) -> int:
    from .ioapic import kvm_ioapic_set_irq
    return kvm_ioapic_set_irq(kvm.arch.vioapic, pin, irq_source_id, level)


@tracepoint("kvm", args=("kvm", "irq_source_id", "irq", "level"))
def kvm_set_irq(kvm, irq_source_id: int, irq: int, level: int) -> int:
    """Drive every pin GSI `irq` is routed to. Returns <0 ignored (masked everywhere), 0 coalesced, >0 the
    number of deliveries (irq_comm.c:149-181)."""
    ret = -1
    entries = kvm.irq_routing.get(irq, [])
    for chip, pin in reversed(entries):  # while (i--): the last entry of the list first
        if chip == KVM_IRQCHIP_IOAPIC:
            r = kvm_set_ioapic_irq(kvm, pin, irq_source_id, level)
        else:
            r = kvm_set_pic_irq(kvm, pin, irq_source_id, level)
        if r < 0:
            continue
        ret = r + (0 if ret < 0 else ret)
    return ret
