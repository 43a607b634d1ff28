"""PIO through the Linux 3.7 model, exit by exit: semantics.md (a) exit qualification, (b) fast path vs
emulator, (c) `rep outs` / `rep ins` batching, (d) struct kvm_run and the PIO page.

Every test drives KVM_RUN on the emulated /dev/kvm by hand (no QEMU model) in 16-bit and 64-bit mode
(some in 32-bit too), and checks what userspace sees: kvm_run, the PIO page, the registers, guest RAM,
and the VMCS exit fields the emulated CPU reported.
"""
from __future__ import annotations

import struct

import pytest

from vmm_harness import DONE, Vm, addr_after, pattern, words
from vmio_edu.cpu import vmcs as V
from vmio_edu.linux.include.uapi.linux import kvm as K

MODES = (16, 64)
ALL_MODES = (16, 32, 64)
END = "mov dx, 0x501; out dx, al"


def cx(mode: int) -> str:
    return "cx" if mode == 16 else "ecx"


def si(mode: int) -> str:
    return {16: "si", 32: "esi", 64: "rsi"}[mode]


def di(mode: int) -> str:
    return {16: "di", 32: "edi", 64: "rdi"}[mode]


@pytest.fixture
def vm(request):
    g = Vm(getattr(request, "param", 16))
    yield g
    g.close()


# -- (b) plain OUT: the fast path, RIP already past the instruction ------------------------------------------
@pytest.mark.parametrize("vm", ALL_MODES, indirect=True)
def test_plain_out_exits_with_rip_advanced_and_data_in_the_pio_page(vm):
    pre = "mov dx, 0x1f0; mov al, 0x5a;"
    out_at = addr_after(pre, vm.mode)
    vm.load(pre + "out dx, al; mov ax, 0xbeef; out dx, ax; " + END)
    ex = vm.step()
    assert (ex.reason, ex.direction, ex.size, ex.port, ex.count) == (K.KVM_EXIT_IO, K.KVM_EXIT_IO_OUT, 1, 0x1F0, 1)
    assert ex.data_offset == 4096 and ex.data == b"\x5a"
    assert ex.rip == out_at + 1
    assert (ex.exit_reason_hw, ex.qualification) == (V.EXIT_REASON_IO_INSTRUCTION, 0x01F00000)
    ex = vm.step()
    assert ex.size == 2 and ex.data == struct.pack("<H", 0xBEEF)
    assert ex.qualification == 0x01F00001  # out dx, ax (semantics (a))


@pytest.mark.parametrize("vm", MODES, indirect=True)
def test_out_imm8_qualification_and_length(vm):
    pre = "mov al, 0x42;"
    at = addr_after(pre, vm.mode)
    vm.load(pre + "out 0x80, al; " + END)
    ex = vm.step()
    assert (ex.port, ex.size, ex.data, ex.rip) == (0x80, 1, b"\x42", at + 2)
    assert ex.qualification == 0x00800040  # imm8 operand encoding (bit 6)
    assert vm.vmcs.VM_EXIT_INSTRUCTION_LEN == 2


# -- (b) IN: through the emulator, RIP at the instruction, RAX merged on the next KVM_RUN ---------------------
@pytest.mark.parametrize("vm", ALL_MODES, indirect=True)
def test_in_dx_and_imm8_exit_unadvanced_and_merge_into_rax(vm):
    pre = "mov eax, 0x11223344; mov dx, 0x1f0;"
    in_dx = addr_after(pre, vm.mode)
    mid = pre + "in al, dx; mov ebx, eax;"
    in_imm = addr_after(mid, vm.mode)
    vm.load(mid + "in ax, 0x60; mov ecx, eax; " + END)
    ex = vm.step()
    assert (ex.direction, ex.size, ex.port, ex.count, ex.rip) == (K.KVM_EXIT_IO_IN, 1, 0x1F0, 1, in_dx)
    assert ex.rax == 0x11223344  # nothing written yet
    assert ex.qualification == 0x01F00008  # in al, dx
    vm.answer_in(ex, b"\x33")
    ex = vm.step()
    assert (ex.direction, ex.size, ex.port, ex.count, ex.rip) == (K.KVM_EXIT_IO_IN, 2, 0x60, 1, in_imm)
    assert ex.qualification == 0x00600049  # in ax, imm8: size 2, IN, imm8
    vm.answer_in(ex, b"\x34\x12")
    ex = vm.step()
    assert ex.port == DONE
    r = vm.regs()
    assert r.rbx & 0xFFFFFFFF == 0x11223333  # AL merged, the rest of EAX kept
    assert r.rcx & 0xFFFFFFFF == 0x11221234  # AX merged


