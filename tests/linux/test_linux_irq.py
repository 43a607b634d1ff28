"""Interrupts through the model: KVM_IRQ_LINE → kvm_set_irq → the in-kernel PIC → inject_pending_event →
vmx_inject_irq → delivery by the CPU at VM entry, in 16-bit (IVT) and 64-bit (IDT) mode; HLT sleeping in
the kernel (kvm_vcpu_block) and being woken; the interrupt window and the STI shadow.
"""
from __future__ import annotations

import struct

import pytest

from vmm_harness import Vm, addr_after, assemble
from test_linux_pio import PIC_INIT
from vmio_edu.cpu import vmcs as V
from vmio_edu.linux.include.uapi.linux import kvm as K
from vmio_edu.trace.sched import Scheduler

HANDLER = 0x1800
IRQ14_VECTOR = 0x2E  # slave ICW2 0x28 + IR6
EOI = "mov al, 0x20; out 0xa0, al; out 0x20, al;"


def install_handler(vm: Vm, body: str, iret: str | None = None) -> None:
    """Put an IRQ 14 handler at HANDLER and point the IVT (16-bit) or a new IDT (64-bit) at it."""
    iret = iret or ("iret" if vm.mode == 16 else "iretq")
    code = assemble(body + iret, vm.mode, HANDLER)
    vm.ram[HANDLER:HANDLER + len(code)] = code
    if vm.mode == 16:
        vm.ram[IRQ14_VECTOR * 4:IRQ14_VECTOR * 4 + 4] = struct.pack("<HH", HANDLER, 0)
    else:
        idt = 0xA000
        gate = struct.pack("<HHBBHII", HANDLER & 0xFFFF, 0x08, 0, 0x8E, (HANDLER >> 16) & 0xFFFF, HANDLER >> 32, 0)
        vm.ram[idt + IRQ14_VECTOR * 16:idt + IRQ14_VECTOR * 16 + 16] = gate
        s = vm.sregs()
        s.idt.base, s.idt.limit = idt, 256 * 16 - 1
        vm.vcpu.ioctl(K.KVM_SET_SREGS, s)


def stack_words(vm: Vm, n: int) -> list[int]:
    r = vm.regs()
    width = 2 if vm.mode == 16 else 8
    raw = bytes(vm.ram[r.rsp:r.rsp + n * width])
    return list(struct.unpack(f"<{n}{'H' if width == 2 else 'Q'}", raw))


@pytest.fixture
def vm(request):
    g = Vm(getattr(request, "param", 16))
    yield g
    g.close()


@pytest.mark.parametrize("vm", (16, 64), indirect=True)
def test_irq_wakes_sti_hlt_and_is_delivered_through_the_guest_table(vm):
    main = PIC_INIT + "sti; hlt;"
    after_hlt = addr_after(main, vm.mode)
    vm.load(main + "mov dx, 0x503; out dx, al; cli; hlt")
    install_handler(vm, "mov dx, 0x502; out dx, al;" + EOI)
    ex = vm.step()  # no scheduler: the HLT that nothing can wake yet comes back as KVM_EXIT_HLT
    assert ex.reason == K.KVM_EXIT_HLT and ex.rip == after_hlt
    assert "halted" in vm.vcpu.exit_detail
    assert vm.irq_line(14, 1) == 1  # delivered to the PIC (the reset IOAPIC ignores it)
    ex = vm.step()
    assert ex.reason == K.KVM_EXIT_IO and ex.port == 0x502
    assert HANDLER <= ex.rip < HANDLER + 0x40
    assert vm.vcpu.vcpu.stat["irq_injections"] == 1
    if vm.mode == 16:
        ip, cs, flags = stack_words(vm, 3)
        assert (ip, cs) == (after_hlt, 0) and flags & 0x200  # the IF the guest had, pushed
        assert not vm.regs().rflags & 0x200  # cleared for the handler
    else:
        rip, cs, rflags, rsp, ss = stack_words(vm, 5)
        assert (rip, cs, rsp, ss) == (after_hlt, 0x08, 0x8000, 0x10) and rflags & 0x200
        assert vm.regs().rsp == 0x8000 - 40
    vm.irq_line(14, 0)
    ex = vm.step()
    assert ex.port == 0x503 and ex.rip == addr_after(main + "mov dx, 0x503; out dx, al", vm.mode)


@pytest.mark.parametrize("vm", (16, 64), indirect=True)
def test_if_clear_requests_an_interrupt_window_that_opens_after_the_sti_shadow(vm):
    main = PIC_INIT + "cli; mov dx, 0x501; out dx, al; nop; sti; nop;"
    ret_to = addr_after(main, vm.mode)
    vm.load(main + "mov dx, 0x502; out dx, al; cli; hlt")
    install_handler(vm, "mov dx, 0x503; out dx, al;" + EOI)
    ex = vm.step()
    assert ex.port == 0x501
    vm.irq_line(14, 1)
    ex = vm.step()
    assert ex.port == 0x503  # the handler ran before `mov dx, 0x502`
    assert stack_words(vm, 1)[0] == ret_to  # taken after the instruction that followed STI
    assert vm.vcpu.vcpu.stat["irq_window_exits"] == 1
    assert not vm.vmcs.CPU_BASED_VM_EXEC_CONTROL & V.CPU_BASED_VIRTUAL_INTR_PENDING


