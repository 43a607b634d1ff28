"""hw/i386/pc_piix.c (QEMU v1.6.1): build the PC (KVM itself is set up by kvm_all.kvm_init).

What `qemu-system-x86_64 -enable-kvm -hda disk.img` sets up, reduced to this path: guest RAM (an mmap
QEMU owns, given to KVM as a memory slot), the in-kernel irqchip, the GSI routing of ISA IRQs to it, the
PIIX IDE controller on ports 0x1f0-0x1f7/0x3f6 with IRQ 14, the main loop, and one vCPU.

With disk="virtio" (`-drive file=disk.img,if=virtio`) the disk is a virtio-blk-pci device instead: the
i440FX host bridge's config ports 0xcf8/0xcfc, PIIX3's INTx router, and virtio-blk-pci at 00:04.0 (where
1.6.1 puts it after VGA at 00:02.0 and the NIC at 00:03.0, neither modelled). Its INTA# reaches PIRQD,
which the guest routes to an ISA IRQ like SeaBIOS does. The IDE controller stays, with no drive.
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

VIRTIO_BLK_SLOT = 4  # 00:04.0


def pc_init1(state: QemuState, ram: mmap.mmap, engine: str, bs, disk: str = "ide",
             ioeventfd: bool = True) -> tuple[CPUState, object, str]:
    """Build the board; returns the vCPU, the IDE controller and a note about the engine used.
    disk="virtio": `bs` goes to virtio-blk-pci (state.extra["virtio_blk"], the PCI host in
    state.extra["pci"]); `ioeventfd` is the device's ioeventfd property."""
    from ...hw.ide.piix import pci_piix_ide_init
    from ...main_loop import qemu_init_main_loop

    state.address_space_memory = AddressSpace("memory", MemoryRegion("system", 1 << 32), ram)
    state.address_space_io = AddressSpace("I/O", MemoryRegion("io", 0x10000))
    note = kvm_init(state, engine, ram)
    gsi_state = GSIState(i8259_irq=kvm_i8259_init())
    gsi = pc_gsi_irqs(gsi_state)
    if disk == "virtio":
        from ..block.virtio_blk import virtio_blk_device_init
        from ..pci.pci import PCI_DEVFN
        from ..pci_host.piix import i440fx_init
        from ..virtio.virtio_pci import virtio_blk_pci_init
        pci = i440fx_init(state.address_space_io.root, gsi[:16])
        vdev = virtio_blk_device_init(bs)
        vdev.ram = ram
        state.extra["pci"] = pci
        state.extra["virtio_blk"] = virtio_blk_pci_init(
            pci.bus, PCI_DEVFN(VIRTIO_BLK_SLOT, 0), vdev, ioeventfd, bool(state.kvm_state.many_ioeventfds))
        ide = pci_piix_ide_init(None, gsi[14], state.address_space_io)
    else:
        ide = pci_piix_ide_init(bs, gsi[14], state.address_space_io)
    state.extra["echo"] = vmio_echo_init(state.address_space_memory.root)
    qemu_init_main_loop(state)
    cpu = kvm_init_vcpu(state)
    return cpu, ide, note
