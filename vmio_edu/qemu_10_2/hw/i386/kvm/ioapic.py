"""hw/i386/kvm/ioapic.c (QEMU v10.2.0): the IOAPIC is in the kernel; QEMU forwards pin changes."""
from __future__ import annotations

from dataclasses import dataclass

from .....qemu.state import qemu_state
from .....trace.tracepoint import tracepoint
from ....accel.kvm.kvm_all import kvm_set_irq
from ...core.irq import IRQState, qemu_allocate_irqs

IOAPIC_NUM_PINS = 24


@dataclass
class KVMIOAPICState:
    kvm_gsi_base: int = 0


@tracepoint("qemu-cpu", args=("opaque=s", "irq", "level"))
def kvm_ioapic_set_irq(s: KVMIOAPICState, irq: int, level: int) -> None:
    """IOAPIC pin `irq` changed: kvm_set_irq(kvm_state, kvm_gsi_base + irq, level)."""
    kvm_set_irq(qemu_state().kvm_state, s.kvm_gsi_base + irq, level)


def kvm_ioapic_init() -> list[IRQState]:
    """The "kvm-ioapic" device's 24 GPIO inputs (qdev_init_gpio_in(dev, kvm_ioapic_set_irq, 24))."""
    return qemu_allocate_irqs(kvm_ioapic_set_irq, KVMIOAPICState(), IOAPIC_NUM_PINS)
