"""The in-kernel irqchip on the real /dev/kvm: PIC ports stay in the kernel, KVM_IRQ_LINE interrupts a
halted guest, and the engine's watchdog notices halts and spins that never exit."""
from __future__ import annotations

import threading
import time
from errno import EINTR

import pytest

from kvm_harness import Guest
from vmio_edu.linux.include.uapi.linux import kvm as K
from vmio_edu.trace.sched import Scheduler

pytestmark = pytest.mark.kvm

# 8259 init as a BIOS does: master vectors 0x20-0x27, slave 0x28-0x2f, slave on master IRQ2, 8086 mode.
# Then unmask only IRQ2 (cascade) on the master and IRQ14 (slave pin 6) on the slave.
PIC_SETUP = """
    mov al, 0x11
    out 0x20, al
    out 0xa0, al
    mov al, 0x20
    out 0x21, al
    mov al, 0x28
    out 0xa1, al
    mov al, 0x04
    out 0x21, al
    mov al, 0x02
    out 0xa1, al
    mov al, 0x01
    out 0x21, al
    out 0xa1, al
    mov al, 0xfb
    out 0x21, al
    mov al, 0xbf
    out 0xa1, al
"""

# IRQ14 arrives as vector 0x2e: the handler reports on port 0x500, EOIs slave and master, returns.
# After the HLT the program reports on 0x501.
IRQ_PROGRAM = PIC_SETUP + """
    mov word ptr [0xb8], handler
    mov word ptr [0xba], 0
    sti
    hlt
    mov dx, 0x501
    mov al, 0x01
    out dx, al
    cli
    hlt
handler:
    mov dx, 0x500
    mov al, 0x2e
    out dx, al
    mov al, 0x20
    out 0xa0, al
    out 0x20, al
    iret
"""


def test_pic_ports_never_reach_userspace():
    g = Guest(16)
    try:
        g.load(PIC_SETUP + """
            in al, 0x21
            mov dx, 0x500
            out dx, al
            in al, 0xa1
            out dx, al
            mov al, 0x0b
            out 0x20, al
            in al, 0x20
            mov dx, 0x501
            out dx, al
        """)
        exits = g.run_until(0x501)
        # Twenty-odd PIC accesses, and userspace saw only our own three OUTs.
        assert [(e.port, e.data) for e in exits] == [(0x500, b"\xfb"), (0x500, b"\xbf"), (0x501, b"\x00")]
    finally:
        g.close()


def test_cli_hlt_is_reported_as_halted_without_a_scheduler():
    g = Guest(16)
    try:
        g.load("cli; hlt")
        assert g.vcpu.ioctl(K.KVM_RUN, 0) == -EINTR
        assert g.run.exit_reason == K.KVM_EXIT_INTR  # the watchdog's kick, returned: nothing to block in
        assert g.vcpu.halted is True
        assert g.vcpu.mp_state() == K.KVM_MP_STATE_HALTED
        assert g.vcpu.halts == 1 and g.vcpu.spin_kicks == 0
        assert g.vcpu.last_run_entries == 1 and g.vcpu.last_run_ns > 0
    finally:
        g.close()


def test_irq_line_wakes_sti_hlt_and_the_handler_runs():
    g = Guest(16)
    try:
        g.load(IRQ_PROGRAM)
        assert g.vcpu.ioctl(K.KVM_RUN, 0) == -EINTR
        assert g.run.exit_reason == K.KVM_EXIT_INTR and g.vcpu.halted
        g.irq_line(14, 1)
        ex = g.step()
        assert (ex.reason, ex.port, ex.data) == (K.KVM_EXIT_IO, 0x500, b"\x2e")  # the handler ran
        assert not g.vcpu.halted
        g.irq_line(14, 0)
        ex = g.step()
        assert (ex.port, ex.data) == (0x501, b"\x01")  # iret went back to after the HLT
        assert g.vcpu.ioctl(K.KVM_RUN, 0) == -EINTR and g.run.exit_reason == K.KVM_EXIT_INTR  # cli; hlt
        assert g.vcpu.halted
    finally:
        g.close()


def test_irq_line_status_reports_delivery():
    g = Guest(16)
    try:
        g.load(IRQ_PROGRAM)
        assert g.vcpu.ioctl(K.KVM_RUN, 0) == -EINTR and g.vcpu.halted
        lvl = K.kvm_irq_level(14, 1)
        g.vm.ioctl(K.KVM_IRQ_LINE_STATUS, lvl)
        assert lvl.irq >= 1  # `status` overlays `irq`: delivered to at least one chip
        assert g.step().port == 0x500
        g.vm.ioctl(K.KVM_IRQ_LINE_STATUS, K.kvm_irq_level(14, 0))
    finally:
        g.close()


class FakeSched:
    """Just enough of the scheduler: block() plays the main loop raising IRQ 14 while the vCPU sleeps."""

    def __init__(self):
        self.me = object()
        self.blocked: list[str] = []
        self.woken: list[object] = []
        self.guest: Guest | None = None
        self.park_requested = False

    def current(self):
        return self.me

    def block(self, why):
        self.blocked.append(why)
        assert self.guest.vcpu.halted
        self.guest.irq_line(14, 1)  # from "another thread": must wake us through wake()

    def wake(self, t):
        self.woken.append(t)


