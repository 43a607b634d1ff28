"""Instruction decoding for the emulated CPU: a byte-level check fast enough to run before every
instruction, and a Capstone decode for the few instructions that cause a VM exit.

A VMX CPU exits *before* an I/O instruction or HLT takes effect, and reports what it was in the exit
qualification (SDM Vol. 3C table 27-5). Our CPU does the same: `classify` looks at an instruction's bytes
(Unicorn tells us its length) and says whether it must exit; `decode_io` then asks Capstone for the
details: direction, element size, port (imm8 or DX), string, REP, address size and segment.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import capstone

# What an instruction means to the CPU's exit logic (the values of the per-address cache).
KIND_NONE = 0      # runs in Unicorn without any exit
KIND_IO = 1        # IN/OUT/INS/OUTS: VM exit, reason 30
KIND_HLT = 2       # HLT: VM exit, reason 12
KIND_SHADOW = 3    # MOV SS, POP SS: no exit, but blocks interrupts for one instruction
KIND_STI = 4       # STI: blocks interrupts for one instruction if IF was 0 (the `sti; hlt` idiom)

_LEGACY_PREFIXES = frozenset((0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3))
_REX = frozenset(range(0x40, 0x50))
_IO_IMM = frozenset((0xE4, 0xE5, 0xE6, 0xE7))                 # in/out with an imm8 port
_IO_DX = frozenset((0xEC, 0xED, 0xEE, 0xEF, 0x6C, 0x6D, 0x6E, 0x6F))  # in/out dx, ins, outs


def classify(code: bytes, size: int) -> int:
    """KIND_* of the instruction whose `size` bytes are `code`.

    Prefixes are skipped (legacy ones and REX). Unicorn's `size` keeps this exact without knowing the
    mode: in 16/32-bit code 0x40-0x4f are one-byte INC/DEC, which are never followed by more bytes of
    the same instruction, so they are only skipped as REX when the instruction continues after them.
    """
    i = 0
    last = min(size, len(code)) - 1
    while i < last and (code[i] in _LEGACY_PREFIXES or code[i] in _REX):
        i += 1
    if i > last:
        return KIND_NONE
    op, rest = code[i], size - i
    if rest == 1:
        if op in _IO_DX:
            return KIND_IO
        if op == 0xF4:
            return KIND_HLT
        if op == 0xFB:
            return KIND_STI
        if op == 0x17:  # pop ss
            return KIND_SHADOW
    elif rest == 2 and op in _IO_IMM:
        return KIND_IO
    elif op == 0x8E and i + 1 < len(code) and (code[i + 1] >> 3) & 7 == 2:  # mov ss, r/m16
        return KIND_SHADOW
    return KIND_NONE


_CS_MODES = {16: capstone.CS_MODE_16, 32: capstone.CS_MODE_32, 64: capstone.CS_MODE_64}
_SEG_PREFIX = {0x26: "es", 0x2E: "cs", 0x36: "ss", 0x3E: "ds", 0x64: "fs", 0x65: "gs"}


@lru_cache(maxsize=None)
def _cs(bits: int, detail: bool) -> capstone.Cs:
    md = capstone.Cs(capstone.CS_ARCH_X86, _CS_MODES[bits])
    md.detail = detail
    return md


@dataclass(frozen=True)
class IoInsn:
    """An I/O instruction as the CPU sees it at the VM exit (and as KVM's decoder sees it)."""

    text: str            # Capstone's disassembly, e.g. "rep outsw dx, word ptr [rsi]"
    length: int          # VM_EXIT_INSTRUCTION_LEN
    is_in: bool          # IN/INS (else OUT/OUTS)
    string: bool         # INS/OUTS
    rep_prefix: int      # 0, 0xF3 (REP/REPE) or 0xF2 (REPNE); either makes INS/OUTS repeat
    imm: bool            # port given as imm8 (else DX)
    port: int | None     # the imm8 port, None for the DX forms
    size: int            # element size: 1, 2 or 4
    ad_bytes: int        # address size of RSI/RDI/RCX for string forms: 2, 4 or 8
    seg: str             # segment of the OUTS source (DS unless overridden); INS always writes ES

    @property
    def rep(self) -> bool:
        return self.rep_prefix != 0


class DecodeError(ValueError):
    """The bytes are not the instruction the caller expected."""


@lru_cache(maxsize=4096)
def decode_io(code: bytes, bits: int) -> IoInsn:
    """Decode the IN/OUT/INS/OUTS at the start of `code` in a `bits`-bit code segment."""
    try:
        insn = next(_cs(bits, True).disasm(code, 0))
    except StopIteration:
        raise DecodeError(f"cannot decode {code[:15].hex(' ')} as {bits}-bit code") from None
    name = insn.insn_name()
    if name not in ("in", "out", "insb", "insw", "insd", "outsb", "outsw", "outsd"):
        raise DecodeError(f"{insn.mnemonic} {insn.op_str} is not an I/O instruction")
    is_in = name.startswith("in")
    string = name.startswith(("ins", "outs"))
    ops = insn.operands
    imm = any(o.type == capstone.x86.X86_OP_IMM for o in ops)
    port = next((o.imm & 0xFF for o in ops if o.type == capstone.x86.X86_OP_IMM), None)
    if string:
        size = {"b": 1, "w": 2, "d": 4}[name[-1]]
    else:
        size = ops[0].size if is_in else ops[1].size  # the AL/AX/EAX operand
    prefixes = list(insn.prefix)
    seg = _SEG_PREFIX.get(prefixes[1], "ds")
    text = f"{insn.mnemonic} {insn.op_str}".strip()
    return IoInsn(text, insn.size, is_in, string, prefixes[0] if prefixes[0] in (0xF2, 0xF3) else 0,
                  imm, port, size, insn.addr_size, seg)


@lru_cache(maxsize=4096)
def disasm(code: bytes, bits: int, addr: int = 0) -> str:
    """One instruction as text (for messages); '(bad)' when Capstone cannot decode it."""
    for _a, _s, mnemonic, op_str in _cs(bits, False).disasm_lite(code, addr, 1):
        return f"{mnemonic} {op_str}".strip()
    return "(bad)"


def insn_length(code: bytes, bits: int) -> int | None:
    """Length of the first instruction in `code`, or None when it does not decode."""
    for _a, size, _m, _o in _cs(bits, False).disasm_lite(code, 0, 1):
        return size
    return None
