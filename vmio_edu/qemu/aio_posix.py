"""aio-posix.c (QEMU v1.6.1): fd handlers of an AioContext and `aio_poll`.

Each handler watches one fd (here always an event notifier's eventfd) and has an `io_read` callback.
`aio_poll` runs the scheduled bottom halves first, then the handlers whose fd is readable
(`aio_dispatch`). The thread pool's handler is `event_notifier_ready`: that is where a finished pwrite
comes back to the main loop.

`g_poll` (glib's poll wrapper) lives here too, because both aio_poll and main-loop.c use it.
"""
from __future__ import annotations

import select
from dataclasses import dataclass
from typing import Any, Callable

from ..trace.tracepoint import tracepoint
from . import async_
from .state import qemu_state
from .util.event_notifier_posix import EventNotifier, event_notifier_get_fd, poll_unwait, poll_wait

# glib's GIOCondition bits (the poll(2) bits)
G_IO_IN, G_IO_PRI, G_IO_OUT, G_IO_ERR, G_IO_HUP, G_IO_NVAL = 1, 2, 4, 8, 16, 32


@dataclass
class GPollFD:
    fd: int
    events: int = 0
    revents: int = 0


@dataclass
class AioHandler:
    pfd: GPollFD
    io_read: Callable[[Any], None] | None
    io_write: Callable[[Any], None] | None
    opaque: Any
    deleted: bool = False

    def view(self) -> dict:
        return {"fd": self.pfd.fd, "io_read": getattr(self.io_read, "__name__", None),
                "revents": self.pfd.revents, "deleted": self.deleted}


def aio_set_fd_handler(ctx: "async_.AioContext", fd: int, io_read: Callable | None, io_write: Callable | None,
                       opaque: Any) -> None:
    """Register, change or (with no callbacks) remove the handler of `fd`. New handlers go first."""
    node = next((n for n in ctx.aio_handlers if n.pfd.fd == fd and not n.deleted), None)
    if io_read is None and io_write is None:
        if node is not None:
            if ctx.walking_handlers:
                node.deleted = True  # aio_dispatch frees it when the walk ends
                node.pfd.revents = 0
            else:
                ctx.aio_handlers.remove(node)
        return
    if node is None:
        node = AioHandler(GPollFD(fd), None, None, None)
        ctx.aio_handlers.insert(0, node)
    node.io_read, node.io_write, node.opaque = io_read, io_write, opaque
    node.pfd.events = (G_IO_IN | G_IO_HUP | G_IO_ERR if io_read else 0) | (G_IO_OUT | G_IO_ERR if io_write else 0)


@tracepoint("qemu-event-loop", args=("ctx", "notifier", "io_read"))
def aio_set_event_notifier(ctx: "async_.AioContext", notifier: EventNotifier,
                           io_read: Callable[[EventNotifier], Any] | None) -> None:
    """Watch an event notifier: `io_read(notifier)` runs when its eventfd becomes readable."""
    aio_set_fd_handler(ctx, event_notifier_get_fd(notifier), io_read, None, notifier)


def aio_pending(ctx: "async_.AioContext") -> bool:
    """Has the last poll left a handler with something to do?"""
    for node in ctx.aio_handlers:
        revents = node.pfd.revents & node.pfd.events
        if revents & (G_IO_IN | G_IO_HUP | G_IO_ERR) and node.io_read:
            return True
        if revents & (G_IO_OUT | G_IO_ERR) and node.io_write:
            return True
    return False


@tracepoint("qemu-event-loop", args=("ctx",))
def aio_dispatch(ctx: "async_.AioContext") -> bool:
    """Call io_read/io_write of every handler whose fd the last poll found ready (and clear that).
    Returns True if a handler other than the context's own notifier ran."""
    progress = False
    for node in list(ctx.aio_handlers):
        ctx.walking_handlers += 1
        revents = node.pfd.revents & node.pfd.events
        node.pfd.revents = 0
        if not node.deleted and revents & (G_IO_IN | G_IO_HUP | G_IO_ERR) and node.io_read:
            node.io_read(node.opaque)
            if node.opaque is not ctx.notifier:  # aio_notify() does not count as progress
                progress = True
        if not node.deleted and revents & (G_IO_OUT | G_IO_ERR) and node.io_write:
            node.io_write(node.opaque)
            progress = True
        ctx.walking_handlers -= 1
        if not ctx.walking_handlers and node.deleted and node in ctx.aio_handlers:
            ctx.aio_handlers.remove(node)
    return progress


@tracepoint("qemu-event-loop", args=("ctx", "blocking"))
def aio_poll(ctx: "async_.AioContext", blocking: bool) -> bool:
    """Make progress on the context: BHs first, then ready handlers; if nothing happened and `blocking`,
    poll the handlers' fds (sleeping until one is ready) and dispatch again. Returns True on progress."""
    progress = False
    if async_.aio_bh_poll(ctx):
        blocking = False
        progress = True
    if aio_dispatch(ctx):
        progress = True
    if progress and not blocking:
        return True

    ctx.walking_handlers += 1
    polled = [(node, GPollFD(node.pfd.fd, node.pfd.events)) for node in ctx.aio_handlers
              if not node.deleted and node.pfd.events]
    ctx.walking_handlers -= 1
    if len(polled) == 1:  # only the aio_notify() fd: nothing to wait for
        return progress

    ret = g_poll([p for _, p in polled], -1 if blocking else 0)
    if ret > 0:
        for node, p in polled:
            node.pfd.revents = p.revents
    if aio_dispatch(ctx):
        progress = True
    return progress


def g_poll(fds: list[GPollFD], timeout: int) -> int:
    """glib's g_poll = poll(2). The model has no timers, so a positive timeout sleeps like an infinite
    one (see `poll_or_sleep`)."""
    return poll_or_sleep(fds, timeout, "g_poll")


def poll_or_sleep(fds: list[GPollFD], timeout: int, where: str) -> int:
    """The host side of a poll, shared by 1.6.1's g_poll and 10.2's qemu_poll_ns: readiness comes from a
    real poll of the real fds (never sleeping in it). If nothing is ready and `timeout` is not 0, the
    thread sleeps on the fds' wait queues: it blocks through the scheduler (as `where`) until an event
    notifier on one of them is set."""
    while True:
        n = _poll_now(fds)
        if n or timeout == 0:
            return n
        sched = qemu_state().sched
        me = sched.current()
        watched = [p.fd for p in fds]
        poll_wait(watched, me)
        try:
            sched.block(where)
        finally:
            poll_unwait(watched, me)


def _poll_now(fds: list[GPollFD]) -> int:
    p = select.poll()
    for f in fds:
        f.revents = 0
        if f.fd >= 0 and f.events:
            p.register(f.fd, f.events)
    ready = dict(p.poll(0)) if fds else {}
    n = 0
    for f in fds:
        f.revents = ready.get(f.fd, 0) & (f.events | G_IO_ERR | G_IO_HUP | G_IO_NVAL)
        n += bool(f.revents)
    return n
