"""arch/x86/kvm/kvm_cache_regs.h (Linux v3.7): KVM's cache of guest registers.

After a VM exit the general registers sit in `vcpu->arch.regs`; RSP and RIP stay in the VMCS until
someone asks (`regs_avail`). A write marks the register dirty (`regs_dirty`), and `vmx_vcpu_run` puts
dirty values back before the next VM entry.
"""
from __future__ import annotations

from vmio_edu.linux.arch.x86.include.asm.kvm_host import VCPU_REGS_RIP


def kvm_register_read(vcpu, reg: int) -> int:
    arch = vcpu.arch
    if not arch.regs_avail >> reg & 1:
        x86.kvm_x86_ops.cache_reg(vcpu, reg)
    return arch.regs[reg]


def kvm_register_write(vcpu, reg: int, val: int) -> None:
    arch = vcpu.arch
    arch.regs[reg] = val & 0xFFFF_FFFF_FFFF_FFFF
    arch.regs_dirty |= 1 << reg
    arch.regs_avail |= 1 << reg


def kvm_rip_read(vcpu) -> int:
    return kvm_register_read(vcpu, VCPU_REGS_RIP)


def kvm_rip_write(vcpu, val: int) -> None:
    kvm_register_write(vcpu, VCPU_REGS_RIP, val)


from . import x86  # noqa: E402 - at the end: x86.py imports this module (the kvm_x86_ops indirection)
