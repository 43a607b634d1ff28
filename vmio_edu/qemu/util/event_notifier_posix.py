"""util/event_notifier-posix.c (QEMU v1.6.1): a wake-up flag that a poll can wait on, as a real eventfd.

A pool worker that finished a request calls `event_notifier_set`: a real 8-byte write to a real
`eventfd(2)`. (KVM's ioeventfd writes to one too, from the kernel: `event_notifier_set_handler` makes the
main loop watch such a notifier through iohandler.c.) The main loop, asleep in `poll` on that fd, wakes
up and calls the handler registered for it, which reads the counter back to zero
(`event_notifier_test_and_clear`).

Readiness is always the real fd's. Only the sleeping is modelled: a thread that polls finds nothing ready
and would sleep in the kernel puts itself on the fd's wait queue (`poll_wait`) and blocks through the
scheduler; `event_notifier_set` wakes whoever is on that queue, as the kernel's eventfd_write does.
"""
from __future__ import annotations

import os
import select
from dataclasses import dataclass
from typing import Any

from ...trace.tracepoint import current_context, tracepoint


@dataclass
class EventNotifier:
    rfd: int = -1
    wfd: int = -1  # the same fd as rfd for an eventfd
    container: Any = None  # model-only: what C reaches with container_of() (the ThreadPool, the AioContext)

    def view(self) -> dict:
        return {"fd": self.rfd, "set": event_notifier_is_set(self)}


def event_notifier_init(e: EventNotifier, active: bool) -> int:
    """Create the eventfd (non-blocking, close-on-exec); `active` starts it already set."""
    fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    e.rfd = e.wfd = fd
    if active:
        os.eventfd_write(fd, 1)
    return 0


def event_notifier_cleanup(e: EventNotifier) -> None:
    if e.rfd >= 0:
        os.close(e.rfd)
    e.rfd = e.wfd = -1


def event_notifier_get_fd(e: EventNotifier) -> int:
    return e.rfd


def event_notifier_is_set(e: EventNotifier) -> bool:
    """Model-only: would a poll on the fd report it readable now? (A real poll with no timeout.)"""
    return fd_readable(e.rfd)


def fd_readable(fd: int) -> bool:
    if fd < 0:
        return False
    p = select.poll()
    p.register(fd, select.POLLIN)
    return bool(p.poll(0))


@tracepoint("qemu-event-loop", args=("e",))
def event_notifier_set(e: EventNotifier) -> int:
    """Add 1 to the eventfd counter (a real write), which makes the fd readable and wakes its pollers."""
    try:
        os.eventfd_write(e.wfd, 1)
    except BlockingIOError:
        pass  # the counter is saturated: the fd is readable already, as QEMU ignores EAGAIN
    wake_up_poll(e.wfd)
    return 0


@tracepoint("qemu-event-loop", args=("e",))
def event_notifier_test_and_clear(e: EventNotifier) -> bool:
    """Read the counter back to zero (a real read); True if it was set."""
    try:
        return os.eventfd_read(e.rfd) > 0
    except BlockingIOError:
        return False


@tracepoint("qemu-event-loop", args=("e", "handler"))
def event_notifier_set_handler(e: EventNotifier, handler: Any) -> int:
    """Watch the notifier from the main loop: `handler(e)` runs on the main-loop thread when the eventfd
    becomes readable (a pool worker's write, or KVM's ioeventfd signal); None stops watching. 1.6.1 does
    it with qemu_set_fd_handler (iohandler.c), not through an AioContext."""
    from ..iohandler import qemu_set_fd_handler
    return qemu_set_fd_handler(e.rfd, handler, None, e)


# -- the kernel side of poll(2): one wait queue per fd ---------------------------------------------------
def _wait_queues() -> dict[int, list]:
    """This machine's wait queues (in QemuState.extra). Outside a model thread (the controller setting
    the machine up) no model thread can be asleep, so there is nothing to wake."""
    ctx = current_context()
    if ctx is None or ctx.machine is None:
        return {}
    return ctx.machine.extra.setdefault("fd_wait_queues", {})


def poll_wait(fds: list[int], thread: Any) -> None:
    """Put `thread` on the wait queue of each fd (what poll does before it sleeps)."""
    for fd in fds:
        q = _wait_queues().setdefault(fd, [])
        if thread not in q:
            q.append(thread)


def poll_unwait(fds: list[int], thread: Any) -> None:
    for fd in fds:
        q = _wait_queues().get(fd, [])
        if thread in q:
            q.remove(thread)


def wake_up_poll(fd: int) -> None:
    """Wake every thread sleeping in poll on `fd` (eventfd_write's wake_up_locked_poll)."""
    waiters = list(_wait_queues().get(fd, []))
    for t in waiters:
        t.sched.wake(t)


def wake_up_poll_file(fd: int) -> None:
    """Wake every thread sleeping in poll on the open file behind `fd`, under whatever descriptor number it
    polls (the kernel signals an eventfd through its own reference, linux/fs/eventfd.py)."""
    from ...linux.fs.eventfd import same_file
    for polled, waiters in list(_wait_queues().items()):
        if waiters and same_file(polled, fd):
            for t in list(waiters):
                t.sched.wake(t)


def wake_ready_pollers(fds: Any = None) -> int:
    """Wake the threads asleep in poll on an fd (of `fds`, or any) that is readable now; returns how many
    fds were.

    The real engine's kernel signals an ioeventfd by itself while the guest runs; the model thread asleep
    on it (through the scheduler, not in the host's poll) learns of it here, which the vCPU thread calls
    each time a real KVM_RUN returns: the first return after the guest's write."""
    n = 0
    queues = _wait_queues()
    for polled in (list(queues) if fds is None else list(fds)):
        waiters = queues.get(polled)
        if waiters and fd_readable(polled):
            n += 1
            for t in list(waiters):
                t.sched.wake(t)
    return n
