"""The emulated processor alone (no kernel model): VM exits and their VMCS fields, event injection at VM
entry, the interrupt window and shadows, time slices, the instruction budget, and self-modifying code."""
from __future__ import annotations

import ctypes
import mmap
import struct

import pytest
from keystone import KS_ARCH_X86, KS_MODE_16, KS_MODE_32, KS_MODE_64, Ks
from unicorn.x86_const import UC_X86_REG_IDTR

from vmio_edu.cpu import vmcs as V
from vmio_edu.cpu.x86 import X86Cpu
from vmio_edu.errors import BudgetExceeded
from vmio_edu.guest.loader import boot_state

_KS = {16: KS_MODE_16, 32: KS_MODE_32, 64: KS_MODE_64}
RCX, RDX, RSP, RIP = 1, 2, 4, 16


def asm(src: str, mode: int, at: int = 0x1000) -> bytes:
    return bytes(Ks(KS_ARCH_X86, _KS[mode]).asm(src, at)[0])


class Bare:
    """RAM + X86Cpu in the loader's state, with the VMCS filled as KVM would before the first entry."""

    def __init__(self, mode: int, src: str, **regs: int):
        self.mode = mode
        self.ram = mmap.mmap(-1, 2 << 20)
        anchor = ctypes.c_char.from_buffer(self.ram)
        addr = ctypes.addressof(anchor)
        del anchor
        code = asm(src, mode)
        self.ram[0x1000:0x1000 + len(code)] = code
        bs = boot_state(self.ram, mode, 0x1000, 0x8000)
        for k, v in regs.items():
            setattr(bs.regs, k, v)
        self.cpu = X86Cpu()
        self.cpu.map_slot(0, 0, 2 << 20, addr)
        self.cpu.set_sregs(bs.sregs)
        r = bs.regs
        self.gprs = [r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi] + [0] * 8 + [r.rip]
        v = self.cpu.vmcs
        v.GUEST_RIP, v.GUEST_RSP, v.GUEST_RFLAGS = r.rip, r.rsp, r.rflags

    def run(self) -> V.VMCS:
        self.gprs = list(self.cpu.run(self.gprs, 0))
        return self.cpu.vmcs

    def skip(self) -> None:
        """What skip_emulated_instruction does."""
        v = self.cpu.vmcs
        v.GUEST_RIP += v.VM_EXIT_INSTRUCTION_LEN
        v.GUEST_INTERRUPTIBILITY_INFO = 0


def test_io_exit_happens_before_the_instruction_with_its_vmcs_fields():
    b = Bare(64, "mov dx, 0x1f0; mov ecx, 7; rep outsw", rsi=0x2000)
    v = b.run()
    assert (v.VM_EXIT_REASON, v.EXIT_QUALIFICATION, v.VM_EXIT_INSTRUCTION_LEN) == (30, 0x01F00031, 3)
    assert v.GUEST_RIP == 0x1000 + len(asm("mov dx, 0x1f0; mov ecx, 7", 64))
    assert b.gprs[RCX] == 7 and b.gprs[6] == 0x2000  # nothing of the rep outsw happened


@pytest.mark.parametrize("src,want", [
    ("cli; sti; hlt", V.GUEST_INTR_STATE_STI),      # STI with IF=0: the HLT is in its shadow
    ("sti; nop; sti; hlt", 0),                       # STI with IF=1 already: no shadow
    ("mov ax, ss; mov ss, ax; hlt", V.GUEST_INTR_STATE_MOV_SS),
    ("cli; sti; nop; hlt", 0),
])
def test_hlt_exit_reports_the_interrupt_shadow(src, want):
    b = Bare(16, src)
    v = b.run()
    assert v.VM_EXIT_REASON == V.EXIT_REASON_HLT and v.GUEST_INTERRUPTIBILITY_INFO == want


