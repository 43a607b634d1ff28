"""Delivering an interrupt or exception the way the processor does it.

Unicorn never dispatches events through the guest's interrupt table: a fault or an `int n` goes to a
hook, and an external interrupt does not exist for it at all. So the CPU model does the processor's
work here, for the three table formats:

* real mode: the 4-byte IVT entry (offset, segment); push FLAGS, CS, IP; clear IF, TF and AC.
* 32-bit protected mode: an 8-byte IDT gate; push EFLAGS, CS, EIP (and an error code for #DF, #TS, #NP,
  #SS, #GP, #PF, #AC); an interrupt gate clears IF, a trap gate leaves it.
* 64-bit mode: a 16-byte IDT gate; the stack is aligned to 16 bytes (or switched to an IST stack), then
  SS, RSP, RFLAGS, CS, RIP (and the error code) are pushed, 8 bytes each.

It is used for VM-entry event injection (KVM's `vmx_inject_irq` writes VM_ENTRY_INTR_INFO_FIELD; the
CPU delivers at entry) and for exceptions and `int n` raised inside the guest, which real hardware
delivers without any VM exit. Only same-privilege delivery is modelled (the guests run at CPL 0); a gate
that would change privilege, a task gate or a 16-bit gate in long mode is reported as a failure.
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .x86 import X86Cpu

EFLAGS_TF, EFLAGS_IF, EFLAGS_NT, EFLAGS_RF, EFLAGS_VM, EFLAGS_AC = 1 << 8, 1 << 9, 1 << 14, 1 << 16, 1 << 17, 1 << 18
ERROR_CODE_VECTORS = frozenset((8, 10, 11, 12, 13, 14, 17))
CONTRIBUTORY = frozenset((0, 10, 11, 12, 13))
VECTOR_NAMES = {0: "#DE", 1: "#DB", 2: "NMI", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM", 8: "#DF",
                10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF", 16: "#MF", 17: "#AC", 18: "#MC",
                19: "#XM"}

# What kind of event is being delivered.
EXT_INTR = "external interrupt"
HW_EXCEPTION = "exception"
SOFT_INTR = "software interrupt"


def vector_name(v: int) -> str:
    return f"{VECTOR_NAMES[v]} (vector {v})" if v in VECTOR_NAMES else f"vector {v:#x}"


class DeliveryError(Exception):
    """The event could not be delivered through the guest's table (the processor would fault again)."""


def deliver(cpu: "X86Cpu", vector: int, kind: str, error_code: int | None = None) -> str:
    """Deliver `vector` at the CPU's current state; returns a one-line description of what happened.

    The return address is the current RIP: for an external interrupt or a fault that is the
    interrupted instruction; for `int n` Unicorn has already moved RIP past it.
    """
    if kind != HW_EXCEPTION or vector not in ERROR_CODE_VECTORS:
        error_code = None
    elif error_code is None:
        error_code = 0
    if not cpu.protected_mode():
        return _deliver_real(cpu, vector)
    if cpu.long_mode():
        return _deliver_64(cpu, vector, kind, error_code)
    return _deliver_32(cpu, vector, kind, error_code)


def _deliver_real(cpu: "X86Cpu", vector: int) -> str:
    base, limit = cpu.idtr()
    if vector * 4 + 3 > limit:
        raise DeliveryError(f"the IVT (limit {limit:#x}) has no entry for vector {vector:#x}")
    off, seg = struct.unpack("<HH", cpu.read_linear(base + vector * 4, 4))
    if off == 0 and seg == 0:
        # A real CPU would jump to 0000:0000 and run the vector table as code; nothing useful can come of
        # it, so the model stops here and says why.
        raise DeliveryError(f"IVT entry {vector:#x} is 0000:0000 (the guest never set a handler)")
    flags, cs, ip = cpu.get_flags(), cpu.get_seg_selector("cs"), cpu.get_ip()
    for value in (flags, cs, ip):
        cpu.push(value, 2)
    cpu.set_flags(flags & ~(EFLAGS_IF | EFLAGS_TF | EFLAGS_AC))
    cpu.set_cs_ip(seg, off)
    return f"IVT[{vector:#x}] -> {seg:04x}:{off:04x}"


