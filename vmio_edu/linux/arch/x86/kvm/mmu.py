"""arch/x86/kvm/mmu.c (Linux v3.7): the two-dimensional-paging (EPT) fault paths that lead to MMIO.

A guest-physical address outside every memory slot has no EPT mapping. The first access to such a page is
an EPT violation: `tdp_page_fault` finds no slot ("noslot pfn"), installs an *MMIO spte* for the page and
the instruction is emulated. Later accesses to the page hit that spte and come in as EPT misconfigs, which
`handle_mmio_page_fault_common` recognises at once. Either way the emulator ends in KVM_EXIT_MMIO.
"""
from __future__ import annotations

from vmio_edu.trace.tracepoint import tracepoint
from vmio_edu.linux.arch.x86.include.asm.kvm_host import EMULATE_DO_MMIO, EMULATE_DONE

PFERR_WRITE_MASK = 1 << 1


def tdp_page_fault(vcpu, gpa: int, error_code: int) -> int:
    """Map the faulting page. RAM is always mapped in the model's EPT (Unicorn maps every slot), so a
    fault here is MMIO: remember the page as MMIO (the mmio spte) and ask for emulation (1)."""
    gfn = gpa >> 12
    if vcpu.cpu.is_ram(gpa):
        return 0  # nothing to do: let the guest retry
    vcpu.kvm.arch.mmio_gfns.add(gfn)
    vcpu.cpu.mmio_gfns = vcpu.kvm.arch.mmio_gfns
    return 1


@tracepoint("kvm", args=("vcpu", "cr2", "error_code", "insn", "insn_len"))
def kvm_mmu_page_fault(vcpu, cr2: int, error_code: int, insn: bytes | None = None, insn_len: int = 0) -> int:
    """EPT violation: fix the mapping, or emulate the access if it is MMIO (mmu.c:4070)."""
    from .x86 import x86_emulate_instruction
    r = tdp_page_fault(vcpu, cr2, error_code)
    if r < 0:
        return r
    if not r:
        return 1
    er = x86_emulate_instruction(vcpu, cr2, 0, insn, insn_len)
    if er == EMULATE_DONE:
        return 1
    if er == EMULATE_DO_MMIO:
        vcpu.stat["mmio_exits"] += 1
    return 0


def handle_mmio_page_fault_common(vcpu, addr: int, direct: bool) -> int:
    """1 if `addr` is a page the MMU marked as MMIO (its spte is an mmio spte)."""
    return 1 if addr >> 12 in vcpu.kvm.arch.mmio_gfns else -1
