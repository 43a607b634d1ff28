"""MMIO through the model: an access outside every memory slot → EPT violation (first time) or EPT
misconfig (the page is known as MMIO) → the emulator → KVM_EXIT_MMIO. A write exits with the data and RIP
past the instruction; a read exits with RIP on the instruction and completes on the next KVM_RUN with the
data userspace put in kvm_run->mmio.data.
"""
from __future__ import annotations

import struct

from vmm_harness import Vm, addr_after
from vmio_edu.cpu import vmcs as V
from vmio_edu.linux.include.uapi.linux import kvm as K

MMIO = 0x400000  # above the 2 MiB of RAM, inside the 64-bit identity map


def test_64bit_read_then_write_then_read_modify_write():
    vm = Vm(64)
    try:
        pre = f"mov rbx, {MMIO};"
        rd = addr_after(pre, 64)
        s1 = pre + "mov eax, dword ptr [rbx + 4];"
        wr_end = addr_after(s1 + "mov dword ptr [rbx + 8], 0xcafef00d;", 64)
        s2 = s1 + "mov dword ptr [rbx + 8], 0xcafef00d;"
        rmw = addr_after(s2, 64)
        rmw_end = addr_after(s2 + "add dword ptr [rbx + 12], 5;", 64)
        vm.load(s2 + "add dword ptr [rbx + 12], 5; mov dx, 0x501; out dx, al")

        ex = vm.step()
        assert (ex.reason, ex.phys_addr, ex.mmio_len, ex.is_write, ex.rip) == (K.KVM_EXIT_MMIO, MMIO + 4, 4, 0, rd)
        assert ex.exit_reason_hw == V.EXIT_REASON_EPT_VIOLATION and ex.qualification & V.EPT_VIOLATION_READ
        vm.answer_mmio(struct.pack("<I", 0x11223344))

        ex = vm.step()
        assert (ex.phys_addr, ex.mmio_len, ex.is_write) == (MMIO + 8, 4, 1)
        assert ex.data == struct.pack("<I", 0xCAFEF00D) and ex.rip == wr_end
        assert ex.rax & 0xFFFFFFFF == 0x11223344  # the read completed before the guest went on
        assert ex.exit_reason_hw == V.EXIT_REASON_EPT_MISCONFIG  # the page is a known MMIO page now

        ex = vm.step()  # add: read first ...
        assert (ex.phys_addr, ex.is_write, ex.rip) == (MMIO + 12, 0, rmw)
        vm.answer_mmio(struct.pack("<I", 100))
        ex = vm.step()  # ... then the write of the result, with RIP past the instruction
        assert (ex.phys_addr, ex.is_write, ex.data, ex.rip) == (MMIO + 12, 1, struct.pack("<I", 105), rmw_end)
        ex = vm.step()
        assert ex.reason == K.KVM_EXIT_IO and ex.port == 0x501
        # like 3.7, only the EPT-violation path (kvm_mmu_page_fault) counts mmio_exits
        assert vm.vcpu.vcpu.stat["mmio_exits"] == 1
    finally:
        vm.close()


def test_16bit_mmio_below_1mib_uses_the_segment_base():
    vm = Vm(16, ram_size=0x80000)  # RAM ends at 512 KiB: 0x90000 is MMIO
    try:
        pre = "mov ax, 0x9000; mov es, ax; mov ax, 0x5555;"
        vm.load(pre + "mov word ptr es:[0x10], 0x1234; mov al, byte ptr es:[0x21]; mov dx, 0x501; out dx, al")
        ex = vm.step()
        assert (ex.reason, ex.phys_addr, ex.mmio_len, ex.is_write, ex.data) == (K.KVM_EXIT_MMIO, 0x90010, 2, 1,
                                                                                 b"\x34\x12")
        ex = vm.step()
        assert (ex.phys_addr, ex.mmio_len, ex.is_write) == (0x90021, 1, 0)
        vm.answer_mmio(b"\xa7")
        ex = vm.step()
        assert ex.port == 0x501 and ex.rax & 0xFFFF == 0x55A7  # a byte read merges into AL
    finally:
        vm.close()


def test_32bit_byte_and_word_writes():
    vm = Vm(32)
    try:
        vm.load(f"mov al, 0x9c; mov byte ptr [{MMIO + 3}], al; mov word ptr [{MMIO + 6}], 0x4321;"
                "mov dx, 0x501; out dx, al")
        a = vm.step()
        b = vm.step()
        assert [(x.phys_addr, x.mmio_len, x.data) for x in (a, b)] == [(MMIO + 3, 1, b"\x9c"), (MMIO + 6, 2, b"\x21\x43")]
        assert vm.step().port == 0x501
    finally:
        vm.close()
