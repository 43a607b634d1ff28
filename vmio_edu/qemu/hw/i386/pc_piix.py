"""hw/i386/pc_piix.c + the KVM parts of kvm-all.c's kvm_init (QEMU v1.6.1): build the PC.

What `qemu-system-x86_64 -enable-kvm -hda disk.img` sets up, reduced to this path: guest RAM (an mmap
QEMU owns, given to KVM as a memory slot), the in-kernel irqchip, the GSI routing of ISA IRQs to it, the
PIIX IDE controller on ports 0x1f0-0x1f7/0x3f6 with IRQ 14, the main loop, and one vCPU.
"""
from __future__ import annotations

import ctypes
import mmap

from ....devkvm import open_dev_kvm
from ....errors import EngineUnavailable
from ....linux.include.uapi.linux import kvm as K
from ...exec import AddressSpace
from ...kvm_all import CPUState, KVMState
from ...memory import MemoryRegion
from ...state import QemuState
from ..misc.vmio_echo import vmio_echo_init
from .kvm.i8259 import kvm_i8259_init
from .kvm.ioapic import GSIState, pc_gsi_irqs


def ram_address(ram: mmap.mmap) -> int:
    """The host address of QEMU's RAM block (what KVM_SET_USER_MEMORY_REGION is given)."""
    return ctypes.addressof(ctypes.c_char.from_buffer(ram))


def kvm_init(state: QemuState, engine: str, ram: mmap.mmap) -> str:
    """Open /dev/kvm, create the VM, give it RAM as slot 0 and create the in-kernel irqchip."""
    fd, used, note = open_dev_kvm(engine, state.sched)
    version = fd.ioctl(K.KVM_GET_API_VERSION)
    if version != 12:
        raise EngineUnavailable(f"KVM API version {version}, expected 12")
    vmfd = fd.ioctl(K.KVM_CREATE_VM, 0)
    region = K.kvm_userspace_memory_region(slot=0, flags=0, guest_phys_addr=0, memory_size=len(ram),
                                           userspace_addr=ram_address(ram))
    vmfd.ioctl(K.KVM_SET_USER_MEMORY_REGION, region)
    vmfd.ioctl(K.KVM_CREATE_IRQCHIP, 0)
    state.kvm_state = KVMState(fd, vmfd, used, slots=[region])
    return note


def kvm_init_vcpu(state: QemuState, index: int = 0) -> CPUState:
    """KVM_CREATE_VCPU and mmap its `struct kvm_run` (page 0) and PIO page (page 1)."""
    s = state.kvm_state
    vcpufd = s.vmfd.ioctl(K.KVM_CREATE_VCPU, index)
    size = s.fd.ioctl(K.KVM_GET_VCPU_MMAP_SIZE, 0)
    return CPUState(index, vcpufd, vcpufd.mmap(size))


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
