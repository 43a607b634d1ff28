"""util/qemu-thread-posix.c (QEMU v10.2.0): threads, mutexes and condition variables over vmio-edu's
deterministic scheduler (as vmio_edu.qemu.util.qemu_thread_posix for 1.6.1: a wait blocks the model
thread through the scheduler, a signal wakes it).

Every QEMU thread starts in `qemu_thread_start`, which names the thread and calls its start routine: in
gdb it is the bottom frame of the vCPU thread and of the pool workers, so it is a trace point here.
The thread pool waits on a condition variable in 10.2 (1.6.1 used a semaphore).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ...qemu.state import qemu_state
from ...qemu.util.qemu_thread_posix import (QemuMutex, QemuThread, qemu_mutex_init, qemu_mutex_lock,  # noqa: F401
                                            qemu_mutex_unlock)
from ...trace.tracepoint import tracepoint

QEMU_THREAD_JOINABLE, QEMU_THREAD_DETACHED = 0, 1


@dataclass
class QemuThreadArgs:
    start_routine: Callable[[Any], Any]
    arg: Any
    name: str


@tracepoint("qemu-cpu", args=("args",))
def qemu_thread_start(args: QemuThreadArgs) -> Any:
    """The first function of every QEMU thread: start_routine(arg)."""
    return args.start_routine(args.arg)


def qemu_thread_create(thread: QemuThread, name: str, start_routine: Callable, arg: Any,
                       mode: int = QEMU_THREAD_DETACHED, *, vcpu: bool = False, model_name: str | None = None) -> None:
    """Start `start_routine(arg)` on a new thread through qemu_thread_start. (`model_name`: the name the
    scheduler and traces use, "vcpu0" / "worker-1", where QEMU names threads "CPU 0/KVM" / "worker".)"""
    thread.name = model_name or name
    thread.model = qemu_state().sched.spawn(thread.name, qemu_thread_start,
                                            QemuThreadArgs(start_routine, arg, name), vcpu=vcpu)


@dataclass
class QemuCond:
    """A condition variable; `waiters` are the threads in qemu_cond_(timed)wait, first come first woken."""

    waiters: list = field(default_factory=list)

    def view(self) -> dict:
        return {"waiters": [t.name for t in self.waiters]}


def qemu_cond_init(cond: QemuCond) -> None:
    cond.waiters = []


def qemu_cond_signal(cond: QemuCond) -> None:
    if cond.waiters:
        qemu_state().sched.wake(cond.waiters.pop(0))


def qemu_cond_broadcast(cond: QemuCond) -> None:
    while cond.waiters:
        qemu_cond_signal(cond)


def qemu_cond_timedwait(cond: QemuCond, mutex: QemuMutex, ms: int) -> bool:
    """Release `mutex`, sleep until signalled, take `mutex` again. The model has no clock, so it never
    times out (returns true): an idle pool worker stays instead of exiting after 10 s as in QEMU."""
    sched = qemu_state().sched
    me = sched.current()
    qemu_mutex_unlock(mutex)
    cond.waiters.append(me)
    sched.block("qemu_cond_timedwait")
    if me in cond.waiters:  # woken for another reason (the machine is closing)
        cond.waiters.remove(me)
    qemu_mutex_lock(mutex)
    return True
