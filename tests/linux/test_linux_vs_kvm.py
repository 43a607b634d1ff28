"""The same programs on the emulated engine and on the real /dev/kvm: the exit streams userspace sees must
be equal (reason, direction, size, port, count, data, RIP, RCX; MMIO address, length, direction, data).

Skipped where /dev/kvm cannot be opened. The one difference of Linux 3.7 from this machine's kernel on
this path (a `rep ins` batch at a page end, semantics.md (c)) is asserted as a named difference.
"""
from __future__ import annotations

import struct

import pytest

from vmm_harness import HANDLER_AT, Vm, assemble
from test_linux_pio import PIC_INIT
from vmio_edu.linux.include.uapi.linux import kvm as K

pytestmark = pytest.mark.kvm


@pytest.fixture(scope="module")
def host_facts():
    import kvm_streams
    from kvm_policy import require_kvm
    require_kvm()
    return kvm_streams.probe_host_facts("kvm")


def stream(engine: str, mode: int, src: str, ram: dict | None = None, handler: str | None = None,
           irq_after_port: int | None = None, mmio_answers: bool = False) -> list[tuple]:
    vm = Vm(mode, engine=engine)
    try:
        for addr, data in (ram or {}).items():
            vm.ram[addr:addr + len(data)] = data
        vm.load(src)
        if handler:  # IRQ 14 handler at HANDLER_AT through the IVT (16) or an IDT (64)
            code = assemble(handler, mode, HANDLER_AT)
            vm.ram[HANDLER_AT:HANDLER_AT + len(code)] = code
            if mode == 16:
                vm.ram[0x2E * 4:0x2E * 4 + 4] = struct.pack("<HH", HANDLER_AT, 0)
            else:
                vm.ram[0xA000 + 0x2E * 16:0xA000 + 0x2F * 16] = struct.pack("<HHBBHII", HANDLER_AT, 8, 0, 0x8E, 0, 0, 0)
                s = vm.sregs()
                s.idt.base, s.idt.limit = 0xA000, 0xFFF
                vm.vcpu.ioctl(K.KVM_SET_SREGS, s)
        out = []
        for i in range(5000):
            ex = vm.step()
            out.append(ex.key())
            if ex.reason == K.KVM_EXIT_IO and ex.direction == K.KVM_EXIT_IO_OUT and ex.port == 0x501:
                return out
            if ex.reason == K.KVM_EXIT_IO and ex.direction == K.KVM_EXIT_IO_IN:
                vm.answer_in(ex, bytes((i * 13 + j) & 0xFF for j in range(ex.count * ex.size)))
            elif ex.reason == K.KVM_EXIT_MMIO and not ex.is_write:
                vm.answer_mmio(struct.pack("<Q", 0x1122334455667788 + i))
            elif ex.reason != K.KVM_EXIT_IO and ex.reason != K.KVM_EXIT_MMIO:
                return out
            if irq_after_port is not None and ex.reason == K.KVM_EXIT_IO and ex.port == irq_after_port:
                vm.irq_line(14, 1)
        raise AssertionError("no end")
    finally:
        vm.close()


def same(mode: int, src: str, **kw) -> list[tuple]:
    emu = stream("unicorn", mode, src, **kw)
    real = stream("kvm", mode, src, **kw)
    assert emu == real
    return emu


def cx(mode):
    return "cx" if mode == 16 else "ecx"


def si(mode):
    return "si" if mode == 16 else "esi" if mode == 32 else "rsi"


def di(mode):
    return "di" if mode == 16 else "edi" if mode == 32 else "rdi"


END = "mov dx, 0x501; out dx, al"


@pytest.mark.parametrize("mode", (16, 32, 64))
def test_pio_forms_agree(mode):
    src = (f"cld; mov dx, 0x1f0; mov eax, 0x11223344; out dx, al; out dx, ax; out dx, eax; out 0x80, al;"
           f"in al, dx; in ax, 0x60; in eax, dx; mov {cx(mode)}, 40; mov {si(mode)}, 0x2000; rep outsw;"
           f"mov {cx(mode)}, 3; rep outsb; mov {cx(mode)}, 2; rep outsd; xor {cx(mode)}, {cx(mode)}; rep outsw;"
           f"mov {cx(mode)}, 600; mov {di(mode)}, 0x3000; rep insw; mov {cx(mode)}, 7; rep insd;"
           f"mov {cx(mode)}, 2000; mov {di(mode)}, 0x5000; rep insb;"
           f"std; mov {cx(mode)}, 600; mov {di(mode)}, 0x7f00; rep insw; cld; " + END)
    exits = same(mode, src, ram={0x2000: bytes(range(256))})
    assert len(exits) == 4 + 3 + 40 + 3 + 2 + 2 + 1 + 2 + 2 + 1


@pytest.mark.parametrize("mode", (16, 64))
def test_pic_and_an_injected_irq_agree(mode):
    # The IRQ comes while IF=1: both inject it at the next VM entry. (With IF=0 the exits can come in a
    # different order: VMX exits for the interrupt window right after the STI shadow, while this host's
    # kvm_pvm delivered only at the next exit; userspace cannot rely on that timing.)
    src = PIC_INIT + "sti; nop; mov dx, 0x500; out dx, al; nop; mov dx, 0x504; out dx, al; " + END
    handler = ("mov dx, 0x502; out dx, al; mov al, 0x20; out 0xa0, al; out 0x20, al; "
               + ("iret" if mode == 16 else "iretq"))
    exits = same(mode, src, handler=handler, irq_after_port=0x500)
    assert [e[3] for e in exits] == [0x500, 0x502, 0x504, 0x501]


def test_mmio_agrees_in_long_mode():
    src = ("mov rbx, 0x400000; mov eax, dword ptr [rbx + 4]; mov dword ptr [rbx + 8], eax;"
           "add dword ptr [rbx + 12], 5; mov byte ptr [rbx + 1], 0x7f; " + END)
    exits = same(64, src)
    assert [e[0] for e in exits[:5]] == [K.KVM_EXIT_MMIO] * 5


@pytest.mark.parametrize("mode", (16, 64))
def test_rep_insw_across_a_page_end_is_the_named_difference(mode, host_facts):
    src = f"cld; mov dx, 0x1f0; mov {cx(mode)}, 256; mov {di(mode)}, 0x4f00; rep insw; " + END
    emu = [e[4] for e in stream("unicorn", mode, src)[:-1]]
    real = [e[4] for e in stream("kvm", mode, src)[:-1]]
    assert emu == [128, 128]   # Linux 3.7: the batch stops at the page end
    # the host's own rule, detected (tests/kvm_streams.py): 3.7-like, or 6.x's room in bytes used as elements
    assert real == {"page-end": [128, 128], "bytes-as-elements": [256]}[host_facts["rep_ins_page_batch"]]