# -- (c) rep outs: one exit per element, RCX/RSI already advanced, RIP stays -----------------------------------
@pytest.mark.parametrize("vm", MODES, indirect=True)
def test_rep_outsw_n_words_is_n_exits_of_one(vm):
    n, src = 300, 0x2000
    data = pattern(2 * n, 5)
    vm.ram[src:src + 2 * n] = data
    pre = f"cld; mov dx, 0x1f0; mov {cx(vm.mode)}, {n}; mov {si(vm.mode)}, {src};"
    outs_at = addr_after(pre, vm.mode)
    vm.load(pre + "rep outsw; " + END)
    exits = vm.run_until()
    pio = exits[:-1]
    assert len(pio) == n
    for i, ex in enumerate(pio):
        assert (ex.direction, ex.size, ex.port, ex.count) == (K.KVM_EXIT_IO_OUT, 2, 0x1F0, 1)
        assert ex.rip == outs_at
        assert ex.rcx == n - 1 - i and ex.rsi == src + 2 * (i + 1)
        assert ex.data == data[2 * i:2 * i + 2]
        assert ex.qualification == 0x01F00031  # rep outsw
    assert exits[-1].port == DONE and exits[-1].rcx == 0  # RCX = 0: no extra exit, RIP moved on


@pytest.mark.parametrize("vm", (16,), indirect=True)
def test_rep_outsw_3000_words_as_measured_on_real_kvm(vm):
    n, src = 3000, 0x2000
    vm.ram[src:src + 2 * n] = pattern(2 * n)
    vm.load(f"cld; mov dx, 0x1f0; mov cx, {n}; mov si, {src}; rep outsw; " + END)
    exits = vm.run_until()[:-1]
    assert len(exits) == 3000 and {e.count for e in exits} == {1}
    assert [e.rcx for e in exits] == list(range(2999, -1, -1))


@pytest.mark.parametrize("vm", MODES, indirect=True)
def test_rep_outsb_and_outsd_sizes(vm):
    vm.ram[0x2000:0x2010] = bytes(range(0x10, 0x20))
    vm.load(f"cld; mov dx, 0x300; mov {cx(vm.mode)}, 3; mov {si(vm.mode)}, 0x2000; rep outsb;"
            f"mov {cx(vm.mode)}, 2; rep outsd; " + END)
    exits = vm.run_until()[:-1]
    assert [(e.size, e.count, e.data) for e in exits] == [
        (1, 1, b"\x10"), (1, 1, b"\x11"), (1, 1, b"\x12"),
        (4, 1, bytes(range(0x13, 0x17))), (4, 1, bytes(range(0x17, 0x1B)))]
    assert exits[0].qualification == 0x03000030 and exits[3].qualification == 0x03000033


