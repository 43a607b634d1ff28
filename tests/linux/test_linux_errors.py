"""Guest faults, runaway guests and bad ioctls end in clear errors, never a crash or a hang."""
from __future__ import annotations

import errno
import struct

import pytest

from vmm_harness import HANDLER_AT, Vm, addr_after, assemble
from vmio_edu.cpu import vmcs as V
from vmio_edu.errors import BudgetExceeded
from vmio_edu.linux.arch.x86.kvm.vmx import kvm_vmx_exit_handlers
from vmio_edu.linux.include.uapi.linux import kvm as K
from vmio_edu.trace.sched import Scheduler


@pytest.fixture
def vm(request):
    g = Vm(getattr(request, "param", 16))
    yield g
    g.close()


# -- exceptions ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("vm", (16, 32, 64), indirect=True)
def test_bad_opcode_without_a_handler_is_a_triple_fault_shutdown(vm):
    pre = "nop; nop;"
    at = addr_after(pre, vm.mode)
    vm.load(pre + "ud2; hlt")
    ex = vm.step()
    assert ex.reason == K.KVM_EXIT_SHUTDOWN and ex.exit_reason_hw == V.EXIT_REASON_TRIPLE_FAULT
    detail = vm.vcpu.exit_detail
    for part in ("#UD", f"rip={at:#x}", f"({vm.mode}-bit mode)", "0f 0b", "ud2", "#DF", "triple fault"):
        assert part in detail, (part, detail)


def test_bad_opcode_with_an_idt_handler_is_delivered_in_64_bit_mode():
    vm = Vm(64)
    try:
        pre = "nop;"
        at = addr_after(pre, 64)
        vm.load(pre + "ud2")
        code = assemble("mov dx, 0x502; out dx, al", 64, HANDLER_AT)
        vm.ram[HANDLER_AT:HANDLER_AT + len(code)] = code
        vm.ram[0xA000 + 6 * 16:0xA000 + 7 * 16] = struct.pack("<HHBBHII", HANDLER_AT, 8, 0, 0x8E, 0, 0, 0)
        s = vm.sregs()
        s.idt.base, s.idt.limit = 0xA000, 0xFFF
        vm.vcpu.ioctl(K.KVM_SET_SREGS, s)
        ex = vm.step()
        assert ex.port == 0x502
        r = vm.regs()
        assert struct.unpack_from("<Q", vm.ram, r.rsp)[0] == at  # #UD is a fault: RIP of the ud2
    finally:
        vm.close()


def test_divide_errors_are_delivered_again_and_again_through_the_ivt():
    # Unicorn keeps QEMU's double-fault bookkeeping across stops; the CPU model resets it, so the second
    # #DE is a #DE again (not a #DF).
    vm = Vm(16)
    try:
        vm.load("xor si, si; xor cx, cx; mov ax, 1; div cx; div cx; div cx; mov dx, 0x501; out dx, al")
        handler = assemble("push bp; mov bp, sp; add word ptr [bp + 2], 2; pop bp; inc si; iret", 16, HANDLER_AT)
        vm.ram[HANDLER_AT:HANDLER_AT + len(handler)] = handler
        vm.ram[0:4] = struct.pack("<HH", HANDLER_AT, 0)  # IVT[0] = #DE
        ex = vm.step()
        assert ex.port == 0x501 and ex.rsi == 3
    finally:
        vm.close()


def test_general_protection_in_32_bit_mode_pushes_the_error_code():
    vm = Vm(32)
    try:
        pre = "mov ax, 0x55;"
        at = addr_after(pre, 32)
        vm.load(pre + "mov ds, ax")
        code = assemble("mov dx, 0x502; out dx, al", 32, HANDLER_AT)
        vm.ram[HANDLER_AT:HANDLER_AT + len(code)] = code
        vm.ram[0xA000 + 13 * 8:0xA000 + 14 * 8] = struct.pack("<HHBBH", HANDLER_AT, 8, 0, 0x8E, 0)
        s = vm.sregs()
        s.idt.base, s.idt.limit = 0xA000, 0x7FF
        vm.vcpu.ioctl(K.KVM_SET_SREGS, s)
        ex = vm.step()
        assert ex.port == 0x502
        err, eip, cs = struct.unpack_from("<III", vm.ram, vm.regs().rsp)
        assert (err, eip, cs) == (0x54, at, 8)  # selector 0x55 is past the GDT limit: #GP(0x54)
    finally:
        vm.close()


