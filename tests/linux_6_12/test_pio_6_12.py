"""PIO through the Linux 6.12 model, exit by exit, driven by hand on the emulated /dev/kvm of
`vmio_edu.linux_6_12` (no QEMU): the fast path for IN and OUT, `complete_userspace_io`, string I/O in the
emulator with 6.12's batching, RF, the port-0x7e quirk, the HLT fastpath, and every stage's 6.12 file:line.
"""
# Guest immediates above 9 are written in hex: keystone 0.9.2 sometimes parses a decimal immediate as hex
# depending on the process's memory layout (seen here: `mov cx, 600` assembled as 0x600 in one pytest run
# and as 600 in another), and hex reads the same either way.
from __future__ import annotations

import struct

import pytest

from vmm_harness import Vm, addr_after
from vmio_edu.linux.include.uapi.linux import kvm as K
from vmio_edu.trace.tracepoint import ThreadContext, set_context

ENGINE = "unicorn-6.12"
END = "mov dx, 0x501; out dx, al"
RF = 1 << 16


def cx(mode: int) -> str:
    return "cx" if mode == 16 else "ecx"


def di(mode: int) -> str:
    return {16: "di", 32: "edi", 64: "rdi"}[mode]


@pytest.fixture
def vm(request):
    g = Vm(getattr(request, "param", 16), engine=ENGINE)
    yield g
    g.close()


