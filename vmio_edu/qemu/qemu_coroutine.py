"""qemu-coroutine.c (QEMU v1.6.1): coroutines, the block layer's way to write asynchronous code
as if it were sequential.

`bdrv_aio_writev` creates a coroutine on `bdrv_co_do_rw` and enters it at once, on the vCPU thread. Deep
inside, `bdrv_co_io_em` submits the request to the thread pool and calls `qemu_coroutine_yield()`: the
coroutine stops, with its whole call stack kept, and control returns to whoever entered it (so the vCPU
goes back to the guest). When the pwrite is done, the main loop's completion callback calls
`qemu_coroutine_enter` again, and the coroutine resumes *on the main-loop thread* right after the yield.

In QEMU a coroutine is a separate machine stack (ucontext/sigaltstack) and enter/yield swap stacks. In
vmio-edu, `coroutine_fn` code is Python generator functions: a nested coroutine_fn call is
`yield from f(...)`, and a yield is `yield from qemu_coroutine_yield()`. The coroutine also has its own
shadow stack of trace frames: `qemu_coroutine_enter` swaps it in for as long as it runs, so a backtrace
taken inside shows the coroutine's frames, ending at its entry function, as gdb shows for QEMU.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Generator

from ..trace.tracepoint import Frame, current_context, tracepoint

CO_CREATED, CO_RUNNING, CO_YIELDED, CO_TERMINATED = "created", "running", "yielded", "terminated"
TERMINATED_KEPT = 16  # how many finished coroutines the view remembers


@dataclass
class Coroutine:
    entry: Callable[[Any], Generator]
    id: int = 0  # model-only, for views
    state: str = CO_CREATED
    caller: "Coroutine | str | None" = None  # who entered it and gets control back on yield
    stack: list[Frame] = field(default_factory=list)  # its own shadow stack
    thread: str | None = None  # the thread it runs on, or last ran on
    history: list[tuple[str, str]] = field(default_factory=list)  # ("enter"|"yield"|"terminate", thread)
    gen: Generator | None = field(default=None, repr=False)  # the running generator (its machine stack)

    def view(self) -> dict:
        return {"id": self.id, "entry": getattr(self.entry, "__name__", "?"), "state": self.state,
                "thread": self.thread, "history": [list(h) for h in self.history],
                "stack": [f.tp.name for f in reversed(self.stack)]}


@dataclass
class CoroutineTable:
    """Model-only: this machine's coroutines, for views (QEMU keeps no such list)."""

    live: list[Coroutine] = field(default_factory=list)
    terminated: list[Coroutine] = field(default_factory=list)
    created: int = 0

    def view(self) -> dict:
        return {"created": self.created, "live": [c.view() for c in self.live],
                "terminated": [c.view() for c in self.terminated]}


_tls = threading.local()  # the coroutine running on this thread (QEMU's per-thread `current`)


def _table() -> CoroutineTable | None:
    ctx = current_context()
    if ctx is None or ctx.machine is None:
        return None
    return ctx.machine.extra.setdefault("coroutines", CoroutineTable())


def coroutines_view(state: Any) -> dict:
    """The coroutines of a machine (a QemuState), as plain data."""
    table = state.extra.get("coroutines")
    return table.view() if table is not None else CoroutineTable().view()


def qemu_coroutine_self() -> Coroutine | None:
    """The coroutine running on this thread, or None outside any (QEMU returns the thread's leader)."""
    return getattr(_tls, "current", None)


def qemu_in_coroutine() -> bool:
    return qemu_coroutine_self() is not None


@tracepoint("qemu-block", args=("entry",))
def qemu_coroutine_create(entry: Callable[[Any], Generator]) -> Coroutine:
    """A new coroutine that will start at `entry(opaque)` when first entered."""
    co = Coroutine(entry)
    table = _table()
    if table is not None:
        table.created += 1
        co.id = table.created
        table.live.append(co)
    return co


@tracepoint("qemu-block", args=("co", "opaque"))
def qemu_coroutine_enter(co: Coroutine, opaque: Any = None) -> None:
    """Switch into `co` on the calling thread until it yields or returns, then come back here.

    The first enter starts `entry(opaque)`; later ones resume after the qemu_coroutine_yield.
    """
    self_ = qemu_coroutine_self()
    if co.caller is not None:
        raise RuntimeError(f"Co-routine {co.id} re-entered recursively")
    ctx = current_context()
    thread = ctx.name if ctx is not None else None
    co.caller = self_ if self_ is not None else (thread or "?")
    co.state, co.thread = CO_RUNNING, thread
    co.history.append(("enter", thread))
    saved = None
    if ctx is not None:
        saved, ctx.stack = ctx.stack, co.stack  # coroutine_swap: run on the coroutine's own stack
    _tls.current = co
    try:
        if co.gen is None:
            co.gen = co.entry(opaque)
        co.gen.send(None)
    except StopIteration:
        _terminate(co, thread)
    except BaseException:
        _terminate(co, thread)
        raise
    else:
        co.state = CO_YIELDED
        co.history.append(("yield", thread))
    finally:
        _tls.current = self_
        co.caller = None
        if ctx is not None:
            ctx.stack = saved


def _terminate(co: Coroutine, thread: str | None) -> None:
    co.state, co.gen = CO_TERMINATED, None
    co.history.append(("terminate", thread))
    table = _table()
    if table is not None and co in table.live:
        table.live.remove(co)
        table.terminated = (table.terminated + [co])[-TERMINATED_KEPT:]


@tracepoint("qemu-block", args=())
def qemu_coroutine_yield() -> Generator[None, None, None]:
    """Stop the running coroutine and switch back to whoever entered it. Used as
    `yield from qemu_coroutine_yield()`; it returns when someone enters the coroutine again."""
    if qemu_coroutine_self() is None:
        raise RuntimeError("Co-routine is yielding to no one")
    yield
