"""util/async.c (QEMU v10.2.0): the AioContext, bottom halves, and waking coroutines.

Bottom halves changed inside since 1.6.1 (a lock-free list: `aio_bh_enqueue` pushes a BH on `bh_list`
when it becomes pending, `aio_bh_poll` takes the whole list and runs what is scheduled; one-shot BHs free
themselves) and `aio_notify` only kicks the eventfd when a poller has announced itself (`notify_me`,
set by `aio_ctx_prepare` before the main loop sleeps and cleared by `aio_ctx_check` after).

On this path the thread pool's completion is a BH: a worker's `qemu_bh_schedule(pool->completion_bh)` →
`aio_notify` → `event_notifier_set(&ctx->notifier)` wakes the main loop, whose `aio_ctx_dispatch` →
`aio_dispatch` → `aio_bh_poll` runs `thread_pool_completion_bh`. `aio_co_wake(co)` enters the waiting
coroutine there and then, since the main loop's context is the coroutine's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ...qemu.state import qemu_state
from ...trace.tracepoint import tracepoint
from . import aio_posix
from .event_notifier_posix import EventNotifier, event_notifier_init, event_notifier_set, event_notifier_test_and_clear

BH_PENDING, BH_SCHEDULED, BH_ONESHOT, BH_DELETED, BH_IDLE = 1, 2, 4, 8, 16


@dataclass(eq=False)
class QEMUBH:
    ctx: "AioContext"
    cb: Callable[[Any], None]
    opaque: Any
    name: str = ""
    flags: int = 0

    def view(self) -> dict:
        return {"cb": self.name or getattr(self.cb, "__name__", "?"),
                "scheduled": bool(self.flags & BH_SCHEDULED), "oneshot": bool(self.flags & BH_ONESHOT),
                "idle": bool(self.flags & BH_IDLE), "deleted": bool(self.flags & BH_DELETED)}


@dataclass(eq=False)
class AioContext:
    """include/block/aio.h: its pending BHs, fd handlers, notifier, notify_me/notified, thread pool."""

    bh_list: list[QEMUBH] = field(default_factory=list)  # pending BHs, newest first (QSLIST_INSERT_HEAD)
    bh_slice_list: list[list[QEMUBH]] = field(default_factory=list)  # lists taken by running aio_bh_polls
    aio_handlers: list = field(default_factory=list)  # aio_posix.AioHandler, newest first
    walking_handlers: int = 0
    walking_bh: int = 0
    notifier: EventNotifier = field(default_factory=EventNotifier)
    notify_me: int = 0
    notified: bool = False
    thread_pool: Any = None
    scheduled_coroutines: list = field(default_factory=list)
    co_schedule_bh: QEMUBH | None = None
    bhs: list[QEMUBH] = field(default_factory=list)  # model-only: every BH made here (for views)

    def view(self) -> dict:
        return {"bhs": [b.view() for b in self.bhs if not b.flags & BH_DELETED],
                "pending": [b.view() for b in self.bh_list + [b for s in self.bh_slice_list for b in s]],
                "handlers": [h.view() for h in self.aio_handlers], "notify_me": self.notify_me,
                "notified": self.notified, "notifier": self.notifier.view(),
                "thread_pool": self.thread_pool.view() if self.thread_pool is not None else None}


@tracepoint("qemu-event-loop", args=("e",))
def aio_context_notifier_cb(e: EventNotifier) -> None:
    """The handler of the context's own notifier: just clear it (waking the poll was the point)."""
    event_notifier_test_and_clear(e)


def aio_context_new() -> AioContext:
    """A context with its notifier watched by itself and the co_schedule BH."""
    ctx = AioContext()
    event_notifier_init(ctx.notifier, False)
    ctx.notifier.container = ctx
    aio_posix.aio_set_event_notifier(ctx, ctx.notifier, aio_context_notifier_cb)
    ctx.co_schedule_bh = aio_bh_new(ctx, co_schedule_bh_cb, ctx, "co_schedule_bh_cb")
    return ctx


def aio_bh_new(ctx: AioContext, cb: Callable, opaque: Any, name: str = "") -> QEMUBH:
    """aio_bh_new_full: a BH, not pending yet."""
    bh = QEMUBH(ctx, cb, opaque, name or getattr(cb, "__name__", ""))
    ctx.bhs.append(bh)
    return bh


