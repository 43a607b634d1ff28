"""arch/x86/kvm/kvm_cache_regs.h (Linux v6.12): KVM's cache of guest registers.

As in 3.7: after a VM exit the general registers sit in `vcpu->arch.regs`; RSP and RIP stay in the VMCS
until someone asks (`regs_avail`, filled by `kvm_x86_ops->cache_reg` = `vmx_cache_reg`); a write marks
the register dirty and `vmx_vcpu_run` puts it back before the next VM entry.
"""
from __future__ import annotations

from vmio_edu.linux_6_12.arch.x86.include.asm.kvm_host import VCPU_REGS_RAX, VCPU_REGS_RIP


def kvm_register_read_raw(vcpu, reg: int) -> int:
    arch = vcpu.arch
    if not arch.regs_avail >> reg & 1:
        x86.kvm_x86_ops.cache_reg(vcpu, reg)
    return arch.regs[reg]


def kvm_register_write_raw(vcpu, reg: int, val: int) -> None:
    arch = vcpu.arch
    arch.regs[reg] = val & 0xFFFF_FFFF_FFFF_FFFF
    arch.regs_dirty |= 1 << reg
    arch.regs_avail |= 1 << reg


kvm_register_read = kvm_register_read_raw
kvm_register_write = kvm_register_write_raw


def kvm_rip_read(vcpu) -> int:
    return kvm_register_read_raw(vcpu, VCPU_REGS_RIP)


def kvm_rip_write(vcpu, val: int) -> None:
    kvm_register_write_raw(vcpu, VCPU_REGS_RIP, val)


def kvm_rax_read(vcpu) -> int:
    return kvm_register_read_raw(vcpu, VCPU_REGS_RAX)


def kvm_rax_write(vcpu, val: int) -> None:
    kvm_register_write_raw(vcpu, VCPU_REGS_RAX, val)


from . import x86  # noqa: E402 - at the end: x86.py imports this module (the kvm_x86_ops indirection)
