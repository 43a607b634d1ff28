"""util/aio-posix.c (QEMU v10.2.0): fd handlers of an AioContext, `aio_dispatch` and `aio_poll`.

In the main loop the AioContext is a glib source: glib polls its fds (main-loop.c), and
`aio_ctx_dispatch` calls `aio_dispatch`: bottom halves first (`aio_bh_poll`), then the handlers whose fd
the poll found ready (fdmon-poll's gsource_dispatch + aio_dispatch_ready_handlers). On this path the only
fd is the context's own notifier. `aio_poll(ctx, blocking)` is the same work for a thread that waits on a
context directly (a cancel waiting for its request).

The poll is real (poll(2) on the real eventfds, never sleeping in it); a thread with nothing ready sleeps
on the fds' wait queues through the scheduler until an event notifier on one of them is set.

The model's AioContext watches its fds the fdmon-poll way: a QEMU 10.2 built without liburing, or one where
io_uring_setup fails (aio_context_setup, util/aio-posix.c:731). A liburing build gives every AioContext the
io_uring fd monitor (util/fdmon-io_uring.c): glib then polls the ring's fd, and a POLL_ADD completion on
it says the notifier's eventfd is readable: the same wake-up, one indirection more.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

# glib's GPollFD and GIOCondition bits are glib's, the same under both QEMUs; the host poll is shared too
from ...qemu.aio_posix import G_IO_ERR, G_IO_HUP, G_IO_IN, G_IO_OUT, GPollFD, poll_or_sleep
from ...trace.tracepoint import tracepoint
from .event_notifier_posix import EventNotifier, event_notifier_get_fd


@dataclass(eq=False)
class AioHandler:
    pfd: GPollFD
    io_read: Callable[[Any], None] | None
    io_write: Callable[[Any], None] | None
    opaque: Any
    deleted: bool = False

    def view(self) -> dict:
        return {"fd": self.pfd.fd, "io_read": getattr(self.io_read, "__name__", None),
                "revents": self.pfd.revents, "deleted": self.deleted}


def aio_set_fd_handler(ctx: Any, fd: int, io_read: Callable | None, io_write: Callable | None,
                       io_poll: Callable | None, io_poll_ready: Callable | None, opaque: Any) -> None:
    """Register, replace or (no callbacks) remove the handler of `fd`."""
    node = next((n for n in ctx.aio_handlers if n.pfd.fd == fd and not n.deleted), None)
    if io_read is None and io_write is None:
        if node is not None:
            if ctx.walking_handlers:
                node.deleted = True
                node.pfd.revents = 0
            else:
                ctx.aio_handlers.remove(node)
        return
    new = AioHandler(GPollFD(fd), io_read, io_write, opaque)
    new.pfd.events = (G_IO_IN | G_IO_HUP | G_IO_ERR if io_read else 0) | (G_IO_OUT | G_IO_ERR if io_write else 0)
    if node is not None:
        ctx.aio_handlers.remove(node)
    ctx.aio_handlers.insert(0, new)


@tracepoint("qemu-event-loop", args=("ctx", "notifier", "io_read"))
def aio_set_event_notifier(ctx: Any, notifier: EventNotifier, io_read: Callable | None) -> None:
    """Watch an event notifier (io_poll/io_poll_ready: adaptive polling, off in the main loop)."""
    aio_set_fd_handler(ctx, event_notifier_get_fd(notifier), io_read, None, None, None, notifier)


def aio_pending(ctx: Any) -> bool:
    for node in ctx.aio_handlers:
        revents = node.pfd.revents & node.pfd.events
        if revents & (G_IO_IN | G_IO_HUP | G_IO_ERR) and node.io_read:
            return True
        if revents & (G_IO_OUT | G_IO_ERR) and node.io_write:
            return True
    return False


def aio_dispatch_ready_handlers(ctx: Any) -> bool:
    """Call io_read/io_write of each handler the last poll found ready (and clear that)."""
    progress = False
    ctx.walking_handlers += 1
    try:
        for node in list(ctx.aio_handlers):
            revents = node.pfd.revents & node.pfd.events
            node.pfd.revents = 0
            if not node.deleted and revents & (G_IO_IN | G_IO_HUP | G_IO_ERR) and node.io_read:
                node.io_read(node.opaque)
                if node.opaque is not ctx.notifier:
                    progress = True
            if not node.deleted and revents & (G_IO_OUT | G_IO_ERR) and node.io_write:
                node.io_write(node.opaque)
                progress = True
    finally:
        ctx.walking_handlers -= 1
    if not ctx.walking_handlers:
        ctx.aio_handlers[:] = [n for n in ctx.aio_handlers if not n.deleted]
    return progress


@tracepoint("qemu-event-loop", args=("ctx",))
def aio_dispatch(ctx: Any) -> None:
    """Bottom halves, then the ready fd handlers (the glib main loop's dispatch of the AioContext)."""
    from .async_ import aio_bh_poll
    aio_bh_poll(ctx)
    aio_dispatch_ready_handlers(ctx)


@tracepoint("qemu-event-loop", args=("ctx", "blocking"))
def aio_poll(ctx: Any, blocking: bool) -> bool:
    """Make progress on `ctx` from this thread: poll its handlers' fds (sleeping if `blocking` and no BH
    is due), then run BHs and ready handlers. Returns whether anything but aio_notify happened."""
    from .async_ import aio_bh_poll, aio_compute_timeout, aio_notify_accept
    if blocking:
        ctx.notify_me += 2
    timeout = -1 if blocking and aio_compute_timeout(ctx) != 0 else 0
    fds = [n.pfd for n in ctx.aio_handlers if not n.deleted and n.pfd.events]
    ret = qemu_poll_ns(fds, timeout)
    if blocking:
        ctx.notify_me -= 2
        aio_notify_accept(ctx)
    progress = bool(aio_bh_poll(ctx))
    if ret > 0:
        progress |= aio_dispatch_ready_handlers(ctx)
    return progress


def qemu_poll_ns(fds: list[GPollFD], timeout: int) -> int:
    """util/qemu-timer.c: ppoll(2). The model has no clock: any non-zero timeout sleeps until an fd is
    written. The poll and the sleep are the host's, shared with 1.6.1's g_poll."""
    return poll_or_sleep(fds, timeout, "qemu_poll_ns")
