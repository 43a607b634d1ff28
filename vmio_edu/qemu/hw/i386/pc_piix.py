"""hw/i386/pc_piix.c (QEMU v1.6.1): build the PC (KVM itself is set up by kvm_all.kvm_init).

What `qemu-system-x86_64 -enable-kvm -hda disk.img` sets up, reduced to this path: guest RAM (an mmap
QEMU owns, given to KVM as a memory slot), the in-kernel irqchip, the GSI routing of ISA IRQs to it, the
PIIX IDE controller on ports 0x1f0-0x1f7/0x3f6 with IRQ 14, the main loop, and one vCPU.
"""
from __future__ import annotations

import mmap

from ...exec import AddressSpace
from ...kvm_all import CPUState, kvm_init, kvm_init_vcpu
from ...memory import MemoryRegion
from ...state import QemuState
from ..misc.vmio_echo import vmio_echo_init
from .kvm.i8259 import kvm_i8259_init
from .kvm.ioapic import GSIState, pc_gsi_irqs


def pc_init1(state: QemuState, ram: mmap.mmap, engine: str, bs) -> tuple[CPUState, object, str]:
    """Build the board; returns the vCPU, the IDE controller and a note about the engine used."""
    from ...hw.ide.piix import pci_piix_ide_init
    from ...main_loop import qemu_init_main_loop

    state.address_space_memory = AddressSpace("memory", MemoryRegion("system", 1 << 32), ram)
    state.address_space_io = AddressSpace("I/O", MemoryRegion("io", 0x10000))
    note = kvm_init(state, engine, ram)
    gsi_state = GSIState(i8259_irq=kvm_i8259_init())
    gsi = pc_gsi_irqs(gsi_state)
    ide = pci_piix_ide_init(bs, gsi[14], state.address_space_io)
    state.extra["echo"] = vmio_echo_init(state.address_space_memory.root)
    qemu_init_main_loop(state)
    cpu = kvm_init_vcpu(state)
    return cpu, ide, note
