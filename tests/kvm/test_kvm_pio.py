"""PIO exits on the real /dev/kvm: the facts of shared/reference/README.md §2 and semantics.md (b)(c)(d).

Each test runs real guest code and checks what userspace sees in kvm_run, the PIO page and the registers.
"""
from __future__ import annotations

import struct

import pytest

from kvm_harness import CODE, Guest, assemble
from vmio_edu.linux.include.uapi.linux import kvm as K

pytestmark = pytest.mark.kvm

MODES = (16, 32, 64)
DONE = 0x501  # an OUT here ends a test program


def addr_after(src: str, mode: int) -> int:
    """Guest address of the instruction that follows `src` when `src` is loaded at CODE."""
    return CODE + len(assemble(src, mode)) if src.strip() else CODE


@pytest.fixture(scope="module")
def host_facts():
    """This host's facts, detected through the whole machine on the real engine (never assumed)."""
    import kvm_streams
    from kvm_policy import require_kvm
    require_kvm()
    return kvm_streams.probe_host_facts("kvm")


@pytest.fixture
def guest(request):
    g = Guest(getattr(request, "param", 16))
    yield g
    g.close()


@pytest.mark.parametrize("guest", MODES, indirect=True)
def test_plain_out_exits_with_rip_past_the_instruction(guest, host_facts):
    pre = "mov dx, 0x1f0; mov al, 0x5a;"
    out_at = addr_after(pre, guest.mode)
    guest.load(pre + "out dx, al; mov dx, 0x501; out dx, al")
    ex = guest.step()
    assert (ex.reason, ex.direction, ex.size, ex.port, ex.count) == (K.KVM_EXIT_IO, K.KVM_EXIT_IO_OUT, 1, 0x1F0, 1)
    assert ex.data == b"\x5a"
    assert ex.data_offset == 4096
    # Where RIP is at a plain OUT's exit is a property of the host (detected, tests/kvm_streams.py): past the
    # one-byte `out dx, al` on this project's kvm_pvm host and on Linux 3.7's VMX fast path, at it elsewhere.
    assert ex.rip in (out_at, out_at + 1), f"RIP {ex.rip:#x} is neither at nor past the OUT at {out_at:#x}"
    assert ex.rip == out_at + (1 if host_facts["plain_out_rip"] == "past" else 0)


@pytest.mark.parametrize("guest", MODES, indirect=True)
def test_in_exits_with_rip_at_the_instruction_and_gets_the_data(guest):
    pre = "mov dx, 0x1f0;"
    in_dx = addr_after(pre, guest.mode)
    in_imm = addr_after(pre + "in al, dx; mov bl, al;", guest.mode)
    guest.load(pre + "in al, dx; mov bl, al; in ax, 0x60; mov dx, 0x501; out dx, al")
    ex = guest.step()
    assert (ex.direction, ex.size, ex.port, ex.count, ex.rip) == (K.KVM_EXIT_IO_IN, 1, 0x1F0, 1, in_dx)
    guest.answer_in(ex, b"\x33")
    ex = guest.step()  # `in ax, imm8`: the imm8 form behaves the same
    assert (ex.direction, ex.size, ex.port, ex.count, ex.rip) == (K.KVM_EXIT_IO_IN, 2, 0x60, 1, in_imm)
    guest.answer_in(ex, b"\x34\x12")
    ex = guest.step()
    assert ex.port == DONE
    r = guest.regs()
    assert r.rbx & 0xFF == 0x33 and r.rax & 0xFFFF == 0x1234


def test_kvm_run_io_layout_in_raw_bytes(guest):
    guest.load("mov dx, 0x1f0; mov ax, 0xbeef; out dx, ax")
    guest.step()
    page = guest.page
    assert int.from_bytes(page[8:12], "little") == K.KVM_EXIT_IO       # exit_reason @8
    assert page[32] == K.KVM_EXIT_IO_OUT                                # io.direction @32
    assert page[33] == 2                                                # io.size @33
    assert int.from_bytes(page[34:36], "little") == 0x1F0               # io.port @34
    assert int.from_bytes(page[36:40], "little") == 1                   # io.count @36
    assert int.from_bytes(page[40:48], "little") == 4096                # io.data_offset @40
    assert bytes(page[4096:4098]) == struct.pack("<H", 0xBEEF)          # the data, in the PIO page
    assert len(page) == guest.mmap_size >= 2 * 4096


