"""arch/x86/kvm/mmu/mmu.c (Linux v6.12): the two-dimensional-paging (EPT) fault paths that lead to MMIO.

As in 3.7 (`vmio_edu.linux.arch.x86.kvm.mmu`), in 6.12's file: a guest-physical address outside every
memory slot has no EPT mapping; the first access is an EPT violation and `kvm_mmu_do_page_fault` installs an
MMIO spte; later accesses come in as EPT misconfigs (error code PFERR_RSVD_MASK), which
`handle_mmio_page_fault` recognises at once. Either way `x86_emulate_instruction` runs with EMULTYPE_PF
and ends in KVM_EXIT_MMIO.
"""
from __future__ import annotations

from vmio_edu.linux_6_12.arch.x86.include.asm.kvm_host import EMULTYPE_PF
from vmio_edu.trace.tracepoint import tracepoint

PFERR_RSVD_MASK = 1 << 3
RET_PF_CONTINUE, RET_PF_RETRY, RET_PF_EMULATE, RET_PF_INVALID = 0, 1, 2, 3


def handle_mmio_page_fault(vcpu, addr: int, direct: bool) -> int:
    """RET_PF_EMULATE if `addr` is a page the MMU marked as MMIO (mmu.c:4222)."""
    return RET_PF_EMULATE if addr >> 12 in vcpu.kvm.arch.mmio_gfns else RET_PF_INVALID


def kvm_mmu_do_page_fault(vcpu, gpa: int, error_code: int) -> int:
    """Map the faulting page. RAM is always mapped in the model's EPT (Unicorn maps every slot), so a fault
    here is MMIO: remember the page as MMIO (the mmio spte) and ask for emulation."""
    if vcpu.cpu.is_ram(gpa):
        return RET_PF_RETRY
    vcpu.kvm.arch.mmio_gfns.add(gpa >> 12)
    vcpu.cpu.mmio_gfns = vcpu.kvm.arch.mmio_gfns
    return RET_PF_EMULATE


@tracepoint("kvm", args=("vcpu", "cr2_or_gpa", "error_code", "insn", "insn_len"))
def kvm_mmu_page_fault(vcpu, cr2_or_gpa: int, error_code: int, insn: bytes | None = None, insn_len: int = 0) -> int:
    """EPT violation or misconfig: fix the mapping, or emulate the access if it is MMIO (mmu.c:6103-6156)."""
    from ..x86 import x86_emulate_instruction
    r = RET_PF_INVALID
    if error_code & PFERR_RSVD_MASK:
        r = handle_mmio_page_fault(vcpu, cr2_or_gpa, True)
    if r == RET_PF_INVALID:
        r = kvm_mmu_do_page_fault(vcpu, cr2_or_gpa, error_code)
    if r != RET_PF_EMULATE:
        return 1
    return x86_emulate_instruction(vcpu, cr2_or_gpa, EMULTYPE_PF, insn, insn_len)
