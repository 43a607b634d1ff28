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

from .events import _POINT_BITS, ENTER, LEAVE, POINT, Event, EventStore
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


def _kept(args: tuple) -> tuple:
    return args if _PLAIN(map(type, args)) else tuple([_small(a) for a in args])


def _args_ref(rec: "Recorder", args: tuple) -> int:
    """The payload reference of an entry's arguments. Looked up first: most argument tuples were seen
    before, and a hit needs no look at the types (only plain values are ever interned under themselves)."""
    if not args:
        return 0
    try:
        ref = rec._refs.get(args)
    except (TypeError, ValueError):  # an unhashable argument (a list, a bytearray, a writable memoryview)
        ref = None
    if ref is None:
        ref = rec.events.payload_ref(_kept(args))
    return ref


def _unhashable_ref(rec: "Recorder", tp: TracePoint, args: tuple) -> int:
    """The payload reference of arguments whose look-up raised (an unhashable model object among them: a
    dataclass, a writable memoryview). Remembers their types for `tp`, so the next call with the same
    types skips the look-up that would raise again: an exception costs about a microsecond, and since the
    trace points carry every real parameter most of them pass such an object (`s`, `vcpu`, `opaque`)."""
    rec._unhashable[tp.id] = tuple(map(type, args))
    return rec.events.payload_ref(_kept(args))


def _shape_ref(rec: "Recorder", args: tuple) -> int:
    """The payload reference of arguments of a shape `_unhashable_ref` remembered: what a look-up of
    `args` would give (it cannot hit: an unhashable object, or a container of the same type, never
    equals a kept number or string), without raising."""
    kept = tuple([a if isinstance(a, _SMALL) else None for a in args])
    return rec._refs.get(kept) or rec.events.payload_ref(kept)


def _result_ref(rec: "Recorder", result: Any) -> int:
    """The payload reference of a return value: None (or an object) 0, False 1, True 2, else interned."""
    if result is None:
        return 0
    t = type(result)
    if t is int or t is str:
        return rec._refs.get(result) or rec.events.payload_ref(result)
    if t is bool:
        return 1 + result
    return rec.events.payload_ref(result) if isinstance(result, (int, str)) else 0


class Recorder:
    """Hooks that append every event to `events` (an `EventStore`). Attach to each model thread's context."""

    def __init__(self, events: EventStore | None = None) -> None:
        self.events = EventStore() if events is None else events
        self.on_enter: Callable[[TracePoint, tuple, ThreadContext], None] | None = None
        self._refs: dict = self.events._ids  # payload -> ref (the store's intern table)
        # trace point id -> the argument types whose look-up raised last time (see _unhashable_ref)
        self._unhashable: dict[int, tuple] = {}

    def enter(self, tp: TracePoint, args: tuple, ctx: ThreadContext) -> None:
        # (_args_ref inlined for the common case: this runs for every traced call)
        if args:
            shape = self._unhashable.get(tp.id)
            if shape is not None and shape == tuple(map(type, args)):
                ref = _shape_ref(self, args)
            else:
                try:
                    ref = self._refs.get(args) or _args_ref(self, args)
                except (TypeError, ValueError):  # unhashable (a writable memoryview raises ValueError)
                    ref = _unhashable_ref(self, tp, args)
        else:
            ref = 0
        depth = len(ctx.stack)
        tb = ctx.tbits
        if tb < 0 or depth > 255:
            self.events.append_event((ENTER, tp.id, ctx.name, depth, _kept(args)))
        else:
            self.events.words.append(tp.bits | tb | depth << 24 | ref << 32)
        if self.on_enter is not None:
            self.on_enter(tp, args, ctx)

    def leave(self, tp: TracePoint, result: Any, ctx: ThreadContext) -> None:
        # (_result_ref inlined for the common cases)
        if result is None:
            ref = 0
        else:
            t = type(result)
            if t is int or t is str:
                ref = self._refs.get(result) or _result_ref(self, result)
            elif t is bool:
                ref = 1 + result
            else:
                ref = _result_ref(self, result)
        depth = len(ctx.stack)
        tb = ctx.tbits
        if tb < 0 or depth > 255:
            self.events.append_event((LEAVE, tp.id, ctx.name, depth, _small(result)))
        else:
            self.events.words.append(tp.bits | 1 | tb | depth << 24 | ref << 32)

    def event(self, name: str, layer: str, fields: dict, ctx: ThreadContext) -> None:
        payload = tuple([(k, v) for k, v in fields.items() if isinstance(v, (int, str))])
        ref = (self._refs.get(payload) or self.events.payload_ref(payload)) if payload else 0
        depth = len(ctx.stack)
        tb, wb = ctx.tbits, _POINT_BITS.get(name)
        if wb is None or tb < 0 or depth > 255:
            self.events.append_event((POINT, name, ctx.name, depth, payload))
        else:
            self.events.words.append(POINT | wb | tb | depth << 24 | ref << 32)

    # -- summaries --------------------------------------------------------------------------------
    def stages(self) -> list[tuple[str, str, str]]:
        """(layer, thread, function) of every entry, in order."""
        reg = REGISTRY
        return [(reg[what].layer, thread, reg[what].name) for _, what, thread in self.events.entries()]

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
