"""The emulated CPU's instruction checks: the per-instruction byte classifier and the Capstone I/O decode."""
from __future__ import annotations

import pytest
from keystone import KS_ARCH_X86, KS_MODE_16, KS_MODE_32, KS_MODE_64, Ks

from vmio_edu.cpu.decode import (KIND_HLT, KIND_IO, KIND_NONE, KIND_SHADOW, KIND_STI, DecodeError, classify,
                                 decode_io, disasm, insn_length)
from vmio_edu.cpu.vmcs import io_exit_qualification

_KS = {16: KS_MODE_16, 32: KS_MODE_32, 64: KS_MODE_64}


def asm(src: str, mode: int) -> bytes:
    return bytes(Ks(KS_ARCH_X86, _KS[mode]).asm(src, 0x1000)[0])


@pytest.mark.parametrize("src,mode,kind", [
    ("out dx, al", 16, KIND_IO), ("out dx, ax", 32, KIND_IO), ("in eax, dx", 64, KIND_IO),
    ("in al, 0x60", 16, KIND_IO), ("out 0x80, eax", 64, KIND_IO), ("rep outsw", 16, KIND_IO),
    ("rep insw", 64, KIND_IO), ("insb", 32, KIND_IO), ("outsd", 64, KIND_IO),
    ("hlt", 16, KIND_HLT), ("hlt", 64, KIND_HLT), ("sti", 32, KIND_STI),
    ("mov ss, ax", 16, KIND_SHADOW), ("mov ss, word ptr [bx]", 16, KIND_SHADOW), ("pop ss", 32, KIND_SHADOW),
    ("nop", 16, KIND_NONE), ("inc eax", 32, KIND_NONE), ("mov al, 0xee", 16, KIND_NONE),
    ("mov ds, ax", 16, KIND_NONE), ("cli", 64, KIND_NONE), ("mov eax, 0xf4f4f4f4", 32, KIND_NONE),
])
def test_classify(src, mode, kind):
    code = asm(src, mode)
    assert classify(code + b"\x90" * 8, len(code)) == kind


def test_classify_uses_the_length_unicorn_reports():
    # 0x40 is `inc eax` in 32-bit code (a whole instruction) but a REX prefix in 64-bit code
    assert classify(b"\x40\xee", 1) == KIND_NONE            # 32-bit: inc eax, then (another insn) out
    assert classify(b"\x40\xee", 2) == KIND_IO              # 64-bit: rex out dx, al
    assert classify(b"\x66\xf3\x2e\x6f", 4) == KIND_IO      # several prefixes
    assert classify(b"\xf0\x90", 2) == KIND_NONE


@pytest.mark.parametrize("src,mode,want", [
    # text-free fields: (is_in, string, rep_prefix, imm, port, size, ad_bytes, seg, length)
    ("out dx, al", 16, (False, False, 0, False, None, 1, 2, "ds", 1)),
    ("out dx, ax", 64, (False, False, 0, False, None, 2, 8, "ds", 2)),
    ("in eax, 0x60", 32, (True, False, 0, True, 0x60, 4, 4, "ds", 2)),
    ("rep outsw", 16, (False, True, 0xF3, False, None, 2, 2, "ds", 2)),
    ("rep insw", 64, (True, True, 0xF3, False, None, 2, 8, "ds", 3)),
    (".byte 0xf3, 0x2e, 0x6e", 32, (False, True, 0xF3, False, None, 1, 4, "cs", 3)),  # rep outsb cs:[esi]
    ("repne insd", 32, (True, True, 0xF2, False, None, 4, 4, "ds", 2)),
])
def test_decode_io_fields(src, mode, want):
    io = decode_io(asm(src, mode) + b"\x90", mode)
    assert (io.is_in, io.string, io.rep_prefix, io.imm, io.port, io.size, io.ad_bytes, io.seg, io.length) == want


def test_decode_io_address_size_override():
    io = decode_io(b"\x67\xf3\x6f", 16)  # addr32 rep outsw in 16-bit code
    assert (io.ad_bytes, io.size, io.length) == (4, 2, 3)
    io = decode_io(b"\xf3\x67\x6c", 64)  # rep addr32 insb in 64-bit code
    assert (io.ad_bytes, io.size) == (4, 1)


def test_decode_io_rejects_other_instructions():
    with pytest.raises(DecodeError):
        decode_io(b"\x90", 32)
    assert disasm(b"\x0f\x0b", 64) == "ud2" and disasm(b"\xff\xff", 16) == "(bad)"
    assert insn_length(b"\x66\xb8\x34\x12", 64) == 4


@pytest.mark.parametrize("args,want", [
    ((2, False, False, False, False, 0x1F0), 0x01F00001),   # out dx, ax
    ((2, False, True, True, False, 0x1F0), 0x01F00031),     # rep outsw
    ((1, True, False, False, False, 0x1F0), 0x01F00008),    # in al, dx
    ((2, True, True, True, False, 0x1F0), 0x01F00039),      # rep insw
    ((1, False, False, False, True, 0x80), 0x00800040),     # out 0x80, al
    ((4, True, False, False, True, 0x60), 0x0060004B),      # in eax, 0x60
])
def test_io_exit_qualification_matches_semantics_a(args, want):
    assert io_exit_qualification(*args) == want
