"""util/qemu-thread-posix.c (QEMU v1.6.1): threads, mutexes and semaphores, over vmio-edu's scheduler.

QEMU wraps pthreads. Here a thread is a model thread of the deterministic scheduler, and a wait never
blocks the real thread: it blocks the model thread through the scheduler (`sched.block`), and a post wakes
it (`sched.wake`). So the same run always interleaves the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..state import qemu_state

QEMU_THREAD_JOINABLE = 0
QEMU_THREAD_DETACHED = 1


@dataclass
class QemuThread:
    """A created thread: the model thread's name (QEMU keeps a pthread_t)."""

    name: str = ""
    model: Any = None  # the scheduler's ModelThread


def qemu_thread_create(thread: QemuThread, start_routine: Callable, arg: Any, mode: int = QEMU_THREAD_DETACHED,
                       *, name: str) -> None:
    """Start `start_routine(arg)` on a new thread.

    QEMU 1.6.1's threads have no names (`name` came in 1.7); the model needs one for traces ("worker-1").
    The signal masking QEMU does around pthread_create has nothing to model here.
    """
    thread.name = name
    thread.model = qemu_state().sched.spawn(name, start_routine, arg)


@dataclass
class QemuMutex:
    """A mutex. Only one model thread runs at a time and nothing here blocks while holding one, so it
    only records its owner (for views) and catches a lock taken twice, which would be a model bug."""

    owner: str | None = None


def qemu_mutex_init(m: QemuMutex) -> None:
    m.owner = None


def qemu_mutex_lock(m: QemuMutex) -> None:
    me = qemu_state().sched.current().name
    if m.owner is not None:
        raise RuntimeError(f"mutex already held by {m.owner} when {me} locks it")
    m.owner = me


def qemu_mutex_unlock(m: QemuMutex) -> None:
    m.owner = None


@dataclass
class QemuSemaphore:
    """A counting semaphore. `waiters` are the threads sleeping in qemu_sem_wait, first come first woken."""

    count: int = 0
    waiters: list = field(default_factory=list)  # ModelThreads

    def view(self) -> dict:
        return {"count": self.count, "waiters": [t.name for t in self.waiters]}


def qemu_sem_init(sem: QemuSemaphore, init: int) -> None:
    sem.count, sem.waiters = init, []


def qemu_sem_post(sem: QemuSemaphore) -> None:
    """Count up and wake one sleeper (sem_post)."""
    sem.count += 1
    if sem.waiters:
        qemu_state().sched.wake(sem.waiters.pop(0))


def qemu_sem_wait(sem: QemuSemaphore) -> int:
    """Sleep until the count is positive, then count down (sem_wait)."""
    sched = qemu_state().sched
    while sem.count == 0:
        me = sched.current()
        sem.waiters.append(me)
        sched.block("qemu_sem_wait")
        if me in sem.waiters:  # woken for another reason (the machine is closing)
            sem.waiters.remove(me)
    sem.count -= 1
    return 0


def qemu_sem_timedwait(sem: QemuSemaphore, ms: int) -> int:
    """sem_timedwait. The model has no wall clock, so the wait never times out (returns 0, not -1); an
    idle pool worker therefore stays instead of exiting after 10 s as in QEMU."""
    return qemu_sem_wait(sem)