def test_halted_vcpu_blocks_in_the_scheduler_and_irq_line_wakes_it():
    fake = FakeSched()
    g = Guest(16, sched=fake)
    fake.guest = g
    try:
        g.load(IRQ_PROGRAM)
        ex = g.step()  # one KVM_RUN: PIC setup, sti; hlt, halt noticed, blocked, woken, handler's OUT
        assert (ex.reason, ex.port) == (K.KVM_EXIT_IO, 0x500)
        assert fake.blocked == ["halted"] and fake.woken == [fake.me]
        assert g.vcpu.last_run_entries == 2 and g.vcpu.halts == 1  # the halted entry, then the wake
        g.irq_line(14, 0)
        assert g.step().port == 0x501
    finally:
        g.close()


def test_real_scheduler_goes_idle_on_halt_and_irq_line_resumes_the_vcpu():
    sched = Scheduler()
    events = []
    sched.attach(listener=lambda name, layer, fields, ctx: events.append((name, layer, ctx.name, fields)))
    g = Guest(16, sched=sched)
    ports = []

    def vcpu_thread():
        while True:
            sched.tick()
            ex = g.step()
            ports.append(ex.port)
            if ex.port == 0x500:
                g.irq_line(14, 0)  # the device's acknowledge
            if ex.port == 0x501:
                return

    try:
        g.load(IRQ_PROGRAM)
        t = sched.spawn("CPU 0/KVM", vcpu_thread, vcpu=True)
        assert sched.resume().reason == "idle"   # the guest halted: nothing left to run
        assert (t.state, t.why) == ("blocked", "halted") and g.vcpu.halted and ports == []
        g.irq_line(14, 1)                                   # wakes the vCPU model thread
        assert t.state == "runnable"
        assert sched.resume().reason == "idle"
        assert ports == [0x500, 0x501] and t.state == "done"
        runs = [f for name, layer, who, f in events if name == "KVM_RUN"]
        assert all(layer == "kvm" and who == "CPU 0/KVM" for _, layer, who, _ in events)
        assert len(runs) == 2 and runs[0]["halts"] == 1 and runs[0]["exit_reason"] == K.KVM_EXIT_IO
        assert all(r["ns"] > 0 for r in runs)
    finally:
        sched.close()
        g.close()


def test_spinning_guest_is_kicked_but_the_caller_never_sees_it():
    g = Guest(16)
    try:
        g.load("spin: cmp byte ptr [0x7000], 0; je spin; mov dx, 0x500; out dx, al")

        def release():  # another host thread ends the spin once the watchdog has kicked twice
            deadline = time.monotonic() + 20
            while g.vcpu.spin_kicks < 2 and time.monotonic() < deadline:
                time.sleep(0.001)
            g.ram[0x7000] = 1

        th = threading.Thread(target=release)
        th.start()
        ex = g.step()
        th.join()
        assert (ex.reason, ex.port) == (K.KVM_EXIT_IO, 0x500)
        assert g.vcpu.spin_kicks >= 2 and g.vcpu.halts == 0
        assert g.vcpu.last_run_entries == g.vcpu.spin_kicks + 1
    finally:
        g.close()


def test_spin_kick_limit_returns_kvm_exit_intr():
    g = Guest(16)
    try:
        g.load("spin: jmp spin")
        g.vcpu.spin_kick_limit = 3
        assert g.vcpu.ioctl(K.KVM_RUN, 0) == -EINTR
        assert g.run.exit_reason == K.KVM_EXIT_INTR and not g.vcpu.halted
        assert g.vcpu.spin_kicks == 3 and g.vcpu.last_run_entries == 3
        g.vcpu.spin_kick_limit = None
        g.vcpu.exit_on_kick = True
        assert g.vcpu.ioctl(K.KVM_RUN, 0) == -EINTR
        assert g.run.exit_reason == K.KVM_EXIT_INTR and g.vcpu.spin_kicks == 4
        assert g.regs().rip == 0x1000  # still spinning on its jmp
    finally:
        g.close()


def test_a_park_request_ends_a_spin():
    fake = FakeSched()
    fake.park_requested = True  # a Ctrl-C: the vCPU thread must get back to sched.tick()
    g = Guest(16, sched=fake)
    try:
        g.load("spin: jmp spin")
        assert g.vcpu.ioctl(K.KVM_RUN, 0) == -EINTR
        assert g.run.exit_reason == K.KVM_EXIT_INTR and g.vcpu.spin_kicks == 1 and fake.blocked == []
    finally:
        g.close()


def test_closing_a_vcpu_from_another_thread_ends_its_kvm_run():
    import os
    fds = set(os.listdir("/proc/self/fd"))
    g = Guest(16)
    g.load("spin: jmp spin")

    def closer():
        deadline = time.monotonic() + 20
        while g.vcpu.spin_kicks < 1 and time.monotonic() < deadline:
            time.sleep(0.001)
        g.vcpu.close()

    th = threading.Thread(target=closer)
    th.start()
    with pytest.raises(OSError) as e:
        g.vcpu.ioctl(K.KVM_RUN, 0)
    th.join()
    assert e.value.errno == 9  # EBADF
    g.close()
    assert set(os.listdir("/proc/self/fd")) == fds
