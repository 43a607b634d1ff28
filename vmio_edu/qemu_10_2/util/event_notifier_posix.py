"""util/event_notifier-posix.c (QEMU v10.2.0): a wake-up flag a poll can wait on, as a real eventfd.

On this path 10.2 uses one: the AioContext's own notifier, which `aio_notify` sets to wake the main
loop out of its poll (the thread pool no longer has a notifier of its own). 10.2's set/test_and_clear
first check that the notifier was initialized. The eventfd and the wait queues of poll(2) (who sleeps
on which fd) are vmio_edu.qemu.util.event_notifier_posix's.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from ...qemu.util import event_notifier_posix as _en161
from ...qemu.util.event_notifier_posix import fd_readable, poll_unwait, poll_wait, wake_up_poll  # noqa: F401
from ...trace.tracepoint import tracepoint


@dataclass
class EventNotifier(_en161.EventNotifier):
    initialized: bool = False


def event_notifier_init(e: EventNotifier, active: bool) -> int:
    """A non-blocking, close-on-exec eventfd; `active` starts it set."""
    _en161.event_notifier_init(e, active)
    e.initialized = True
    return 0


def event_notifier_cleanup(e: EventNotifier) -> None:
    if not e.initialized:
        return
    _en161.event_notifier_cleanup(e)
    e.initialized = False


def event_notifier_get_fd(e: EventNotifier) -> int:
    return e.rfd


def event_notifier_is_set(e: EventNotifier) -> bool:
    return fd_readable(e.rfd)


@tracepoint("qemu-event-loop", args=("e",))
def event_notifier_set(e: EventNotifier) -> int:
    """Add 1 to the eventfd (a real write): the fd turns readable and its pollers wake."""
    if not e.initialized:
        return -1
    try:
        os.eventfd_write(e.wfd, 1)
    except BlockingIOError:
        pass  # saturated: readable already (QEMU ignores EAGAIN)
    wake_up_poll(e.wfd)
    return 0


@tracepoint("qemu-event-loop", args=("e",))
def event_notifier_test_and_clear(e: EventNotifier) -> bool:
    """Read the counter back to zero (a real read); True if it was set."""
    if not e.initialized:
        return False
    try:
        return os.eventfd_read(e.rfd) > 0
    except BlockingIOError:
        return False
