"""util/qemu-coroutine.c (QEMU v10.2.0): coroutines.

The mechanism is 1.6.1's (vmio_edu.qemu.qemu_coroutine explains how a coroutine_fn is a Python
generator and how the coroutine's own shadow stack is swapped in while it runs); the API changed:

* `qemu_coroutine_create(entry, opaque)` takes the entry's argument at creation (1.6.1 passed it to
  the first enter), and a coroutine remembers the AioContext it runs in (`co->ctx`);
* `qemu_coroutine_enter(co)` is `qemu_aio_coroutine_enter(qemu_get_current_aio_context(), co)`, which also
  runs the coroutines that `co` woke while it ran (`co_queue_wakeup`), depth first;
* waking is `aio_co_wake(co)` / `aio_co_enter(ctx, co)` (util/async.c): enter now if `ctx` is the
  caller's, else schedule it there.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Generator

from ...qemu import qemu_coroutine as _co161
from ...qemu.qemu_coroutine import CO_CREATED, CO_RUNNING, CO_TERMINATED, CO_YIELDED  # noqa: F401
from ...trace.tracepoint import current_context, tracepoint


@dataclass(eq=False)
class Coroutine(_co161.Coroutine):
    """A coroutine (10.2): its entry argument, its AioContext and the coroutines it woke."""

    entry_arg: Any = None
    ctx: Any = None
    co_queue_wakeup: list = field(default_factory=list)
    scheduled: str | None = None


_tls = threading.local()


def qemu_coroutine_self() -> Coroutine | None:
    return getattr(_tls, "current", None)


def qemu_in_coroutine() -> bool:
    return qemu_coroutine_self() is not None


@tracepoint("qemu-block", args=("entry", "opaque"))
def qemu_coroutine_create(entry: Callable[[Any], Generator], opaque: Any) -> Coroutine:
    """A coroutine that will start at `entry(opaque)` when first entered."""
    co = Coroutine(entry, entry_arg=opaque)
    table = _co161._table()
    if table is not None:
        table.created += 1
        co.id = table.created
        table.live.append(co)
    return co


def _switch(co: Coroutine) -> bool:
    """qemu_coroutine_switch into `co` until it yields (False) or terminates (True)."""
    ctx = current_context()
    thread = ctx.name if ctx is not None else None
    co.state, co.thread = CO_RUNNING, thread
    co.history.append(("enter", thread))
    saved = None
    if ctx is not None:
        saved, ctx.stack = ctx.stack, co.stack
    prev = qemu_coroutine_self()
    _tls.current = co
    try:
        if co.gen is None:
            co.gen = co.entry(co.entry_arg)  # coroutine_trampoline: co->entry(co->entry_arg)
        co.gen.send(None)
    except StopIteration:
        _co161._terminate(co, thread)
        return True
    except BaseException:
        _co161._terminate(co, thread)
        raise
    finally:
        _tls.current = prev
        if ctx is not None:
            ctx.stack = saved
    co.state = CO_YIELDED
    co.history.append(("yield", thread))
    return False


@tracepoint("qemu-block", args=("ctx", "co"))
def qemu_aio_coroutine_enter(ctx: Any, co: Coroutine) -> None:
    """Run `co` in `ctx` until it yields or ends, then the coroutines it woke meanwhile (depth first)."""
    pending = [co]
    from_ = qemu_coroutine_self()
    while pending:
        to = pending.pop(0)
        if to.scheduled:
            raise RuntimeError(f"qemu_aio_coroutine_enter: Co-routine was already scheduled in '{to.scheduled}'")
        if to.caller is not None:
            raise RuntimeError("Co-routine re-entered recursively")
        to.caller = from_ if from_ is not None else "thread"
        to.ctx = ctx
        try:
            _switch(to)
        finally:
            to.caller = None
        pending[0:0] = to.co_queue_wakeup  # QSIMPLEQ_PREPEND: queued coroutines run first
        to.co_queue_wakeup = []


@tracepoint("qemu-block", args=("co",))
def qemu_coroutine_enter(co: Coroutine) -> None:
    from .async_ import qemu_get_current_aio_context
    qemu_aio_coroutine_enter(qemu_get_current_aio_context(), co)


@tracepoint("qemu-block", args=())
def qemu_coroutine_yield() -> Generator[None, None, None]:
    """Switch back to whoever entered this coroutine; `yield from qemu_coroutine_yield()` returns when
    it is entered again."""
    if qemu_coroutine_self() is None:
        raise RuntimeError("Co-routine is yielding to no one")
    yield
