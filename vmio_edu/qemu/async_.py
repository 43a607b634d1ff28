"""async.c (QEMU v1.6.1): the AioContext, bottom halves (BHs) and the AioContext's glib source.

A bottom half is a callback that a thread asks the main loop to run soon: `qemu_bh_schedule(bh)` marks it
and kicks the main loop (`aio_notify`, a real eventfd write); the next `aio_bh_poll` on the main-loop thread
runs it. The block layer uses two on this path: the thread pool's `spawn_thread_bh_fn` (so the main loop,
not the vCPU, creates a pool worker) and `bdrv_co_em_bh` (which calls the device's completion callback).

The AioContext is also a glib GSource: `aio_ctx_prepare` tells the poll not to sleep when a BH is pending,
`aio_ctx_check` says whether to dispatch, and `aio_ctx_dispatch` runs `aio_poll(ctx, false)`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..trace.tracepoint import tracepoint
from . import aio_posix
from .util.event_notifier_posix import (EventNotifier, event_notifier_init, event_notifier_set,
                                        event_notifier_test_and_clear)


@dataclass
class QEMUBH:
    ctx: "AioContext"
    cb: Callable[[Any], None]
    opaque: Any
    scheduled: bool = False
    idle: bool = False
    deleted: bool = False

    def view(self) -> dict:
        return {"cb": self.cb.__name__, "scheduled": self.scheduled, "idle": self.idle, "deleted": self.deleted}


@dataclass
class AioContext:
    """include/block/aio.h AioContext: its BHs, its fd handlers, its notifier and its thread pool."""

    first_bh: list[QEMUBH] = field(default_factory=list)  # newest first, as QEMU links new BHs at the head
    walking_bh: int = 0
    aio_handlers: list = field(default_factory=list)  # aio_posix.AioHandler, newest first
    walking_handlers: int = 0
    notifier: EventNotifier = field(default_factory=EventNotifier)  # aio_notify's eventfd
    thread_pool: Any = None  # thread_pool.ThreadPool, made on first use

    def view(self) -> dict:
        return {
            "bhs": [b.view() for b in self.first_bh],
            "handlers": [h.view() for h in self.aio_handlers],
            "notifier": self.notifier.view(),
            "thread_pool": self.thread_pool.view() if self.thread_pool is not None else None,
        }


def aio_context_new() -> AioContext:
    """A new context with its own notifier registered, so aio_notify can wake a poll on it."""
    ctx = AioContext()
    event_notifier_init(ctx.notifier, False)
    ctx.notifier.container = ctx
    aio_posix.aio_set_event_notifier(ctx, ctx.notifier, event_notifier_test_and_clear)
    return ctx


def aio_bh_new(ctx: AioContext, cb: Callable[[Any], None], opaque: Any) -> QEMUBH:
    bh = QEMUBH(ctx, cb, opaque)
    ctx.first_bh.insert(0, bh)
    return bh


@tracepoint("qemu-event-loop", args=("ctx",))
def aio_bh_poll(ctx: AioContext) -> int:
    """Run every scheduled BH once (BHs added while walking wait for the next pass), then free deleted
    ones. Returns 1 if a non-idle BH ran (that counts as progress)."""
    ctx.walking_bh += 1
    ret = 0
    for bh in list(ctx.first_bh):
        if not bh.deleted and bh.scheduled:
            bh.scheduled = False
            if not bh.idle:
                ret = 1
            bh.idle = False
            bh.cb(bh.opaque)
    ctx.walking_bh -= 1
    if not ctx.walking_bh:
        ctx.first_bh = [bh for bh in ctx.first_bh if not bh.deleted]
    return ret


@tracepoint("qemu-event-loop", args=("bh",))
def qemu_bh_schedule(bh: QEMUBH) -> None:
    """Mark the BH to run at the next aio_bh_poll and kick the context's poll."""
    if bh.scheduled:
        return
    bh.idle = False
    bh.scheduled = True
    aio_notify(bh.ctx)


def qemu_bh_cancel(bh: QEMUBH) -> None:
    bh.scheduled = False


def qemu_bh_delete(bh: QEMUBH) -> None:
    """Freed by the next aio_bh_poll (it may be running right now)."""
    bh.scheduled = False
    bh.deleted = True


@tracepoint("qemu-event-loop", args=("ctx",))
def aio_notify(ctx: AioContext) -> None:
    """Wake the thread polling this context: set its event notifier."""
    event_notifier_set(ctx.notifier)


def aio_ctx_prepare(ctx: AioContext) -> tuple[bool, int]:
    """GSource prepare: (ready, timeout). A scheduled non-idle BH means 'dispatch now, don't sleep';
    an idle BH caps the sleep at 10 ms; otherwise the poll may sleep (-1)."""
    timeout = -1
    for bh in ctx.first_bh:
        if not bh.deleted and bh.scheduled:
            if bh.idle:
                timeout = 10
            else:
                return True, 0
    return False, timeout


def aio_ctx_check(ctx: AioContext) -> bool:
    """GSource check, after the poll: dispatch if a BH is scheduled or a handler's fd is ready."""
    if any(not bh.deleted and bh.scheduled for bh in ctx.first_bh):
        return True
    return aio_posix.aio_pending(ctx)


@tracepoint("qemu-event-loop", args=("source=ctx",))
def aio_ctx_dispatch(ctx: AioContext) -> bool:
    """GSource dispatch: one non-blocking aio_poll (BHs, then ready fd handlers)."""
    aio_posix.aio_poll(ctx, False)
    return True


@tracepoint("qemu-event-loop", args=("ctx",))
def aio_get_thread_pool(ctx: AioContext) -> Any:
    """The context's thread pool, created on first use."""
    from .thread_pool import thread_pool_new

    if ctx.thread_pool is None:
        ctx.thread_pool = thread_pool_new(ctx)
    return ctx.thread_pool
