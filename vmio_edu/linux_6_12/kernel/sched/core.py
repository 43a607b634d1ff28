"""kernel/sched/core.c (Linux v6.12): the periodic scheduler tick, as a vCPU thread in guest mode meets it.

As in the 3.7 model (`vmio_edu.linux.kernel.sched.core`, whose docstring explains why the tick matters on
the I/O path): the host timer interrupt that ended the guest's time slice is taken where `vcpu_enter_guest`
re-enables interrupts after the VM exit (x86.c:11054), and the tick marks the vCPU thread
TIF_NEED_RESCHED when another thread is waiting for the CPU. 6.12 calls it `sched_tick` (3.7:
`scheduler_tick`); the rescheduling itself happens in `xfer_to_guest_mode_handle_work` (kernel/entry/kvm.c)
before the next VM entry, where 3.7 had KVM's own `kvm_resched`.
"""
from __future__ import annotations

from ....trace.tracepoint import tracepoint


@tracepoint("host", args=())
def sched_tick(vcpu) -> None:
    """One host timer tick on the vCPU thread's CPU: the scheduler's clock moves on, and if a thread is
    waiting for the CPU the running vCPU thread is marked TIF_NEED_RESCHED (`vcpu.need_resched`)."""
    sched = vcpu.kvm.sched
    if sched is None or vcpu.model_thread is None:
        return
    if sched.timer_tick():
        vcpu.need_resched = True
