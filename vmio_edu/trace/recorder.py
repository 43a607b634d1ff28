"""The recorder: every trace point entry and exit, in order, with its thread (Python Tutor's idea: record
the run once, then move through it forwards and backwards).

An event is a small tuple `(kind, what, thread, depth, payload)`:
kind 0 = enter (what = trace point id, payload = the declared argument values),
kind 1 = leave (payload = the return value when it is a number),
kind 2 = a point event (what = its name, payload = its number/str fields).
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Callable

from .tracepoint import REGISTRY, ThreadContext, TracePoint

ENTER, LEAVE, POINT = 0, 1, 2


_SMALL = (int, str, type(None))
_SMALL_EXACT = frozenset((int, str, bool, type(None)))
_all_small = _SMALL_EXACT.issuperset  # over map(type, args): one C call for the common all-numbers case


def _small(v: Any) -> Any:
    """A value worth keeping in the trace: numbers and strings (never a reference to a model object, so a
    recording stays small and does not keep the machine alive)."""
    return v if isinstance(v, _SMALL) else None


class Recorder:
    """Hooks that append every event to `events`. Attach to each model thread's context."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.on_enter: Callable[[TracePoint, tuple, ThreadContext], None] | None = None

    def enter(self, tp: TracePoint, args: tuple, ctx: ThreadContext) -> None:
        if not _all_small(map(type, args)):  # rare (0.2% of entries): an object among the arguments
            args = tuple([_small(a) for a in args])
        self.events.append((ENTER, tp.id, ctx.name, len(ctx.stack), args))
        if self.on_enter is not None:
            self.on_enter(tp, args, ctx)

    def leave(self, tp: TracePoint, result: Any, ctx: ThreadContext) -> None:
        self.events.append((LEAVE, tp.id, ctx.name, len(ctx.stack), _small(result)))

    def event(self, name: str, layer: str, fields: dict, ctx: ThreadContext) -> None:
        payload = tuple([(k, v) for k, v in fields.items() if isinstance(v, (int, str))])
        self.events.append((POINT, name, ctx.name, len(ctx.stack), payload))

    # -- summaries --------------------------------------------------------------------------------
    def stages(self) -> list[tuple[str, str, str]]:
        """(layer, thread, function) of every entry, in order."""
        return [(REGISTRY[e[1]].layer, e[2], REGISTRY[e[1]].name) for e in self.events if e[0] == ENTER]

    def per_layer_thread(self) -> Counter:
        return Counter((layer, thread) for layer, thread, _ in self.stages())

    def function_counts(self) -> Counter:
        return Counter((layer, thread, fn) for layer, thread, fn in self.stages())

    def fingerprint(self) -> list[tuple]:
        """The trace with names instead of ids: equal for equal runs (ids depend on import order)."""
        out = []
        for kind, what, thread, depth, payload in self.events:
            name = REGISTRY[what].name if kind != POINT else what
            out.append((kind, name, thread, depth, payload))
        return out
