"""The recorder: every trace point entry and exit, in order, with its thread (Python Tutor's idea: record
the run once, then move through it forwards and backwards).

An event is `(kind, what, thread, depth, payload)` (an `Event`, a named tuple):
kind 0 = enter (what = trace point id, payload = the declared argument values),
kind 1 = leave (payload = the return value when it is a number),
kind 2 = a point event (what = its name, payload = its number/str fields).
`events` stores them as packed integer columns (vmio_edu.trace.events: 8 bytes an event plus the interned
payloads) and reads them back as `Event`s.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Callable

from .events import ENTER, LEAVE, POINT, Event, EventStore
from .tracepoint import REGISTRY, ThreadContext, TracePoint

__all__ = ["ENTER", "LEAVE", "POINT", "Event", "EventStore", "Recorder"]

_SMALL = (int, str, type(None))
# the common all-numbers case, checked with one C call over map(type, args); bools take the slow path, whose
# intern key tells True from 1
_PLAIN = frozenset((int, str, type(None))).issuperset


def _small(v: Any) -> Any:
    """A value worth keeping in the trace: numbers and strings (never a reference to a model object, so a
    recording stays small and does not keep the machine alive)."""
    return v if isinstance(v, _SMALL) else None


class Recorder:
    """Hooks that append every event to `events` (an `EventStore`). Attach to each model thread's context."""

    def __init__(self, events: EventStore | None = None) -> None:
        self.events = EventStore() if events is None else events
        self.on_enter: Callable[[TracePoint, tuple, ThreadContext], None] | None = None
        self._refs: dict = self.events._ids  # payload -> ref (the store's intern table)

    def enter(self, tp: TracePoint, args: tuple, ctx: ThreadContext) -> None:
        if args:
            if not _PLAIN(map(type, args)):  # rare: an object or a bool among the arguments
                args = tuple([_small(a) for a in args])
                ref = self.events.payload_ref(args)
            else:
                ref = self._refs.get(args) or self.events.payload_ref(args)
        else:
            ref = 0
        depth = len(ctx.stack)
        tb = ctx.tbits
        if tb < 0 or depth > 255:
            self.events.append_event((ENTER, tp.id, ctx.name, depth, args))
        else:
            self.events.words.append(tp.bits | tb | depth << 24 | ref << 32)
        if self.on_enter is not None:
            self.on_enter(tp, args, ctx)

    def leave(self, tp: TracePoint, result: Any, ctx: ThreadContext) -> None:
        t = type(result)
        if result is None or (t is not int and t is not str):
            # None, a bool (interned apart from 0 and 1) or an object (kept as None)
            ref = 0 if t is not bool else self.events.payload_ref(result)
        else:
            ref = self._refs.get(result) or self.events.payload_ref(result)
        depth = len(ctx.stack)
        tb = ctx.tbits
        if tb < 0 or depth > 255:
            self.events.append_event((LEAVE, tp.id, ctx.name, depth, _small(result)))
        else:
            self.events.words.append(tp.bits | 1 | tb | depth << 24 | ref << 32)

    def event(self, name: str, layer: str, fields: dict, ctx: ThreadContext) -> None:
        payload = tuple([(k, v) for k, v in fields.items() if isinstance(v, (int, str))])
        self.events.append_event((POINT, name, ctx.name, len(ctx.stack), payload))

    # -- summaries --------------------------------------------------------------------------------
    def stages(self) -> list[tuple[str, str, str]]:
        """(layer, thread, function) of every entry, in order."""
        return [(REGISTRY[e.what].layer, e.thread, REGISTRY[e.what].name) for e in self.events
                if e.kind == ENTER]

    def per_layer_thread(self) -> Counter:
        return Counter((layer, thread) for layer, thread, _ in self.stages())

    def function_counts(self) -> Counter:
        return Counter((layer, thread, fn) for layer, thread, fn in self.stages())

    def fingerprint(self) -> list[tuple]:
        """The trace with names instead of ids: equal for equal runs (ids depend on import order)."""
        out = []
        for kind, what, thread, depth, payload in self.events:
            name = REGISTRY[what].name if kind != POINT else what  # (point names are names already)
            out.append((kind, name, thread, depth, payload))
        return out
