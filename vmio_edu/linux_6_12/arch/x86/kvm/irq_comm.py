"""arch/x86/kvm/irq_comm.c (Linux v6.12; virt/kvm/irq_comm.c in 3.7): the x86 routing-entry handlers.

`default_routing` (irq_comm.c:377) sends GSI 0-15 both to the IOAPIC pin of the same number and to the
PIC (8-15 to the slave), and GSI 16-23 to the IOAPIC only; `kvm_set_irq` (virt/kvm/irqchip.c) calls each
entry's `set`: `kvm_set_pic_irq` (30) or `kvm_set_ioapic_irq` (38). IDE's IRQ 14 is PIC slave IR6.
"""
from __future__ import annotations

from vmio_edu.linux_6_12.include.linux.kvm_host import (KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
                                                       KVM_IRQCHIP_PIC_SLAVE)
from vmio_edu.trace.tracepoint import tracepoint


@tracepoint("kvm", args=("e", "kvm", "irq_source_id", "level", "line_status"))
def kvm_set_pic_irq(e: tuple, kvm, irq_source_id: int, level: int, line_status: bool = True) -> int:
    from .i8259 import kvm_pic_set_irq
    return kvm_pic_set_irq(kvm.arch.vpic, e[1], irq_source_id, level)


@tracepoint("kvm", args=("e", "kvm", "irq_source_id", "level", "line_status"))
def kvm_set_ioapic_irq(e: tuple, kvm, irq_source_id: int, level: int, line_status: bool = True) -> int:
    from .ioapic import kvm_ioapic_set_irq
    return kvm_ioapic_set_irq(kvm.arch.vioapic, e[1], irq_source_id, level, line_status)


def kvm_setup_default_irq_routing(kvm) -> None:
    """Install `default_routing` (irq_comm.c:392): per GSI, (irqchip, pin, set) entries in table order."""
    routes: dict[int, list] = {}
    for gsi in range(24):
        entries = [(KVM_IRQCHIP_IOAPIC, gsi, kvm_set_ioapic_irq)]
        if gsi < 16:
            entries.append((KVM_IRQCHIP_PIC_SLAVE if gsi >= 8 else KVM_IRQCHIP_PIC_MASTER, gsi, kvm_set_pic_irq))
        routes[gsi] = entries
    kvm.irq_routing = routes