# -- (c) rep ins: one exit per batch of up to 1024 bytes, never past RDI's page ----------------------------------
@pytest.mark.parametrize("vm", MODES, indirect=True)
@pytest.mark.parametrize("n,batches", [(300, [300]), (600, [512, 88])])
def test_rep_insw_batches(vm, n, batches):
    dst = 0x10000 if vm.mode != 16 else 0x2000
    pre = f"cld; mov dx, 0x1f0; mov {cx(vm.mode)}, {n}; mov {di(vm.mode)}, {dst};"
    ins_at = addr_after(pre, vm.mode)
    vm.load(pre + "rep insw; " + END)
    answers = []

    def answer(ex):
        answers.append(pattern(ex.count * 2, len(answers) + 1))
        return answers[-1]
    exits = vm.run_until(answer=answer)
    pio = exits[:-1]
    assert [e.count for e in pio] == batches
    done = 0
    for ex in pio:
        assert (ex.direction, ex.size, ex.port, ex.rip) == (K.KVM_EXIT_IO_IN, 2, 0x1F0, ins_at)
        assert ex.rcx == n - done and ex.rdi == dst + 2 * done  # the pre-batch values
        assert ex.qualification == 0x01F00039  # rep insw
        done += ex.count
    assert exits[-1].rcx == 0 and exits[-1].rdi == dst + 2 * n
    assert bytes(vm.ram[dst:dst + 2 * n]) == b"".join(answers)


@pytest.mark.parametrize("vm", MODES, indirect=True)
def test_rep_insd_7_is_one_exit_and_insb_uses_the_1024_byte_cache(vm):
    vm.load(f"cld; mov dx, 0x1f0; mov {cx(vm.mode)}, 7; mov {di(vm.mode)}, 0x3000; rep insd;"
            f"mov {cx(vm.mode)}, 2000; mov {di(vm.mode)}, 0x4000; rep insb; " + END)
    exits = vm.run_until()[:-1]
    assert [(e.size, e.count) for e in exits] == [(4, 7), (1, 1024), (1, 976)]


@pytest.mark.parametrize("vm", MODES, indirect=True)
def test_rep_insw_at_page_offset_f00_stops_at_the_page_end_as_in_linux_3_7(vm):
    # 3.7 (emulate.c:1286-1296) counts the room to the page end in bytes and divides by the size:
    # 0x100 bytes = 128 words, then the rest. Linux 6.x would give one exit of 256 (tests/kvm/README.md).
    vm.load(f"cld; mov dx, 0x1f0; mov {cx(vm.mode)}, 256; mov {di(vm.mode)}, 0x4f00; rep insw; " + END)
    exits = vm.run_until()[:-1]
    assert [e.count for e in exits] == [128, 128]
    assert exits[1].rdi == 0x5000


@pytest.mark.parametrize("vm", MODES, indirect=True)
def test_rep_insw_with_df_set_fills_downwards_from_the_page_offset(vm):
    n = 600
    vm.load(f"std; mov dx, 0x1f0; mov {cx(vm.mode)}, {n}; mov {di(vm.mode)}, 0x4f00; rep insw; cld; " + END)
    answers = []

    def answer(ex):
        answers.append(pattern(ex.count * 2, len(answers) + 3))
        return answers[-1]
    exits = vm.run_until(answer=answer)
    assert [e.count for e in exits[:-1]] == [512, 88]  # in_page = RDI's page offset 0xf00 -> 1024 bytes
    data = words(b"".join(answers))
    for i in (0, 1, 511, 512, 599):
        assert struct.unpack_from("<H", vm.ram, 0x4F00 - 2 * i)[0] == data[i]
    assert exits[-1].rdi == 0x4F00 - 2 * n


@pytest.mark.parametrize("vm", MODES, indirect=True)
def test_rep_with_rcx_zero_makes_no_exit(vm):
    pre = f"cld; mov dx, 0x1f0; xor {cx(vm.mode)}, {cx(vm.mode)}; rep outsw; rep insw;"
    vm.load(pre + END)
    ex = vm.step()
    assert (ex.direction, ex.port) == (K.KVM_EXIT_IO_OUT, DONE)
    assert ex.rip == addr_after(pre + "mov dx, 0x501; out dx, al", vm.mode)


# -- 16-bit details: segment bases and the address size -----------------------------------------------------
def test_real_mode_es_di_and_ds_si_use_the_segment_bases():
    vm = Vm(16)
    try:
        vm.ram[0x30010:0x30014] = b"\xaa\xbb\xcc\xdd"
        vm.load("cld; mov ax, 0x3000; mov ds, ax; mov ax, 0x5000; mov es, ax; mov dx, 0x1f0;"
                "mov cx, 2; mov si, 0x10; rep outsw; mov cx, 2; mov di, 0x20; rep insw; " + END)
        exits = vm.run_until(answer=lambda ex: b"\x01\x02\x03\x04")
        assert [e.data for e in exits[:2]] == [b"\xaa\xbb", b"\xcc\xdd"]
        assert bytes(vm.ram[0x50020:0x50024]) == b"\x01\x02\x03\x04"
    finally:
        vm.close()


