"""KVM_CAP_SYNC_REGS: the exit log reads RIP/RCX from kvm_run->s.regs instead of a KVM_GET_REGS per exit,
where the kernel has it; `use_sync_regs=False` forces the fallback. Both paths must log the same exits."""
from __future__ import annotations

import pytest

from kvm_harness import Guest
from vmio_edu import Machine
from vmio_edu.kvm import libc
from vmio_edu.kvm import state as S
from vmio_edu.kvm import uapi as U
from vmio_edu.linux.include.uapi.linux import kvm as K

pytestmark = [pytest.mark.kvm, pytest.mark.usefixtures("need_kvm")]


def _has_sync(kvm) -> bool:
    return bool(S.features(kvm).sync_regs & U.KVM_SYNC_X86_REGS)


def test_peek_equals_kvm_get_regs_at_every_exit():
    g = Guest(16)
    try:
        if not _has_sync(g.kvm):
            pytest.skip("this kernel has no KVM_CAP_SYNC_REGS for x86 registers")
        g.load("mov cx, 40\nmov si, 0x2000\nmov dx, 0x1f0\nrep outsw\nmov ax, 7\nout 0x80, al\n"
               "in ax, dx\nmov dx, 0x501\nout dx, al")
        n = 0
        while True:
            ex = g.step()  # (takes KVM_GET_REGS for its own record)
            assert g.vcpu.peek_rip_rcx() == (ex.rip, ex.rcx)
            assert g.run.kvm_valid_regs == U.KVM_SYNC_X86_REGS
            n += 1
            if ex.direction == K.KVM_EXIT_IO_IN:
                g.answer_in(ex, b"\1\2")
            if ex.port == 0x501:
                break
        assert n == 43
        # registers set by userspace: s.regs is stale until the next exit, so no peek
        g.vcpu.ioctl(K.KVM_SET_REGS, g.regs())
        assert g.vcpu.peek_rip_rcx() is None
    finally:
        g.close()


def test_the_fallback_never_asks_the_kernel_to_sync():
    g = Guest(16)
    try:
        g.vcpu.use_sync_regs = False
        g.load("mov dx, 0x501\nout dx, al")
        ex = g.step()
        assert ex.port == 0x501
        assert g.run.kvm_valid_regs == 0 and g.vcpu.peek_rip_rcx() is None
    finally:
        g.close()


def _run(sync: bool, counts: dict | None = None, monkeypatch=None):
    with Machine(engine="kvm", op="both", lba=2, sectors=2) as m:
        m.cpu.kvm_fd.use_sync_regs = sync
        if counts is not None:
            real = libc.ioctl

            def counting(fd, request, arg=0):
                counts[request] = counts.get(request, 0) + 1
                return real(fd, request, arg)
            monkeypatch.setattr(libc, "ioctl", counting)
        m.run()
        if counts is not None:
            monkeypatch.setattr(libc, "ioctl", real)
        return [x.to_json() for x in m.exits], m.guest_result()


def test_both_paths_log_the_same_exits_and_only_the_fallback_gets_regs(monkeypatch):
    with Machine(engine="kvm") as m:
        if not _has_sync(m.state.kvm_state.fd):
            pytest.skip("this kernel has no KVM_CAP_SYNC_REGS for x86 registers")
    with_sync, without = {}, {}
    a, ra = _run(True, with_sync, monkeypatch)
    b, rb = _run(False, without, monkeypatch)
    assert a == b and ra == rb and ra.get("error", 0) == 0
    assert all("rip" in x and "rcx" in x for x in a)
    n = len(a)
    assert without.get(K.KVM_GET_REGS, 0) >= n - 1  # one per exit (the final HLT's too)
    assert with_sync.get(K.KVM_GET_REGS, 0) <= 1  # only the final HLT record asks
