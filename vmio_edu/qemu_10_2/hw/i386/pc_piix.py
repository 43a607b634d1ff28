"""hw/i386/pc_piix.c (QEMU v10.2.0): build the PC for this path.

What `qemu-system-x86_64 -accel kvm -hda disk.img` (machine pc-i440fx-10.2, kernel irqchip on: not
split for this machine type) sets up, reduced to the path: guest RAM given to KVM as slot 0, the
in-kernel PIC and IOAPIC, the GSIs routed by `gsi_handler`, the PIIX3 IDE function with the disk as
primary master on IRQ 14, the main loop, one vCPU.
"""
from __future__ import annotations

import mmap

from ....qemu.hw.misc.vmio_echo import vmio_echo_init
from ....qemu.state import QemuState
from ...accel.kvm.kvm_all import CPUState, kvm_init, kvm_init_vcpu
from ...system.physmem import address_space_init_io, address_space_init_memory
from ...block.block_backend import blk_unref
from ...util.main_loop import qemu_init_main_loop
from ..ide.piix import pci_piix_ide_init
from .kvm.i8259 import kvm_i8259_init
from .kvm.ioapic import kvm_ioapic_init
from .x86_common import GSIState, x86_gsi_irqs


def pc_init1(state: QemuState, ram: mmap.mmap, engine: str, blk) -> tuple[CPUState, object, str]:
    """Build the board; returns the vCPU, the IDE function and a note about the engine used (the
    emulated engine models the machine's stack's Linux: kvm_init opens /dev/kvm through it)."""
    state.address_space_memory = address_space_init_memory(ram)
    state.address_space_io = address_space_init_io()
    note = kvm_init(state, engine, ram)
    gsi_state = GSIState(i8259_irq=kvm_i8259_init(), ioapic_irq=kvm_ioapic_init())  # pc_i8259_create, ioapic_init_gsi
    gsi = x86_gsi_irqs(gsi_state)
    try:
        ide = pci_piix_ide_init(blk, {14: gsi[14], 15: gsi[15]}, state.address_space_io)
    except Exception:  # the device refused the drive: QEMU exits; close what was opened for it
        for f in (state.kvm_state.vmfd, state.kvm_state.fd):
            f.close()
        blk_unref(blk)
        raise
    state.extra["echo"] = vmio_echo_init(state.address_space_memory.root)
    qemu_init_main_loop(state)
    cpu = kvm_init_vcpu(state)
    state.extra["current_cpu"] = cpu
    return cpu, ide, note