@tracepoint("qemu-event-loop", args=("bh", "new_flags"))
def aio_bh_enqueue(bh: QEMUBH, new_flags: int) -> None:
    """Mark the BH, put it on bh_list if it was not pending, and kick the context (any thread)."""
    ctx = bh.ctx
    old_flags = bh.flags
    bh.flags |= BH_PENDING | new_flags
    if not old_flags & BH_PENDING:
        ctx.bh_list.insert(0, bh)
    aio_notify(ctx)


@tracepoint("qemu-event-loop", args=("ctx", "cb", "opaque", "name"))
def aio_bh_schedule_oneshot_full(ctx: AioContext, cb: Callable, opaque: Any, name: str = "") -> None:
    """A BH that runs once and frees itself."""
    bh = QEMUBH(ctx, cb, opaque, name or getattr(cb, "__name__", ""))
    aio_bh_enqueue(bh, BH_SCHEDULED | BH_ONESHOT)


def aio_bh_schedule_oneshot(ctx: AioContext, cb: Callable, opaque: Any) -> None:
    """The macro: aio_bh_schedule_oneshot_full(ctx, cb, opaque, stringify(cb))."""
    aio_bh_schedule_oneshot_full(ctx, cb, opaque, getattr(cb, "__name__", ""))


@tracepoint("qemu-event-loop", args=("bh",))
def aio_bh_call(bh: QEMUBH) -> None:
    bh.cb(bh.opaque)


@tracepoint("qemu-event-loop", args=("ctx",))
def aio_bh_poll(ctx: AioContext) -> int:
    """Run every BH pending now, in the order aio_bh_dequeue takes them (newest first); BHs that become
    pending meanwhile wait for the next call. The taken list is a *slice* on ctx->bh_slice_list, so an
    aio_poll nested inside a BH (a cancel waiting for its request) runs the rest of the outer slice too.
    Returns 1 if a non-idle BH ran."""
    ctx.bh_slice_list.append(ctx.bh_list)  # QSLIST_MOVE_ATOMIC + QSIMPLEQ_INSERT_TAIL
    ctx.bh_list = []
    ctx.walking_bh += 1
    ret = 0
    try:
        while ctx.bh_slice_list:
            s = ctx.bh_slice_list[0]
            if not s:
                ctx.bh_slice_list.pop(0)
                continue
            bh = s.pop(0)  # aio_bh_dequeue
            flags = bh.flags
            bh.flags &= ~(BH_PENDING | BH_SCHEDULED | BH_IDLE)
            if flags & (BH_SCHEDULED | BH_DELETED) == BH_SCHEDULED:
                if not flags & BH_IDLE:
                    ret = 1
                aio_bh_call(bh)
    finally:
        ctx.walking_bh -= 1
    return ret


@tracepoint("qemu-event-loop", args=("bh",))
def qemu_bh_schedule(bh: QEMUBH) -> None:
    """Make the BH run at the next aio_bh_poll of its context, and kick that context."""
    aio_bh_enqueue(bh, BH_SCHEDULED)


def qemu_bh_cancel(bh: QEMUBH) -> None:
    bh.flags &= ~BH_SCHEDULED


def qemu_bh_delete(bh: QEMUBH) -> None:
    aio_bh_enqueue(bh, BH_DELETED)


@tracepoint("qemu-event-loop", args=("ctx",))
def aio_notify(ctx: AioContext) -> None:
    """Note that there is work (notified) and, if someone polls the context, wake it (eventfd write)."""
    ctx.notified = True
    if ctx.notify_me:
        event_notifier_set(ctx.notifier)


def aio_notify_accept(ctx: AioContext) -> None:
    ctx.notified = False


def aio_compute_timeout(ctx: AioContext) -> int:
    """0 if a non-idle BH is scheduled, 10 ms for an idle one, else -1 (no timers in the model)."""
    timeout = -1
    for bh in ctx.bh_list + [b for s in ctx.bh_slice_list for b in s]:
        if bh.flags & (BH_SCHEDULED | BH_DELETED) == BH_SCHEDULED:
            if bh.flags & BH_IDLE:
                timeout = 10_000_000
            else:
                return 0
    return timeout


