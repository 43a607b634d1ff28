"""kernel/sched/core.c (Linux v3.7): the periodic scheduler tick, as a vCPU thread in guest mode meets it.

API (stable): `scheduler_tick(vcpu)`, called by x86.c's `vcpu_enter_guest` when the VM exit was the host's
timer interrupt (EXIT_REASON_EXTERNAL_INTERRUPT), at the point where 3.7 re-enables interrupts after the
exit (`local_irq_enable()`, x86.c:5369) and the pending interrupt is taken.

Why it matters on the I/O path: a guest that spins in guest mode without exits (polling a virtqueue's used
ring with IF=0, as SeaBIOS's virtio-blk driver does) never returns to QEMU, yet QEMU's main loop and pool
workers must run for its request to complete. On a real host the timer tick (CONFIG_HZ=250 by default in
3.7's kernel/Kconfig.hz: every 4 ms) forces a VM exit; the tick finds other runnable threads and marks the
vCPU thread TIF_NEED_RESCHED; `handle_external_interrupt` returns 1, and `__vcpu_run` calls `kvm_resched`
→ cond_resched(), which lets them run before the vCPU goes back into the guest. KVM_RUN never returns.

The model's tick comes every `X86Cpu.slice_insns` guest instructions (1,000,000 by default: 4 ms at a
nominal 250 million instructions per second), counted over the vCPU's whole life, so the same guest gets
its ticks at the same instructions on every run. One tick advances the scheduler's clock by one
(`Scheduler.timer_tick`): a thread woken `latency` ticks earlier becomes due, as after a KVM_RUN re-entry.
"""
from __future__ import annotations

from ....trace.tracepoint import tracepoint


@tracepoint("host", args=())
def scheduler_tick(vcpu) -> None:
    """One host timer tick on the CPU the vCPU thread runs on: the scheduler's clock moves on, and if a
    thread is waiting for the CPU (`task_tick` → check_preempt_tick), the running vCPU thread is marked
    TIF_NEED_RESCHED (`vcpu.need_resched`)."""
    sched = vcpu.kvm.sched
    if sched is None or vcpu.model_thread is None:
        return
    if sched.timer_tick():
        vcpu.need_resched = True