@pytest.mark.parametrize("guest", MODES, indirect=True)
def test_rep_outsw_3000_words_is_3000_exits_of_one(guest):
    n, src = 3000, 0x2000
    words = [(i * 7919 + 1) & 0xFFFF for i in range(n)]
    guest.ram[src:src + 2 * n] = struct.pack(f"<{n}H", *words)
    pre = f"mov ecx, {n}; mov esi, {src:#x}; mov dx, 0x1f0; cld;"
    at = addr_after(pre, guest.mode)
    prog = pre + "rep outsw; mov dx, 0x501; out dx, al"
    guest.load(prog)
    exits = guest.run_until(DONE)
    data = exits[:-1]
    assert len(data) == n
    for i, ex in enumerate(data):
        assert (ex.direction, ex.size, ex.port, ex.count) == (K.KVM_EXIT_IO_OUT, 2, 0x1F0, 1), i
        assert ex.rip == at, i                        # RIP stays on the rep outsw
        assert ex.rcx & 0xFFFFFFFF == n - 1 - i, i    # RCX already counts this word: 2999 ... 0
        assert ex.rsi & 0xFFFFFFFF == src + 2 * (i + 1), i
        assert ex.data == struct.pack("<H", words[i]), i
    assert exits[-1].rip == addr_after(prog, guest.mode)  # at RCX=0 the guest went on, no exit


def _run_rep_ins(guest, insn: str, size: int, n: int, dst: int = 0x4000):
    """Run `rep <insn>` of n elements into dst; answer each exit with the next elements of a pattern."""
    pattern = bytes((i * 37 + 11) & 0xFF for i in range(n * size))
    pre = f"mov ecx, {n}; mov edi, {dst:#x}; mov dx, 0x1f0; cld;"
    at = addr_after(pre, guest.mode)
    guest.load(pre + f"rep {insn}; mov dx, 0x501; out dx, al")
    fed = 0

    def answer(ex):
        nonlocal fed
        chunk = pattern[fed:fed + ex.count * ex.size]
        fed += len(chunk)
        return chunk

    exits = guest.run_until(DONE, answer)
    return exits[:-1], at, pattern, exits[-1]


@pytest.mark.parametrize("guest", MODES, indirect=True)
@pytest.mark.parametrize("n, counts", [(300, [300]), (600, [512, 88])])
def test_rep_insw_batches_up_to_512_words(guest, n, counts):
    exits, at, pattern, last = _run_rep_ins(guest, "insw", 2, n)
    assert [e.count for e in exits] == counts
    before = n
    for ex in exits:
        assert (ex.direction, ex.size, ex.port) == (K.KVM_EXIT_IO_IN, 2, 0x1F0)
        assert ex.rip == at                                  # RIP on the instruction
        assert ex.rcx & 0xFFFFFFFF == before                 # registers still hold the pre-batch values
        assert ex.rdi & 0xFFFFFFFF == 0x4000 + 2 * (n - before)
        before -= ex.count
    assert bytes(guest.ram[0x4000:0x4000 + 2 * n]) == pattern  # the PIO-page data landed in guest RAM
    assert last.rcx & 0xFFFFFFFF == 0 and last.rdi & 0xFFFFFFFF == 0x4000 + 2 * n


@pytest.mark.parametrize("guest", MODES, indirect=True)
def test_rep_insd_of_7_is_one_exit(guest):
    exits, at, pattern, _ = _run_rep_ins(guest, "insd", 4, 7)
    assert [(e.count, e.size, e.rip) for e in exits] == [(7, 4, at)]
    assert bytes(guest.ram[0x4000:0x4000 + 28]) == pattern


def test_rep_insw_batch_near_a_page_end(guest):
    """256 words at page offset 0xf00. Linux 3.7 stops a batch at the page end (2 exits of 128); the
    6.x kernel measured here does not (1 exit of 256). Either way the data must land."""
    exits, _, pattern, _ = _run_rep_ins(guest, "insw", 2, 256, dst=0x4F00)
    assert [e.count for e in exits] in ([256], [128, 128])
    assert bytes(guest.ram[0x4F00:0x4F00 + 512]) == pattern


def test_long_mode_is_really_64_bit():
    g = Guest(64)
    try:
        g.load("mov rax, 0x1122334455667788; mov dx, 0x501; out dx, al")
        ex = g.step()
        assert ex.port == DONE and ex.rax == 0x1122334455667788
        s = g.sregs()
        assert s.efer & (1 << 10) and s.cs.l == 1  # EFER.LMA, CS.L
    finally:
        g.close()