def test_int_n_without_an_idt_is_a_shutdown_in_32_bit_mode():
    vm = Vm(32)
    try:
        vm.load("int 0x40")
        ex = vm.step()
        assert ex.reason == K.KVM_EXIT_SHUTDOWN
        assert "vector 0x40" in vm.vcpu.exit_detail and "triple fault" in vm.vcpu.exit_detail
    finally:
        vm.close()


def test_fetch_from_unmapped_memory_is_an_emulation_failure():
    vm = Vm(64)
    try:
        vm.load("mov rax, 0x500000; jmp rax")
        ex = vm.step()
        assert ex.reason == K.KVM_EXIT_INTERNAL_ERROR and ex.rip == 0x500000
        assert vm.run.u.internal.suberror == K.KVM_INTERNAL_ERROR_EMULATION
        assert "cannot fetch" in vm.vcpu.exit_detail and "0x500000" in vm.vcpu.exit_detail
    finally:
        vm.close()


# -- runaway guests ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("vm", (16, 64), indirect=True)
def test_an_endless_loop_hits_the_instruction_budget(vm):
    vm.vcpu.max_insns = 20000
    vm.load("nop; l: jmp l")
    with pytest.raises(BudgetExceeded) as e:
        vm.step()
    msg = str(e.value)
    assert "20000" in msg and "rip=0x1001" in msg and "eb fe" in msg and f"{vm.mode}-bit" in msg


def test_a_loop_of_in_kernel_exits_also_hits_the_budget():
    vm = Vm(16)
    try:
        vm.vcpu.max_insns = 5000
        vm.load("xor al, al; l: out 0x20, al; jmp l")  # the PIC takes every OUT: KVM_RUN never returns
        with pytest.raises(BudgetExceeded):
            vm.step()
        assert vm.vcpu.vcpu.stat["io_exits"] > 1000
    finally:
        vm.close()


def test_a_park_request_ends_kvm_run_with_eintr():
    sched = Scheduler()
    vm = Vm(16, sched=sched)
    out = {}
    try:
        vm.vcpu.cpu.slice_insns = 1000
        vm.load("l: jmp l")

        def vcpu():
            out["r"] = vm.vcpu.ioctl(K.KVM_RUN, 0)
            out["reason"] = vm.run.exit_reason
        sched.spawn("vcpu0", vcpu, vcpu=True)
        sched.park_requested = True  # what Ctrl-C does: a signal for the vCPU thread
        assert sched.resume().reason == "idle"
        assert out == {"r": -errno.EINTR, "reason": K.KVM_EXIT_INTR}
    finally:
        sched.close()
        vm.close()


# -- the exit-handler table ----------------------------------------------------------------------------------
L37_TABLE = {  # vmx.c:5664-5701
    0: "handle_exception", 1: "handle_external_interrupt", 2: "handle_triple_fault", 8: "handle_nmi_window",
    30: "handle_io", 28: "handle_cr", 29: "handle_dr", 10: "handle_cpuid", 31: "handle_rdmsr",
    32: "handle_wrmsr", 7: "handle_interrupt_window", 12: "handle_halt", 13: "handle_invd",
    14: "handle_invlpg", 15: "handle_rdpmc", 18: "handle_vmcall", 19: "handle_vmclear",
    20: "handle_vmlaunch", 21: "handle_vmptrld", 22: "handle_vmptrst", 23: "handle_vmread",
    24: "handle_vmresume", 25: "handle_vmwrite", 26: "handle_vmoff", 27: "handle_vmon",
    43: "handle_tpr_below_threshold", 44: "handle_apic_access", 54: "handle_wbinvd", 55: "handle_xsetbv",
    9: "handle_task_switch", 41: "handle_machine_check", 48: "handle_ept_violation",
    49: "handle_ept_misconfig", 40: "handle_pause", 36: "handle_invalid_op", 39: "handle_invalid_op"}


def test_the_exit_handler_table_has_every_reason_of_linux_3_7():
    assert {r: h.__name__ for r, h in kvm_vmx_exit_handlers.items()} == L37_TABLE