@tracepoint("qemu-event-loop", args=("source=ctx",))
def aio_ctx_prepare(ctx: AioContext) -> tuple[bool, int]:
    """GSource prepare: announce the poller (notify_me |= 1), then (ready, timeout in ms)."""
    ctx.notify_me |= 1
    ns = aio_compute_timeout(ctx)
    timeout = -1 if ns < 0 else (ns + 999_999) // 1_000_000
    return timeout == 0, timeout


@tracepoint("qemu-event-loop", args=("source=ctx",))
def aio_ctx_check(ctx: AioContext) -> bool:
    """GSource check, after the poll: stop announcing, accept the notification, and say whether a BH is
    scheduled or a handler's fd is ready."""
    ctx.notify_me &= ~1
    aio_notify_accept(ctx)
    for bh in ctx.bh_list + [b for s in ctx.bh_slice_list for b in s]:
        if bh.flags & (BH_SCHEDULED | BH_DELETED) == BH_SCHEDULED:
            return True
    return aio_posix.aio_pending(ctx)


@tracepoint("qemu-event-loop", args=("source=ctx", "callback", "user_data"))
def aio_ctx_dispatch(ctx: AioContext, callback: Any = None, user_data: Any = None) -> bool:
    """GSource dispatch: aio_dispatch (1.6.1 ran a whole non-blocking aio_poll here)."""
    aio_posix.aio_dispatch(ctx)
    return True


@tracepoint("qemu-event-loop", args=("ctx",))
def aio_get_thread_pool(ctx: AioContext) -> Any:
    """The context's thread pool, created on first use (thread_pool_new_aio)."""
    from .thread_pool import thread_pool_new_aio
    if ctx.thread_pool is None:
        ctx.thread_pool = thread_pool_new_aio(ctx)
    return ctx.thread_pool


# -- coroutines and contexts -------------------------------------------------------------------------------
def qemu_get_current_aio_context() -> AioContext | None:
    """The calling thread's AioContext: its own (the main loop thread's is qemu_aio_context), else the
    main one if it holds the BQL (a vCPU thread in device emulation), else NULL (a pool worker)."""
    from ..system.cpus import bql_locked
    s = qemu_state()
    mine = s.extra.get("my_aiocontext", {}).get(s.sched.current().name)
    if mine is not None:
        return mine
    if bql_locked():
        return s.aio_context
    return None


def qemu_set_current_aio_context(ctx: AioContext) -> None:
    s = qemu_state()
    s.extra.setdefault("my_aiocontext", {})[s.sched.current().name] = ctx


@tracepoint("qemu-event-loop", args=("opaque=ctx",))
def co_schedule_bh_cb(ctx: AioContext) -> None:
    """Enter the coroutines other threads scheduled in this context."""
    from .qemu_coroutine import qemu_aio_coroutine_enter
    todo, ctx.scheduled_coroutines = ctx.scheduled_coroutines, []
    for co in reversed(todo):  # QSLIST_MOVE_ATOMIC then reverse: oldest first
        co.scheduled = None
        qemu_aio_coroutine_enter(ctx, co)


@tracepoint("qemu-event-loop", args=("ctx", "co"))
def aio_co_schedule(ctx: AioContext, co: Any) -> None:
    """Enter `co` later, from `ctx`'s thread."""
    if co.scheduled:
        raise RuntimeError(f"aio_co_schedule: Co-routine was already scheduled in '{co.scheduled}'")
    co.scheduled = "aio_co_schedule"
    ctx.scheduled_coroutines.insert(0, co)
    qemu_bh_schedule(ctx.co_schedule_bh)


@tracepoint("qemu-event-loop", args=("ctx", "co"))
def aio_co_enter(ctx: AioContext, co: Any) -> None:
    """Enter `co` now if `ctx` is ours (queued behind the running coroutine, if any), else schedule it."""
    from .qemu_coroutine import qemu_aio_coroutine_enter, qemu_coroutine_self
    if ctx is not qemu_get_current_aio_context():
        aio_co_schedule(ctx, co)
        return
    self_ = qemu_coroutine_self()
    if self_ is not None:
        if self_ is co:
            raise AssertionError("self != co")
        self_.co_queue_wakeup.append(co)
    else:
        qemu_aio_coroutine_enter(ctx, co)


@tracepoint("qemu-event-loop", args=("co",))
def aio_co_wake(co: Any) -> None:
    """Wake a coroutine that waits for a callback: enter it in the context it last ran in."""
    aio_co_enter(co.ctx, co)