def test_real_mode_si_wraps_in_16_bits_and_addr32_counts_esi():
    vm = Vm(16)
    try:
        vm.ram[0xFFFE:0x10000] = b"\x11\x22"
        vm.ram[0x0:0x2] = b"\x33\x44"
        vm.ram[0x1FFFE:0x20002] = b"\x55\x66\x77\x88"
        vm.load("cld; mov dx, 0x300; mov esi, 0x1fffe; mov cx, 2; rep outsw; mov ebx, esi;"
                "mov esi, 0x1fffe; mov ecx, 2; .byte 0x67, 0xf3, 0x6f; " + END)  # addr32 rep outsw
        exits = vm.run_until()
        # 16-bit address size: DS:SI is 0:FFFE then 0:0000, and only SI moves inside ESI
        assert [e.data for e in exits[:2]] == [b"\x11\x22", b"\x33\x44"]
        assert [e.rsi for e in exits[:2]] == [0x10000, 0x10002]
        # 32-bit address size: ESI counts, from 0x1fffe on
        assert [e.data for e in exits[2:4]] == [b"\x55\x66", b"\x77\x88"]
        assert exits[3].rsi == 0x20002
    finally:
        vm.close()


# -- (d) struct kvm_run -----------------------------------------------------------------------------------
def test_kvm_run_io_layout_in_raw_bytes():
    vm = Vm(16)
    try:
        vm.load("mov dx, 0x1f0; mov ax, 0xbeef; out dx, ax")
        vm.step()
        page = vm.page
        assert vm.mmap_size == 3 * 4096 and len(page) == vm.mmap_size
        assert int.from_bytes(page[8:12], "little") == K.KVM_EXIT_IO
        assert (page[32], page[33]) == (K.KVM_EXIT_IO_OUT, 2)
        assert int.from_bytes(page[34:36], "little") == 0x1F0
        assert int.from_bytes(page[36:40], "little") == 1
        assert int.from_bytes(page[40:48], "little") == 4096
        assert bytes(page[4096:4098]) == struct.pack("<H", 0xBEEF)
    finally:
        vm.close()


# -- in-kernel devices: the PIC ports never reach userspace ------------------------------------------------
PIC_INIT = ("mov al, 0xff; out 0x21, al; out 0xa1, al; mov al, 0x11; out 0x20, al; mov al, 0x20; out 0x21, al;"
            "mov al, 4; out 0x21, al; mov al, 1; out 0x21, al; mov al, 0x11; out 0xa0, al; mov al, 0x28;"
            "out 0xa1, al; mov al, 2; out 0xa1, al; mov al, 1; out 0xa1, al; mov al, 0xfb; out 0x21, al;"
            "mov al, 0xbf; out 0xa1, al;")


@pytest.mark.parametrize("vm", MODES, indirect=True)
def test_pic_programming_and_reads_stay_in_the_kernel(vm):
    vm.load(PIC_INIT + "in al, 0x21; mov bl, al; in al, 0xa1; mov bh, al; mov al, 0x0b; out 0x20, al;"
            "in al, 0x20; mov cl, al; " + END)
    exits = vm.run_until()
    assert len(exits) == 1 and exits[0].port == DONE  # not one PIC access left the kernel
    r = vm.regs()
    assert r.rbx & 0xFFFF == 0xBFFB and r.rcx & 0xFF == 0  # IMRs as programmed; ISR empty (OCW3 read ISR)
    pic = vm.vm.kvm.arch.vpic
    assert (pic.pics[0].irq_base, pic.pics[1].irq_base) == (0x20, 0x28)
    assert (pic.pics[0].imr, pic.pics[1].imr) == (0xFB, 0xBF)
