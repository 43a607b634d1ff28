"""util/main-loop.c (QEMU v10.2.0): one iteration of the main thread's loop.

    main_loop_wait → os_host_main_loop_wait: glib_pollfds_fill (the AioContext's aio_ctx_prepare announces
    the poller and says "don't sleep" when a BH is due), bql_unlock, qemu_poll_ns, bql_lock,
    glib_pollfds_poll (aio_ctx_check, then aio_ctx_dispatch → aio_dispatch: BHs and ready handlers)

As in 1.6.1 (main-loop.c then) the BQL is dropped only around the poll. The model has no timers, slirp
or other glib sources, so those steps are empty.
"""
from __future__ import annotations

from typing import Any, Callable

from ...qemu.state import QemuState, qemu_state
from ...trace.tracepoint import tracepoint
from ..system.cpus import bql_lock, bql_unlock
from . import async_
from .aio_posix import GPollFD, aio_set_event_notifier, qemu_poll_ns
from .event_notifier_posix import event_notifier_cleanup

_FILE = "../util/main-loop.c"


def qemu_init_main_loop(state: QemuState) -> int:
    """qemu_aio_context and (made here already, so views show it empty from the start) its thread pool.
    Runs on the controller before any model thread."""
    ctx = async_.aio_context_new()
    state.aio_context = ctx
    async_.aio_get_thread_pool(ctx)
    return 0


def qemu_cleanup_main_loop(state: QemuState) -> None:
    """Model-only: close the main context's eventfd once the threads have stopped (a notebook opens many
    machines; QEMU's process just exits)."""
    ctx = state.aio_context
    if ctx is None:
        return
    if ctx.thread_pool is not None:
        from .thread_pool import thread_pool_free_aio
        thread_pool_free_aio(ctx.thread_pool)
        ctx.thread_pool = None
    aio_set_event_notifier(ctx, ctx.notifier, None)
    event_notifier_cleanup(ctx.notifier)
    state.aio_context = None


def qemu_get_aio_context() -> async_.AioContext:
    return qemu_state().aio_context


def qemu_bh_new(cb: Callable[[Any], None], opaque: Any) -> async_.QEMUBH:
    return async_.aio_bh_new(qemu_get_aio_context(), cb, opaque)


@tracepoint("qemu-event-loop", args=("cur_timeout",))
def glib_pollfds_fill(cur_timeout: int) -> tuple[list[GPollFD], int]:
    """g_main_context_prepare + query: the fds to poll and the timeout (0 when a BH is due)."""
    ctx = qemu_get_aio_context()
    ready, timeout = async_.aio_ctx_prepare(ctx)
    if ready:
        timeout = 0
    if timeout >= 0 and (cur_timeout < 0 or timeout < cur_timeout):
        cur_timeout = timeout
    fds = [node.pfd for node in ctx.aio_handlers if not node.deleted and node.pfd.events]
    return fds, cur_timeout


@tracepoint("qemu-event-loop", args=())
def glib_pollfds_poll() -> None:
    """g_main_context_check + dispatch: dispatch the AioContext source if it has work."""
    ctx = qemu_get_aio_context()
    if async_.aio_ctx_check(ctx):
        async_.aio_ctx_dispatch(ctx, None, None)


@tracepoint("qemu-event-loop", args=("timeout",))
def os_host_main_loop_wait(timeout: int) -> int:
    """Poll with the BQL dropped, then dispatch with it held."""
    fds, timeout = glib_pollfds_fill(timeout)
    bql_unlock()
    ret = qemu_poll_ns(fds, timeout)
    bql_lock(_FILE, 311)
    glib_pollfds_poll()
    return ret


@tracepoint("qemu-event-loop", args=("nonblocking",))
def main_loop_wait(nonblocking: int) -> None:
    """One main-loop iteration: no notifiers, timers or slirp in the model, so just the wait."""
    timeout_ns = 0 if nonblocking else -1
    os_host_main_loop_wait(timeout_ns)
