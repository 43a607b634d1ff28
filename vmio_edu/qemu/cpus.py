"""cpus.c (QEMU v1.6.1): the vCPU thread and the big QEMU lock (BQL).

Device emulation runs under the BQL. The vCPU thread drops it around KVM_RUN: that is the moment other
threads (the main loop) may take it and run, so vmio-edu's scheduler hands over exactly there.
"""
from __future__ import annotations

from ..trace.tracepoint import current_context, emit, tracepoint
from .kvm_all import CPUState, kvm_cpu_exec
from .state import qemu_state


def qemu_mutex_lock_iothread() -> None:
    s = qemu_state()
    s.bql_owner = s.sched.current().name


def qemu_mutex_unlock_iothread() -> None:
    """Release the BQL. On the vCPU thread this is the scheduling point before KVM_RUN."""
    s = qemu_state()
    s.bql_owner = None
    me = s.sched.current()
    if me.is_vcpu:
        s.sched.tick()


@tracepoint("qemu-cpu", args=("arg=cpu",))
def qemu_kvm_cpu_thread_fn(cpu: CPUState) -> None:
    """The vCPU thread: take the BQL, then run `kvm_cpu_exec` until the machine shuts down."""
    qemu_mutex_lock_iothread()
    s = qemu_state()
    while not s.shutdown_requested:
        kvm_cpu_exec(cpu)


@tracepoint("qemu-cpu", args=("state",))
def vm_stop(state: str, why: str = "") -> None:
    """Pause the VM (e.g. RUN_STATE_IO_ERROR when werror=enospc meets a full disk).

    Real QEMU stops every vCPU and sets the run state. The model records the state and the reason and
    asks the vCPU to park at its next KVM_RUN, so `Machine.run()` returns and can explain why.
    """
    ctx = current_context()
    s = getattr(ctx, "machine", None)
    if s is not None:  # (a device unit test may call this with no machine around)
        s.extra["runstate"] = state
        s.extra["vm_stop_reason"] = why
        s.sched.park_requested = True
    emit("vm_stop", "qemu-cpu", state=state, why=why)