@pytest.mark.parametrize("vm", (16, 64), indirect=True)
def test_sti_hlt_with_the_irq_already_pending(vm):
    main = PIC_INIT + "cli; mov dx, 0x501; out dx, al; sti; hlt;"
    after_hlt = addr_after(main, vm.mode)
    vm.load(main + "cli; hlt")
    install_handler(vm, "mov dx, 0x503; out dx, al;" + EOI)
    vm.step()
    vm.irq_line(14, 1)
    ex = vm.step()  # window requested, but the HLT sits in the STI shadow: it exits, is skipped, wakes
    assert ex.port == 0x503 and stack_words(vm, 1)[0] == after_hlt
    # 3.7 detail: after the wake-up no KVM_REQ_EVENT is pending, so the vector is injected only after the
    # still-armed interrupt-window exit, right at the next entry (IF=1, shadow ended by the skip).
    assert vm.vcpu.vcpu.stat["halt_exits"] == 1 and vm.vcpu.vcpu.stat["irq_window_exits"] == 1


def test_isr_blocks_a_second_irq_until_eoi():
    vm = Vm(16)
    try:
        main = PIC_INIT + "sti; hlt; mov dx, 0x504; out dx, al; sti; hlt; mov dx, 0x505; out dx, al; cli; hlt"
        vm.load(main)
        install_handler(vm, "mov dx, 0x502; out dx, al;")  # no EOI: ISR bit 6 of the slave stays set
        assert vm.step().reason == K.KVM_EXIT_HLT
        vm.irq_line(14, 1)
        assert vm.step().port == 0x502
        vm.irq_line(14, 0)
        assert vm.step().port == 0x504
        vm.irq_line(14, 1)  # a new edge: IRR set, but IR6 is still in service
        ex = vm.step()
        assert ex.reason == K.KVM_EXIT_HLT  # not delivered
        pic = vm.vm.kvm.arch.vpic.pics[1]
        assert pic.isr == 0x40 and pic.irr == 0x40
    finally:
        vm.close()


def test_irq_line_status_values_follow_linux_3_7():
    vm = Vm(16)
    try:
        vm.load(PIC_INIT + "mov dx, 0x501; out dx, al")
        vm.step()
        assert vm.irq_line(14, 1) == 1    # PIC: newly raised; IOAPIC (masked after reset): ignored
        assert vm.irq_line(14, 0) == 2    # both chips take a falling line
        assert vm.irq_line(14, 1) == 0    # still in IRR, not yet acknowledged: coalesced
        assert vm.irq_line(3, 1) == -1    # master IR3 is masked (IMR 0xfb) and so is the IOAPIC pin
        assert vm.irq_line(14, 0, status=False) == 0  # KVM_IRQ_LINE reports nothing
    finally:
        vm.close()


def test_irq_line_without_irqchip_is_enxio():
    vm = Vm(16, irqchip=False)
    try:
        with pytest.raises(OSError) as e:
            vm.irq_line(14, 1)
        assert e.value.errno == 6  # ENXIO
        vm.load("hlt")
        assert vm.step().reason == K.KVM_EXIT_HLT  # without an in-kernel irqchip HLT always exits
        assert vm.vcpu.exit_detail == ""
    finally:
        vm.close()


# -- with the scheduler: the halted vCPU sleeps in kvm_vcpu_block and KVM_IRQ_LINE wakes it ---------------------
def _run_with_scheduler(main: str, mode: int = 16):
    sched = Scheduler(latency=5)
    vm = Vm(mode, sched=sched)
    vm.load(main)
    install_handler(vm, "mov dx, 0x502; out dx, al;" + EOI)
    log: list = []
    threads = {}

    def device():
        sched.block("waiting for the guest")
        log.append(("irq", vm.vcpu.vcpu.blocked))
        log.append(("status", vm.irq_line(14, 1)))

    def vcpu():
        while True:
            sched.tick()
            ex = vm.step()
            log.append((K.EXIT_NAMES[ex.reason], ex.port if ex.reason == K.KVM_EXIT_IO else None))
            if ex.reason == K.KVM_EXIT_IO and ex.port == 0x501:
                sched.wake(threads["device"])
            if ex.reason == K.KVM_EXIT_IO and ex.port == 0x503:
                return

    threads["device"] = sched.spawn("device", device)
    threads["vcpu"] = sched.spawn("vcpu0", vcpu, vcpu=True)
    return sched, vm, log, threads


@pytest.mark.parametrize("mode", (16, 64))
def test_halted_vcpu_blocks_in_the_scheduler_until_the_irq(mode):
    sched, vm, log, threads = _run_with_scheduler(
        PIC_INIT + "mov dx, 0x501; out dx, al; sti; hlt; mov dx, 0x503; out dx, al; cli; hlt", mode)
    try:
        parked = sched.resume()
        assert parked.reason == "idle", parked
        # the vCPU was asleep in the kernel when the IRQ came, and the IRQ woke it up
        assert log == [("IO", 0x501), ("irq", True), ("status", 1), ("IO", 0x502), ("IO", 0x503)]
        assert vm.vcpu.vcpu.stat["halt_wakeup"] == 1
    finally:
        sched.close()
        vm.close()


def test_cli_hlt_stays_blocked_and_the_machine_goes_idle():
    sched, vm, log, threads = _run_with_scheduler(PIC_INIT + "mov dx, 0x501; out dx, al; cli; hlt")
    try:
        parked = sched.resume()
        assert parked.reason == "idle"
        assert log == [("IO", 0x501), ("irq", True), ("status", 1)]
        t = threads["vcpu"]
        assert (t.state, t.why) == ("blocked", "halted")  # woken by the kick, re-checked, asleep again
        ms = K.kvm_mp_state()
        vm.vcpu.ioctl(K.KVM_GET_MP_STATE, ms)
        assert ms.mp_state == K.KVM_MP_STATE_HALTED
    finally:
        sched.close()
        vm.close()