def test_event_injection_in_real_mode_goes_through_the_ivt():
    b = Bare(16, "mov dx, 0x99; sti; hlt")
    b.ram[0x30 * 4:0x30 * 4 + 4] = struct.pack("<HH", 0x0800, 0x0100)  # handler at 0100:0800 = 0x1800
    code = asm("out dx, al", 16, 0x800)
    b.ram[0x1800:0x1800 + len(code)] = code
    v = b.run()
    assert v.VM_EXIT_REASON == V.EXIT_REASON_HLT
    b.skip()
    v.VM_ENTRY_INTR_INFO_FIELD = 0x30 | V.INTR_TYPE_EXT_INTR | V.INTR_INFO_VALID_MASK
    v = b.run()
    assert (v.VM_EXIT_REASON, v.GUEST_RIP, v.GUEST_CS_SELECTOR, v.GUEST_CS_BASE) == (30, 0x800, 0x100, 0x1000)
    assert not v.VM_ENTRY_INTR_INFO_FIELD & V.INTR_INFO_VALID_MASK
    sp = b.gprs[RSP] & 0xFFFF
    ip, cs, flags = struct.unpack_from("<HHH", b.ram, sp)
    assert (ip, cs, sp) == (0x1000 + len(asm("mov dx, 0x99; sti; hlt", 16)), 0, 0x8000 - 6)
    assert flags & 0x200 and not v.GUEST_RFLAGS & 0x200


def test_event_injection_in_long_mode_aligns_the_stack():
    b = Bare(64, "hlt", rsp=0x7FF8)
    gate = struct.pack("<HHBBHII", 0x1800, 0x08, 0, 0x8E, 0, 0, 0)
    b.ram[0xA000 + 0x40 * 16:0xA000 + 0x41 * 16] = gate
    b.ram[0x1800:0x1801] = b"\xee"  # out dx, al
    b.cpu.uc.reg_write(UC_X86_REG_IDTR, (0, 0xA000, 0xFFF, 0))
    v = b.run()
    b.skip()
    v.VM_ENTRY_INTR_INFO_FIELD = 0x40 | V.INTR_INFO_VALID_MASK
    v = b.run()
    assert (v.VM_EXIT_REASON, v.GUEST_RIP) == (30, 0x1800)
    assert b.gprs[RSP] == 0x7FF0 - 40
    assert struct.unpack_from("<5Q", b.ram, 0x7FF0 - 40) == (0x1001, 0x08, 0x2, 0x7FF8, 0x10)


def test_interrupt_window_exit_at_entry_when_already_open():
    b = Bare(16, "nop; hlt", rflags=0x202)
    v = b.cpu.vmcs
    v.CPU_BASED_VM_EXEC_CONTROL |= V.CPU_BASED_VIRTUAL_INTR_PENDING
    before = b.cpu.instructions
    v = b.run()
    assert (v.VM_EXIT_REASON, v.GUEST_RIP, b.cpu.instructions) == (V.EXIT_REASON_PENDING_INTERRUPT, 0x1000, before)


def test_a_time_slice_ends_with_an_external_interrupt_exit_and_the_budget_with_an_error():
    b = Bare(32, "l: jmp l")
    b.cpu.slice_insns = 500
    v = b.run()
    assert (v.VM_EXIT_REASON, v.GUEST_RIP) == (V.EXIT_REASON_EXTERNAL_INTERRUPT, 0x1000)
    b.cpu.budget_left = 1200
    b.run()
    b.run()
    with pytest.raises(BudgetExceeded, match=r"rip=0x1000 \(32-bit mode\), bytes eb fe: jmp 0x1000"):
        b.run()


def test_self_modifying_code_turns_a_nop_into_an_out_that_exits():
    # `target` runs once as `nop; ret` (and is remembered as an ordinary instruction); then the guest
    # overwrites the nop with `out dx, al` and calls it again: the write hook on the code page must make
    # that an I/O exit.
    target = 0x1800
    b = Bare(16, f"mov dx, 0x77; mov cx, 2; l: call {target:#x}; mov byte ptr [{target:#x}], 0xee; loop l; hlt")
    b.ram[target:target + 2] = b"\x90\xc3"  # target: nop; ret
    v = b.run()
    assert (v.VM_EXIT_REASON, v.GUEST_RIP, v.EXIT_QUALIFICATION) == (30, target, 0x00770000)
    assert b.gprs[RCX] == 1  # on the second pass


def test_kvm_writes_to_guest_code_are_seen():
    b = Bare(16, "nop; nop; hlt")
    v = b.run()
    assert v.VM_EXIT_REASON == V.EXIT_REASON_HLT
    assert b.cpu.write_phys(0x1001, b"\xee")  # out dx, al over the second nop
    v.GUEST_RIP = 0x1000
    v = b.run()
    assert (v.VM_EXIT_REASON, v.GUEST_RIP) == (30, 0x1001)


def test_get_sregs_shows_a_segment_the_guest_loaded():
    b = Bare(16, "mov ax, 0x1234; mov es, ax; hlt")
    b.run()
    s = b.cpu.get_sregs()
    assert (s.es.selector, s.es.base, s.cs.base) == (0x1234, 0x12340, 0)
