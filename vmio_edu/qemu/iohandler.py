"""iohandler.c (QEMU v1.6.1): file-descriptor handlers of the main loop (not of an AioContext).

API (stable):
    qemu_set_fd_handler(fd, fd_read, fd_write, opaque)   # register / change; both None removes it
    qemu_set_fd_handler2(fd, fd_read_poll, fd_read, fd_write, opaque)
and, called by main-loop.c's `main_loop_wait` on the main-loop thread:
    qemu_iohandler_fill(gpollfds)        # append a GPollFD per handler that wants events
    qemu_iohandler_poll(gpollfds, ret)   # after the poll: call fd_read / fd_write of the ready ones

`event_notifier_set_handler(e, handler)` (util/event_notifier-posix.c) registers through here: that is how
QEMU 1.6.1 watches a virtqueue's host notifier, the eventfd KVM signals on an ioeventfd write
(`virtio_queue_host_notifier_read` then runs on the main-loop thread). The handlers live per machine
(`QemuState.extra["io_handlers"]`), newest first, as QLIST_INSERT_HEAD keeps them. Registering wakes the
main loop (`qemu_notify_event`) so that its next poll watches the new fd.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..trace.tracepoint import tracepoint
from .aio_posix import G_IO_ERR, G_IO_HUP, G_IO_IN, G_IO_OUT, GPollFD
from .state import qemu_state


@dataclass
class IOHandlerRecord:
    fd: int
    fd_read_poll: Callable[[Any], int] | None
    fd_read: Callable[[Any], None] | None
    fd_write: Callable[[Any], None] | None
    opaque: Any
    pollfds_idx: int = -1
    deleted: bool = False

    def view(self) -> dict:
        return {"fd": self.fd, "fd_read": getattr(self.fd_read, "__name__", None),
                "fd_write": getattr(self.fd_write, "__name__", None), "deleted": self.deleted}


def io_handlers(state: Any = None) -> list[IOHandlerRecord]:
    """This machine's handler list (iohandler.c's static io_handlers)."""
    state = state if state is not None else qemu_state()
    return state.extra.setdefault("io_handlers", [])


@tracepoint("qemu-event-loop", args=("fd", "fd_read_poll", "fd_read", "fd_write", "opaque"))
def qemu_set_fd_handler2(fd: int, fd_read_poll: Callable | None, fd_read: Callable | None,
                         fd_write: Callable | None, opaque: Any) -> int:
    """Register, change or (with neither callback) mark for deletion the handler of `fd`."""
    from .main_loop import qemu_notify_event
    if fd < 0:
        raise ValueError(f"qemu_set_fd_handler2: fd {fd} (QEMU asserts fd >= 0)")
    handlers = io_handlers()
    if fd_read is None and fd_write is None:
        for ioh in handlers:
            if ioh.fd == fd:
                ioh.deleted = True
                break
        return 0
    ioh = next((h for h in handlers if h.fd == fd), None)
    if ioh is None:
        ioh = IOHandlerRecord(fd, None, None, None, None)
        handlers.insert(0, ioh)
    ioh.fd_read_poll, ioh.fd_read, ioh.fd_write, ioh.opaque = fd_read_poll, fd_read, fd_write, opaque
    ioh.pollfds_idx, ioh.deleted = -1, False
    qemu_notify_event()
    return 0


@tracepoint("qemu-event-loop", args=("fd", "fd_read", "fd_write", "opaque"))
def qemu_set_fd_handler(fd: int, fd_read: Callable | None, fd_write: Callable | None, opaque: Any) -> int:
    return qemu_set_fd_handler2(fd, None, fd_read, fd_write, opaque)


@tracepoint("qemu-event-loop", args=("pollfds",))
def qemu_iohandler_fill(pollfds: list[GPollFD]) -> None:
    """One GPollFD per live handler that wants to read (and may: fd_read_poll) or write."""
    for ioh in io_handlers():
        if ioh.deleted:
            continue
        events = 0
        if ioh.fd_read and (ioh.fd_read_poll is None or ioh.fd_read_poll(ioh.opaque) != 0):
            events |= G_IO_IN | G_IO_HUP | G_IO_ERR
        if ioh.fd_write:
            events |= G_IO_OUT | G_IO_ERR
        if events:
            ioh.pollfds_idx = len(pollfds)
            pollfds.append(GPollFD(ioh.fd, events))
        else:
            ioh.pollfds_idx = -1


@tracepoint("qemu-event-loop", args=("pollfds", "ret"))
def qemu_iohandler_poll(pollfds: list[GPollFD], ret: int) -> None:
    """After the poll: run fd_read / fd_write of each handler whose fd came back ready; free the deleted."""
    if ret <= 0:
        return
    handlers = io_handlers()
    for ioh in list(handlers):
        revents = 0
        if not ioh.deleted and ioh.pollfds_idx != -1:
            revents = pollfds[ioh.pollfds_idx].revents
        if not ioh.deleted and ioh.fd_read and revents & (G_IO_IN | G_IO_HUP | G_IO_ERR):
            ioh.fd_read(ioh.opaque)
        if not ioh.deleted and ioh.fd_write and revents & (G_IO_OUT | G_IO_ERR):
            ioh.fd_write(ioh.opaque)
        if ioh.deleted and ioh in handlers:  # last, in case a handler marked itself for deletion
            handlers.remove(ioh)
