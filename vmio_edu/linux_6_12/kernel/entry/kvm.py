"""kernel/entry/kvm.c (Linux v6.12): the work a vCPU thread does between VM entries, with interrupts on.

`vcpu_run` (arch/x86/kvm/x86.c) calls `xfer_to_guest_mode_handle_work` whenever the thread has work
pending: a signal ends KVM_RUN with KVM_EXIT_INTR and -EINTR (`kvm_handle_signal_exit`), and
TIF_NEED_RESCHED (set by the host's timer tick, `sched_tick`) lets other threads run (`schedule()`) before
the vCPU re-enters the guest, without KVM_RUN returning. (3.7 did both in `__vcpu_run` itself.)
"""
from __future__ import annotations

import errno

from vmio_edu.linux.include.uapi.linux import kvm as K
from vmio_edu.trace.tracepoint import tracepoint


def kvm_handle_signal_exit(vcpu) -> None:
    vcpu.run.exit_reason = K.KVM_EXIT_INTR
    vcpu.stat["signal_exits"] += 1


@tracepoint("kvm", args=("vcpu",))
def xfer_to_guest_mode_handle_work(vcpu) -> int:
    """Handle the thread's pending work (kernel/entry/kvm.c:31-48, the loop of xfer_to_guest_mode_work at
    6-29): a signal → KVM_EXIT_INTR, -EINTR; TIF_NEED_RESCHED → schedule(); then 0, back into the guest."""
    from vmio_edu.linux_6_12.arch.x86.kvm.x86 import signal_pending
    if signal_pending(vcpu):
        kvm_handle_signal_exit(vcpu)
        return -errno.EINTR
    if vcpu.need_resched:
        vcpu.need_resched = False
        sched = vcpu.kvm.sched
        if sched is not None and vcpu.model_thread is not None:
            sched.cond_resched()  # schedule(): the threads that are due run, then this one again
    return 0