class Stages:
    """Hooks that keep (name, file:line, stack) of every trace point entered on this thread."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def enter(self, tp, args, ctx) -> None:
        self.seen.append((tp.name, str(tp.source), tp.stack))

    def leave(self, tp, result, ctx) -> None:
        pass

    def names(self) -> list[str]:
        return [n for n, _, _ in self.seen]


@pytest.fixture
def stages():
    hooks = Stages()
    set_context(ThreadContext("vcpu0", hooks=hooks))
    yield hooks
    set_context(None)


# -- plain OUT: the fast path exits with RIP on the instruction; the next KVM_RUN skips it ----------------
@pytest.mark.parametrize("vm", (16, 32, 64), indirect=True)
def test_plain_out_exits_with_rip_on_the_out_and_the_next_run_skips_it(vm):
    pre = "mov dx, 0x1f0; mov al, 0x5a;"
    out_at = addr_after(pre, vm.mode)
    vm.load(pre + "out dx, al; mov ax, 0xbeef; out dx, ax; " + END)
    ex = vm.step()
    assert (ex.reason, ex.direction, ex.size, ex.port, ex.count, ex.data) == (
        K.KVM_EXIT_IO, K.KVM_EXIT_IO_OUT, 1, 0x1F0, 1, b"\x5a")
    assert ex.rip == out_at  # Linux 3.7 would show out_at + 1
    assert vm.vcpu.vcpu.arch.complete_userspace_io.__name__ == "complete_fast_pio_out"
    ex = vm.step()  # complete_fast_pio_out moves RIP past the first OUT, then the guest runs to the next
    assert (ex.size, ex.data) == (2, struct.pack("<H", 0xBEEF))
    assert ex.rip == addr_after(pre + "out dx, al; mov ax, 0xbeef;", vm.mode)


def test_complete_fast_pio_out_leaves_rip_alone_if_userspace_moved_it(vm):
    pre = "mov dx, 0x1f0;"
    vm.load(pre + "out dx, al; mov dx, 0x300; out dx, al; " + END)
    ex = vm.step()
    assert (ex.port, ex.rip) == (0x1F0, addr_after(pre, 16))
    regs = vm.regs()
    regs.rip = addr_after(pre + "out dx, al;", 16)  # userspace jumps to `mov dx, 0x300`
    vm.vcpu.ioctl(K.KVM_SET_REGS, regs)
    ex = vm.step()
    assert (ex.port, ex.rip) == (0x300, addr_after(pre + "out dx, al; mov dx, 0x300;", 16))  # not skipped


def test_out_to_port_0x7e_skips_before_the_exit_under_the_quirk(vm, stages):
    pre = "mov al, 7;"
    vm.load(pre + "out 0x7e, al; " + END)
    ex = vm.step()
    assert (ex.port, ex.rip) == (0x7E, addr_after(pre, 16) + 2)
    assert "complete_fast_pio_out" not in stages.names()
    ex = vm.step()
    assert "complete_fast_pio_out_port_0x7e" in stages.names()
    assert ex.port == 0x501


# -- plain IN: the fast path too, RAX merged (1, 2 bytes) or zero-extended (4) on the next KVM_RUN ----------
@pytest.mark.parametrize("vm", (16, 64), indirect=True)
def test_plain_in_takes_the_fast_path_and_merges_into_rax(vm, stages):
    pre = "mov eax, 0x11223344; mov dx, 0x1f0;" if vm.mode == 16 else "mov rax, -1; mov dx, 0x1f0;"
    in_at = addr_after(pre, vm.mode)
    vm.load(pre + "in al, dx; nop; in eax, dx; " + END)
    vm.page[4096:4096 + 8] = b"\xee" * 8  # leftovers in the PIO page
    ex = vm.step()
    assert (ex.direction, ex.size, ex.count, ex.rip) == (K.KVM_EXIT_IO_IN, 1, 1, in_at)
    assert bytes(vm.page[4096:4096 + 1]) == b"\x00"  # zeroed before the exit (x86.c:8170)
    assert "kvm_fast_pio_in" in stages.names() and "x86_emulate_instruction" not in stages.names()
    vm.answer_in(ex, b"\xab")
    ex = vm.step()
    assert "complete_fast_pio_in" in stages.names()
    assert vm.regs().rax == (0x112233AB if vm.mode == 16 else 0xFFFF_FFFF_FFFF_FFAB)  # AL merged
    assert (ex.size, ex.rip) == (4, addr_after(pre + "in al, dx; nop;", vm.mode))
    vm.answer_in(ex, b"\x01\x02\x03\x04")
    ex = vm.step()
    assert vm.regs().rax == 0x04030201  # size 4 zero-extends (x86.c:9369)


def test_pic_ports_are_handled_in_the_kernel_and_skip_at_once(vm, stages):
    # ICW1..ICW4 and a mask to the master PIC, a read of the mask: no exit; the next exit is the OUT to 0x80
    vm.load("mov al, 0x11; out 0x20, al; mov al, 0x20; out 0x21, al; mov al, 4; out 0x21, al; "
            "mov al, 1; out 0x21, al; mov al, 0xfb; out 0x21, al; in al, 0x21; out 0x80, al; " + END)
    ex = vm.step()
    assert (ex.port, ex.data) == (0x80, b"\xfb")
    assert "picdev_write" in stages.names() and "pic_ioport_read" in stages.names()


# -- string I/O: the emulator, 6.12's batch rule ----------------------------------------------------------
@pytest.mark.parametrize("vm", (16, 64), indirect=True)
def test_rep_ins_batch_counts_the_room_to_the_page_end_in_bytes(vm):
    vm.load(f"cld; mov dx, 0x300; mov {cx(vm.mode)}, 0x258; mov {di(vm.mode)}, 0x3f00; rep insw; "
            f"mov {cx(vm.mode)}, 7; mov {di(vm.mode)}, 0x4ffc; rep insd; " + END)
    counts = [x.count for x in vm.run_until()[:-1]]
    # insw at 0xf00: room 256 bytes -> 256 words (past the page end); then 512-word cache limit... 344 left
    # insd at 0xffc: room 4 bytes -> 4 dwords, then 3
    assert counts == [256, 344, 4, 3]
    assert bytes(vm.ram[0x3F00:0x3F02]) != b"\x00\x00"  # the batch landed in guest memory


def test_rep_ins_from_a_page_start_uses_the_1024_byte_read_ahead(vm):
    vm.load("cld; mov dx, 0x300; mov cx, 0x258; mov di, 0x3000; rep insw; mov cx, 0x7d0; mov di, 0x5000; "
            "rep insb; " + END)
    assert [x.count for x in vm.run_until()[:-1]] == [512, 88, 1024, 976]


def test_rep_outs_exits_once_per_element_with_rf_set_until_it_completes(vm):
    pre = "cld; mov dx, 0x1f0; mov cx, 3; mov si, 0x2000;"
    vm.ram[0x2000:0x2006] = b"\x01\x02\x03\x04\x05\x06"
    at = addr_after(pre, 16)
    vm.load(pre + "rep outsw; " + END)
    exits = []
    for _ in range(3):
        ex = vm.step()
        exits.append((ex.rip, ex.rcx, ex.data, vm.regs().rflags & RF))
    assert exits == [(at, 2, b"\x01\x02", RF), (at, 1, b"\x03\x04", RF), (at, 0, b"\x05\x06", RF)]
    ex = vm.step()
    assert ex.port == 0x501 and not vm.regs().rflags & RF


# -- the stages and their 6.12 file:line -------------------------------------------------------------------
def test_a_plain_out_walks_the_6_12_stages_with_their_lines(vm, stages):
    vm.load("mov dx, 0x1f0; out dx, al; " + END)
    stages.seen.clear()
    vm.step()  # KVM_RUN, then KVM_GET_REGS
    where = {n: w for n, w, _ in stages.seen}
    order = [n for n in stages.names() if n in (
        "kvm_vcpu_ioctl", "kvm_arch_vcpu_ioctl_run", "vcpu_run", "vcpu_enter_guest", "vmx_vcpu_run",
        "vmx_exit_handlers_fastpath", "vmx_handle_exit", "__vmx_handle_exit", "handle_io", "kvm_fast_pio",
        "kvm_fast_pio_out", "emulator_pio_out", "emulator_pio_in_out", "kvm_io_bus_write")][:14]
    assert order == ["kvm_vcpu_ioctl", "kvm_arch_vcpu_ioctl_run", "vcpu_run", "vcpu_enter_guest", "vmx_vcpu_run",
                     "vmx_exit_handlers_fastpath", "vmx_handle_exit", "__vmx_handle_exit", "handle_io",
                     "kvm_fast_pio", "kvm_fast_pio_out", "emulator_pio_out", "emulator_pio_in_out",
                     "kvm_io_bus_write"]
    assert {n: where[n] for n in ("handle_io", "kvm_fast_pio", "kvm_fast_pio_out", "vmx_handle_exit",
                                  "__vmx_handle_exit", "vmx_exit_handlers_fastpath", "vcpu_enter_guest",
                                  "vcpu_run", "kvm_arch_vcpu_ioctl_run", "kvm_vcpu_ioctl")} == {
        "handle_io": "arch/x86/kvm/vmx/vmx.c:5396", "kvm_fast_pio": "arch/x86/kvm/x86.c:9384",
        "kvm_fast_pio_out": "arch/x86/kvm/x86.c:9317", "vmx_handle_exit": "arch/x86/kvm/vmx/vmx.c:6630",
        "__vmx_handle_exit": "arch/x86/kvm/vmx/vmx.c:6451",
        "vmx_exit_handlers_fastpath": "arch/x86/kvm/vmx/vmx.c:7258",
        "vcpu_enter_guest": "arch/x86/kvm/x86.c:10704", "vcpu_run": "arch/x86/kvm/x86.c:11242",
        "kvm_arch_vcpu_ioctl_run": "arch/x86/kvm/x86.c:11475", "kvm_vcpu_ioctl": "virt/kvm/kvm_main.c:4428"}
    assert {s for _, _, s in stages.seen} == {"10.2"}  # no Linux 3.7 stage on the way
    assert "skip_emulated_instruction" not in stages.names()  # RIP is not moved before the exit
    stages.seen.clear()
    vm.step()
    after = stages.names()
    assert after[after.index("kvm_arch_vcpu_ioctl_run") + 1:][:4] == [
        "complete_fast_pio_out", "kvm_skip_emulated_instruction", "vmx_skip_emulated_instruction",
        "skip_emulated_instruction"]
    assert where.get("x86_emulate_instruction") is None  # the emulator never ran for the plain OUT


def test_string_io_goes_through_the_emulator_with_its_6_12_lines(vm, stages):
    vm.load("cld; mov dx, 0x1f0; mov cx, 2; mov di, 0x3000; rep insw; " + END)
    ex = vm.step()
    assert (ex.direction, ex.count) == (K.KVM_EXIT_IO_IN, 2)
    names = stages.names()
    i = names.index("handle_io")
    assert names[i + 1:i + 4] == ["kvm_emulate_instruction", "x86_emulate_instruction",
                                  "x86_decode_emulated_instruction"]
    assert "pio_in_emulated" in names and "emulator_pio_in_emulated" in names
    where = {n: w for n, w, _ in stages.seen}
    assert where["pio_in_emulated"] == "arch/x86/kvm/emulate.c:1425"
    assert where["x86_emulate_insn"] == "arch/x86/kvm/emulate.c:5104"
    assert where["em_in"] == "arch/x86/kvm/emulate.c:3560"
    assert where["emulator_pio_in_out"] == "arch/x86/kvm/x86.c:8132"
    stages.seen.clear()
    vm.answer_in(ex, b"\x11\x22\x33\x44")
    vm.step()
    names = stages.names()
    assert names[names.index("kvm_arch_vcpu_ioctl_run") + 1:][:3] == [
        "complete_emulated_pio", "complete_emulated_io", "kvm_emulate_instruction"]
    assert bytes(vm.ram[0x3000:0x3004]) == b"\x11\x22\x33\x44"


def test_hlt_is_finished_in_the_exit_fastpath(vm, stages):
    vm.load("hlt")
    ex = vm.step()  # nothing can wake the vCPU: without a scheduler the model returns KVM_EXIT_HLT
    assert ex.reason == K.KVM_EXIT_HLT
    names = stages.names()
    i = names.index("vmx_exit_handlers_fastpath")
    assert names[i + 1:i + 3] == ["handle_fastpath_hlt", "kvm_emulate_halt"]
    assert "__vmx_handle_exit" in names and names.count("kvm_emulate_halt") == 1  # not the table's entry too


def test_kvm_run_with_immediate_exit_only_completes_the_pending_out(vm, stages):
    """kvm_run->immediate_exit (byte 1 of struct kvm_run in 6.12): KVM_RUN finishes the OUT userspace has
    answered (complete_fast_pio_out moves RIP past it) and returns -EINTR without entering the guest."""
    import errno
    pre = "mov dx, 0x1f0;"
    vm.load(pre + "out dx, al; " + END)
    ex = vm.step()
    assert ex.rip == addr_after(pre, 16)
    vm.run.padding1[0] = 1  # immediate_exit
    stages.seen.clear()
    assert vm.vcpu.ioctl(K.KVM_RUN, 0) == -errno.EINTR
    assert "complete_fast_pio_out" in stages.names() and "vmx_vcpu_run" not in stages.names()
    assert vm.regs().rip == addr_after(pre + "out dx, al;", 16)
    vm.run.padding1[0] = 0
    assert vm.step().port == 0x501