def _gate32(cpu: "X86Cpu", vector: int) -> tuple[int, int, int]:
    base, limit = cpu.idtr()
    if vector * 8 + 7 > limit:
        raise DeliveryError(f"the IDT (limit {limit:#x}) has no gate for vector {vector:#x}")
    lo, hi = struct.unpack("<II", cpu.read_linear(base + vector * 8, 8))
    if not hi & 0x8000:
        raise DeliveryError(f"IDT gate {vector:#x} is not present")
    return (lo & 0xFFFF) | (hi & 0xFFFF0000), lo >> 16, (hi >> 8) & 0xF


def _deliver_32(cpu: "X86Cpu", vector: int, kind: str, error_code: int | None) -> str:
    offset, sel, gtype = _gate32(cpu, vector)
    if gtype not in (0x6, 0x7, 0xE, 0xF):
        raise DeliveryError(f"IDT gate {vector:#x} has type {gtype:#x} (task gates are not modelled)")
    if sel & 3 or cpu.cpl() != 0:
        raise DeliveryError(f"IDT gate {vector:#x} needs a privilege change (not modelled: guests run at CPL 0)")
    width = 4 if gtype in (0xE, 0xF) else 2
    flags, cs, ip = cpu.get_flags(), cpu.get_seg_selector("cs"), cpu.get_ip()
    for value in (flags, cs, ip) + (() if error_code is None else (error_code,)):
        cpu.push(value, width)
    flags &= ~(EFLAGS_TF | EFLAGS_NT | EFLAGS_RF | EFLAGS_VM)
    if gtype in (0x6, 0xE):
        flags &= ~EFLAGS_IF
    cpu.set_flags(flags)
    cpu.set_cs_ip(sel, offset if width == 4 else offset & 0xFFFF)
    return f"IDT[{vector:#x}] -> {sel:04x}:{offset:08x}"


def _deliver_64(cpu: "X86Cpu", vector: int, kind: str, error_code: int | None) -> str:
    base, limit = cpu.idtr()
    if vector * 16 + 15 > limit:
        raise DeliveryError(f"the IDT (limit {limit:#x}) has no gate for vector {vector:#x}")
    lo, hi = struct.unpack("<QQ", cpu.read_linear(base + vector * 16, 16))
    if not (lo >> 47) & 1:
        raise DeliveryError(f"IDT gate {vector:#x} is not present")
    gtype = (lo >> 40) & 0xF
    if gtype not in (0xE, 0xF):
        raise DeliveryError(f"IDT gate {vector:#x} has type {gtype:#x}, not a 64-bit interrupt/trap gate")
    sel, ist = (lo >> 16) & 0xFFFF, (lo >> 32) & 7
    if sel & 3 or cpu.cpl() != 0:
        raise DeliveryError(f"IDT gate {vector:#x} needs a privilege change (not modelled: guests run at CPL 0)")
    offset = (lo & 0xFFFF) | ((lo >> 48) & 0xFFFF) << 16 | (hi & 0xFFFF_FFFF) << 32
    old_rsp, flags = cpu.get_sp(), cpu.get_flags()
    ss, cs, rip = cpu.get_seg_selector("ss"), cpu.get_seg_selector("cs"), cpu.get_ip()
    rsp = cpu.ist_stack(ist) if ist else old_rsp
    cpu.set_sp(rsp & ~0xF)
    for value in (ss, old_rsp, flags, cs, rip) + (() if error_code is None else (error_code,)):
        cpu.push(value, 8)
    flags &= ~(EFLAGS_TF | EFLAGS_NT | EFLAGS_RF)
    if gtype == 0xE:
        flags &= ~EFLAGS_IF
    cpu.set_flags(flags)
    cpu.set_cs_ip(sel, offset)
    return f"IDT[{vector:#x}] -> {sel:04x}:{offset:016x}"