def test_an_unmodelled_exit_says_which_handler_it_reached(vm):
    vm.load("hlt")
    r = kvm_vmx_exit_handlers[V.EXIT_REASON_CPUID](vm.vcpu.vcpu)
    assert r == 0 and vm.run.exit_reason == K.KVM_EXIT_INTERNAL_ERROR
    assert "handle_cpuid" in vm.vcpu.exit_detail and "CPUID" in vm.vcpu.exit_detail


# -- bad ioctls ------------------------------------------------------------------------------------------------
def test_bad_ioctls_fail_with_the_kernels_errno(vm):
    def errno_of(fn, *a):
        with pytest.raises(OSError) as e:
            fn(*a)
        return e.value.errno
    region = K.kvm_userspace_memory_region
    assert errno_of(vm.vcpu.ioctl, 0xAEFF, 0) == errno.ENOTTY
    assert errno_of(vm.vm.ioctl, K.KVM_SET_USER_MEMORY_REGION, region(1, 0, 0x300001, 0x1000, vm.ram_addr)) == errno.EINVAL
    assert errno_of(vm.vm.ioctl, K.KVM_SET_USER_MEMORY_REGION, region(1, 0, 0x1000, 0x1000, vm.ram_addr)) == errno.EEXIST
    assert errno_of(vm.vm.ioctl, K.KVM_CREATE_IRQCHIP, 0) == errno.EEXIST
    assert errno_of(vm.vm.ioctl, K.KVM_CREATE_VCPU, 0) == errno.EEXIST
    assert errno_of(vm.vcpu.ioctl, K.KVM_RUN, 1) == errno.EINVAL
    assert errno_of(vm.vcpu.mmap, 4 * 4096) == errno.EINVAL
    assert errno_of(vm.vm.mmap, 4096) == errno.ENODEV
    assert vm.kvm.ioctl(K.KVM_CHECK_EXTENSION, K.KVM_CAP_SET_TSS_ADDR) == 1
    vm.vcpu.close()
    assert errno_of(vm.vcpu.ioctl, K.KVM_GET_REGS, K.kvm_regs()) == errno.EBADF


@pytest.mark.parametrize("vm", (16, 32, 64), indirect=True)
def test_sregs_round_trip(vm):
    vm.load("hlt")
    from vmio_edu.guest.loader import boot_state
    want = boot_state(vm.ram, vm.mode, 0x1000).sregs
    got = vm.sregs()
    for name in ("cs", "ds", "es", "ss", "tr"):
        a, b = getattr(got, name), getattr(want, name)
        assert (a.selector, a.base, a.limit, a.l, a.db) == (b.selector, b.base, b.limit, b.l, b.db), name
    assert (got.cr0, got.cr3, got.cr4, got.efer) == (want.cr0, want.cr3, want.cr4, want.efer)
    assert (got.gdt.base, got.gdt.limit, got.idt.base, got.idt.limit) == \
        (want.gdt.base, want.gdt.limit, want.idt.base, want.idt.limit)
    assert vm.vcpu.cpu.uc_mode == vm.mode and vm.vcpu.cpu.notes == []


def test_a_fault_after_several_exits_runs_the_instructions_before_it_once():
    # After I/O stops Unicorn's stale double-fault bookkeeping turns this #DE into a #DF; the CPU model
    # recognises that, resets it and re-raises the #DE from the faulting instruction, not from the entry.
    vm = Vm(64)
    try:
        vm.load("out 0x80, al; out 0x80, al; out 0x80, al; mov rbx, 0x9000; inc dword ptr [rbx];"
                "xor ecx, ecx; div ecx")
        code = assemble("mov dx, 0x502; out dx, al", 64, HANDLER_AT)
        vm.ram[HANDLER_AT:HANDLER_AT + len(code)] = code
        vm.ram[0xA000:0xA010] = struct.pack("<HHBBHII", HANDLER_AT, 8, 0, 0x8E, 0, 0, 0)  # vector 0: #DE
        s = vm.sregs()
        s.idt.base, s.idt.limit = 0xA000, 0xFFF
        vm.vcpu.ioctl(K.KVM_SET_SREGS, s)
        ports = [vm.step().port for _ in range(4)]
        assert ports == [0x80, 0x80, 0x80, 0x502]
        assert struct.unpack_from("<I", vm.ram, 0x9000)[0] == 1
    finally:
        vm.close()
