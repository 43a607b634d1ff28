"""main-loop.c (QEMU v1.6.1): one iteration of the main (I/O) thread's loop.

`main_loop_wait` → `os_host_main_loop_wait`: ask the glib sources how long we may sleep (the AioContext
says "not at all" when a bottom half is pending), drop the BQL, poll the fds, take the BQL back, and
dispatch the sources that are ready: the AioContext's `aio_ctx_dispatch` → `aio_poll` runs BHs and the
handlers of readable eventfds (the thread pool's completions).

Before that, `qemu_iohandler_fill` adds the fds of the main loop's own fd handlers (iohandler.c: e.g. a
virtqueue's host notifier, registered by `event_notifier_set_handler`), and after the poll
`qemu_iohandler_poll` runs the handlers of those that are ready.

In vmio-edu the fds are real eventfds and the poll is real; a thread with nothing ready blocks through the
scheduler until an eventfd it polls is written (see aio_posix.g_poll). The model has no timers or slirp,
so those steps of main_loop_wait are empty.
"""
from __future__ import annotations

from typing import Any, Callable

from ..trace.tracepoint import tracepoint
from . import async_
from .aio_posix import GPollFD, aio_set_event_notifier, g_poll
from .cpus import qemu_mutex_lock_iothread, qemu_mutex_unlock_iothread
from .state import QemuState, qemu_state
from .thread_pool import thread_pool_free
from .util.event_notifier_posix import event_notifier_cleanup


def qemu_init_main_loop(state: QemuState) -> int:
    """Create the main AioContext (qemu_aio_context) with its notifier and, here already, its thread pool.
    QEMU makes the pool on the first request (aio_get_thread_pool); making it now changes nothing but lets
    the views show the (empty) pool from the start. Runs on the controller thread before any model thread."""
    ctx = async_.aio_context_new()
    state.aio_context = ctx
    async_.aio_get_thread_pool(ctx)
    return 0


def qemu_cleanup_main_loop(state: QemuState) -> None:
    """Model-only: close the main AioContext's eventfds (its own and its pool's) once the machine's
    threads have stopped. QEMU never needs this (the process exits); a notebook opens many machines."""
    ctx = state.aio_context
    if ctx is None:
        return
    if ctx.thread_pool is not None:
        thread_pool_free(ctx.thread_pool)
        ctx.thread_pool = None
    aio_set_event_notifier(ctx, ctx.notifier, None)
    event_notifier_cleanup(ctx.notifier)
    state.aio_context = None


def qemu_get_aio_context() -> async_.AioContext:
    return qemu_state().aio_context


@tracepoint("qemu-threadpool", args=())
def qemu_aio_wait() -> bool:
    """Run the main AioContext once, blocking until something happens, on whatever thread calls it (a
    vCPU thread cancelling a request does, holding the BQL)."""
    from .aio_posix import aio_poll
    return aio_poll(qemu_get_aio_context(), True)


def qemu_bh_new(cb: Callable[[Any], None], opaque: Any) -> async_.QEMUBH:
    """A bottom half in the main loop's AioContext."""
    return async_.aio_bh_new(qemu_get_aio_context(), cb, opaque)


def qemu_notify_event() -> None:
    """Wake the main loop (its AioContext's notifier), so that its next poll sees what changed."""
    ctx = qemu_get_aio_context()
    if ctx is None:
        return
    async_.aio_notify(ctx)


@tracepoint("qemu-event-loop", args=())
def glib_pollfds_fill(timeout: int) -> tuple[list[GPollFD], int]:
    """g_main_context_prepare + query: the fds to poll (the AioContext's handlers, shared so the poll's
    results land on them) and the timeout, 0 if a bottom half is already due."""
    ctx = qemu_get_aio_context()
    ready, src_timeout = async_.aio_ctx_prepare(ctx)
    if ready:
        timeout = 0
    elif src_timeout >= 0 and (timeout < 0 or src_timeout < timeout):
        timeout = src_timeout
    fds = [node.pfd for node in ctx.aio_handlers if not node.deleted and node.pfd.events]
    return fds, timeout


@tracepoint("qemu-event-loop", args=())
def glib_pollfds_poll() -> None:
    """g_main_context_check + dispatch: run the AioContext source if it has work."""
    ctx = qemu_get_aio_context()
    if async_.aio_ctx_check(ctx):
        async_.aio_ctx_dispatch(ctx)


@tracepoint("qemu-event-loop", args=("timeout",))
def os_host_main_loop_wait(timeout: int, gpollfds: list[GPollFD] | None = None) -> int:
    """Poll with the BQL dropped (only if we may sleep), then dispatch ready sources with it held.
    `gpollfds` is main-loop.c's global array, already holding the iohandlers' fds; glib's are added.
    (QEMU's 'I/O thread spun for 1000 iterations' guard is not modelled.)"""
    fds, timeout = glib_pollfds_fill(timeout)
    if gpollfds:
        fds = list(gpollfds) + fds
    if timeout != 0:
        qemu_mutex_unlock_iothread()
    ret = g_poll(fds, timeout)
    if timeout != 0:
        qemu_mutex_lock_iothread()
    glib_pollfds_poll()
    return ret


@tracepoint("qemu-event-loop", args=("nonblocking",))
def main_loop_wait(nonblocking: int) -> int:
    """One main-loop iteration: wait for and dispatch events (no timers or slirp in this model)."""
    from .iohandler import io_handlers, qemu_iohandler_fill, qemu_iohandler_poll
    timeout = 0 if nonblocking else -1  # UINT32_MAX in QEMU: no limit
    gpollfds: list[GPollFD] = []
    if not io_handlers():  # nothing to fill or poll (skipped, so runs without handlers trace as before)
        return os_host_main_loop_wait(timeout)
    qemu_iohandler_fill(gpollfds)
    ret = os_host_main_loop_wait(timeout, gpollfds)
    qemu_iohandler_poll(gpollfds, ret)
    return ret
