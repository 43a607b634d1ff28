"""Kicking a vCPU out of KVM_RUN, the way QEMU 1.6.1 does it: SIG_IPI, blocked except inside KVM_RUN.

With the in-kernel irqchip a guest HLT never exits to userspace: the vCPU thread sleeps inside KVM_RUN
until an interrupt arrives. The model still has to learn that the vCPU is halted (its scheduler must run
the other threads), so a watchdog thread sends the vCPU thread a signal when one KVM_RUN has gone on for a
few milliseconds without an exit. KVM_RUN then returns -EINTR and the engine asks KVM_GET_MP_STATE.

The signal never reaches a handler. As in QEMU 1.6.1 (`qemu_kvm_init_cpu_signals`, `kvm_eat_signals`):
* the vCPU thread keeps SIG_IPI blocked (`pthread_sigmask`), so a kick sent while it runs Python code
  just stays pending;
* KVM_SET_SIGNAL_MASK gives the kernel a mask *without* SIG_IPI to use while inside KVM_RUN, so a pending
  or arriving kick makes KVM_RUN return -EINTR at once (exit_reason KVM_EXIT_INTR);
* back in userspace the engine consumes the pending kick with sigtimedwait.
No Python signal handler is involved, so this works from any thread (Python handlers can only be set from
the main thread) and leaves the process's signal dispositions alone.
"""
from __future__ import annotations

import ctypes
import signal
import threading

from ..linux.include.uapi.linux import kvm as K
from . import libc

SIG_IPI = signal.SIGUSR1  # QEMU's SIG_IPI (cpus.c)
KICK_AFTER_S = 0.002  # a KVM_RUN older than 1-2 polls of this period (2-4 ms) with no exit gets a kick

_tls = threading.local()


class _SignalMask(ctypes.Structure):
    """struct kvm_signal_mask with its 8-byte kernel sigset (bit n-1 = signal n)."""

    _fields_ = [("len", ctypes.c_uint32), ("sigset", ctypes.c_uint64)]


def block_ipi_here() -> int:
    """Block SIG_IPI in the calling thread (once per thread); return the kernel mask for KVM_RUN.

    That mask is the thread's own mask minus SIG_IPI: while inside KVM_RUN a kick interrupts, every
    signal the thread already blocked stays blocked.
    """
    mask = getattr(_tls, "kvm_mask", None)
    if mask is None:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {SIG_IPI})
        mask = 0
        for s in old:
            if s not in (SIG_IPI, signal.SIGKILL, signal.SIGSTOP):
                mask |= 1 << (int(s) - 1)
        _tls.kvm_mask = mask
    return mask


def set_kvm_signal_mask(vcpu_fd: int, mask: int) -> None:
    """KVM_SET_SIGNAL_MASK: the signal mask the kernel applies while this vCPU is in KVM_RUN."""
    libc.ioctl(vcpu_fd, K.KVM_SET_SIGNAL_MASK, _SignalMask(8, mask))


def eat_ipi() -> int:
    """Consume pending SIG_IPI kicks of the calling thread (QEMU's kvm_eat_signals). Returns how many."""
    n = 0
    while signal.sigtimedwait({SIG_IPI}, 0) is not None:
        n += 1
    return n


class Watchdog:
    """One per vCPU: notices a KVM_RUN that has run `period_s`..2*`period_s` without an exit and kicks it.

    It is host machinery (like a kernel timer), not a model thread: it never touches the scheduler, only
    the vCPU's shared run state, under `state.lock`. It sleeps on an Event while no KVM_RUN is active, so
    an idle machine costs nothing.
    """

    def __init__(self, state, period_s: float = KICK_AFTER_S):
        self.state = state
        self.period_s = period_s
        self.active = threading.Event()  # set while some KVM_RUN may be in progress
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="vmio:kvm-watchdog", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        st = self.state
        seen = -1
        while not self.stop.is_set():
            self.active.wait()
            if self.stop.wait(self.period_s):
                return
            with st.lock:
                if st.closed:
                    return
                if not st.in_run:
                    self.active.clear()  # the next KVM_RUN entry sets it again (under the same lock)
                    seen = -1
                elif st.entry_seq != seen:
                    seen = st.entry_seq  # first sight of this entry: give it one more period
                else:
                    st.kicks_sent += 1  # the same entry two polls in a row: no exit for a while
                    signal.pthread_kill(st.run_tid, SIG_IPI)
                    seen = -1

    def shutdown(self) -> None:
        self.stop.set()
        self.active.set()
        if self.thread is not threading.current_thread():
            self.thread.join(timeout=1)
