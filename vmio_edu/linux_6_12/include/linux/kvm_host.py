"""include/linux/kvm_host.h (Linux v6.12): `struct kvm` (one VM) and `struct kvm_vcpu` (one vCPU).

The records are 3.7's (`vmio_edu.linux.include.linux.kvm_host`: the memory slots, the KVM I/O buses, the
vCPU's model parts such as `cpu` and `vmx`), with what 6.12 adds on this path: the vCPU's
`struct kvm_vcpu_arch` of 6.12 (its PIO request remembers `linear_rip`), `wants_to_run` (KVM_RUN with
`immediate_exit` set runs nothing, kvm_main.c:4466), and the VM's `disabled_quirks`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from vmio_edu.linux.include.linux import kvm_host as _k37
from vmio_edu.linux.include.linux.kvm_host import (IN_GUEST_MODE, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,  # noqa: F401
                                                   KVM_IRQCHIP_PIC_SLAVE, KVM_MMIO_BUS, KVM_PIO_BUS,
                                                   KVM_USERSPACE_IRQ_SOURCE_ID, OUTSIDE_GUEST_MODE,
                                                   EXITING_GUEST_MODE, kvm_io_bus, kvm_io_device, kvm_io_range,
                                                   kvm_memory_slot)

from ...arch.x86.include.asm.kvm_host import kvm_vcpu_arch


@dataclass
class kvm_arch(_k37.kvm_arch):
    """struct kvm_arch: 3.7's parts plus `disabled_quirks` (KVM_CAP_DISABLE_QUIRKS2; none by default)."""

    disabled_quirks: int = 0


@dataclass
class kvm(_k37.kvm):
    """struct kvm: one virtual machine."""

    arch: kvm_arch = field(default_factory=kvm_arch)
    # model: the last access an in-kernel device took, ("in"/"out", size, address, data bytes), for
    # `kvm_exit_in_kernel` (6.12 no longer records a kernel-handled access in vcpu->arch.pio)
    last_io: tuple | None = None


@dataclass
class kvm_vcpu(_k37.kvm_vcpu):
    """struct kvm_vcpu with 6.12's `struct kvm_vcpu_arch`."""

    arch: kvm_vcpu_arch = field(default_factory=kvm_vcpu_arch)
    wants_to_run: bool = False

    def __post_init__(self) -> None:
        self.stat.setdefault("req_event", 0)
        self.stat.setdefault("request_irq_exits", 0)


def kvm_make_request(req: int, vcpu: kvm_vcpu) -> None:
    vcpu.requests.add(req)


def kvm_test_request(req: int, vcpu: kvm_vcpu) -> bool:
    return req in vcpu.requests


def kvm_check_request(req: int, vcpu: kvm_vcpu) -> bool:
    if req in vcpu.requests:
        vcpu.requests.discard(req)
        return True
    return False


def kvm_clear_request(req: int, vcpu: kvm_vcpu) -> None:
    vcpu.requests.discard(req)


def irqchip_in_kernel(k: kvm) -> bool:
    return k.arch.vpic is not None


def lapic_in_kernel(vcpu: kvm_vcpu) -> bool:
    """With KVM_CREATE_IRQCHIP the LAPIC is emulated in the kernel (its reset state: LVT0 = ExtINT)."""
    return irqchip_in_kernel(vcpu.kvm)
