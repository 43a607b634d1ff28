"""The recorded trace, stored as packed integer columns (one 64-bit word per event), read as `Event`s.

A recording of a 256-sector run has millions of events; a Python tuple per event costs ~114 bytes. Here
an event is one machine word in an `array('Q')` (rr and perf keep their traces as packed records too):

    bits  0-1   kind (0 enter, 1 leave, 2 point event, 3 "wide": kept whole in a side table)
    bits  2-15  what: the trace point id (enter/leave) or the interned point-event name
    bits 16-23  the interned thread name
    bits 24-31  depth (frames on the thread's stack)
    bits 32-63  payload reference: 0 is None (leave) or () (enter, point); otherwise an index into this
                trace's payload table, where equal payloads are stored once (interned)

Payloads are only small values (numbers, strings, None: the recorder never keeps a reference to a model
object), and most repeat (`()`, `None`, `False`, the same port numbers), so interning keeps them at a
few bytes per event. (The recorder looks a payload up before it looks at its types, which is what makes
recording cheap; the price is that an argument tuple equal to one seen before is stored as that one:
`(7, False)` after `(7, 0)` reads back as `(7, 0)`, equal as Python compares. Lone results keep their
type: False, True, 0 and 1 read back as they were.) An event that does not fit the bits (a 300-deep stack, a 257th thread name) is kept
whole in a side table: rare, and still read the same way.

Readers see a sequence of `Event(kind, what, thread, depth, payload)`: `len()`, `[i]`, slices, iteration.
`Event` is a named tuple, so `e[0]`, `e[:4]` and unpacking work as before.
"""
from __future__ import annotations

from array import array
from typing import Any, Callable, Iterator, NamedTuple, Sequence

ENTER, LEAVE, POINT, _WIDE = 0, 1, 2, 3
# A position that was counted, not recorded (a debugger's `cont` records little: see
# vmio_edu.trace.debugger). Reading one asks the store's `filler` to replay the run and fill it in.
HOLE = _WIDE | 0x3FFF << 2


class Event(NamedTuple):
    """One recorded event. kind: 0 enter, 1 leave, 2 point event; what: the trace point id (enter, leave)
    or the point event's name; thread: the model thread's name; depth: frames on its stack; payload: the
    declared argument values (enter), the return value (leave) or the (name, value) fields (point)."""

    kind: int
    what: Any
    thread: str
    depth: int
    payload: Any


_new = tuple.__new__  # Event(...) without the named tuple's Python-level __new__

# Process-wide interning of names (few: a dozen thread names, a few dozen point-event names). Payloads are
# interned per trace, so a trace's memory goes with it.
THREADS: list[str] = []
_THREAD_BITS: dict[str, int] = {}
POINT_NAMES: list[str] = []
_POINT_BITS: dict[str, int] = {}
_BOOL = object()  # tags the intern key of a payload with a bool in it: (1,) and (True,) are equal in Python


def thread_bits(name: str) -> int:
    """The thread-name field of a word (bits 16-23) for `name`, or -1 when the table is full."""
    b = _THREAD_BITS.get(name)
    if b is None:
        if len(THREADS) >= 256:
            return -1
        b = _THREAD_BITS[name] = len(THREADS) << 16
        THREADS.append(name)
    return b


def point_bits(name: str) -> int:
    """The what field (bits 2-15) of a point event called `name`, or -1 when the table is full."""
    b = _POINT_BITS.get(name)
    if b is None:
        if len(POINT_NAMES) >= 1 << 14:
            return -1
        b = _POINT_BITS[name] = len(POINT_NAMES) << 2
        POINT_NAMES.append(name)
    return b


def _key(payload: Any) -> Any:
    """The intern key of a payload: itself, except a lone bool (True == 1 in Python, but a result True
    must not read back as 1). Tuples are keys as they are (see the module docstring)."""
    return (_BOOL, payload) if type(payload) is bool else payload


class EventStore(Sequence):
    """The columns of one trace (see the module docstring). Appending is the recorder's job
    (`append_word`, `payload_ref`, `append_event`); everything else reads `Event`s."""

    __slots__ = ("words", "_payloads", "_ids", "_wide", "filler", "unfilled")

    def __init__(self, share: "EventStore | None" = None) -> None:
        """`share`: another store whose payload table this one uses too (the debugger's trace and its
        history: their words are then equal for equal events)."""
        self.words = array("Q")
        # ref 0: the empty payload; 1 and 2: False and True (the results of many predicates)
        self._payloads: list[Any] = [None, False, True] if share is None else share._payloads
        self._ids: dict[Any, int] = {_key(False): 1, _key(True): 2} if share is None else share._ids
        self._wide: dict[int, Event] = {}
        self.filler: Callable[[], None] | None = None  # fills the HOLEs in (a recording replay)
        self.unfilled = False  # may hold HOLEs

    # -- writing -------------------------------------------------------------------------------------------
    def payload_ref(self, payload: Any) -> int:
        """The reference (bits 32-63) of a payload, interned. Empty payloads (None, ()) are 0."""
        key = _key(payload)
        ref = self._ids.get(key)
        if ref is None:
            ref = self._ids[key] = len(self._payloads)
            self._payloads.append(payload)
        return ref

    def _encode(self, e: Event | tuple, i: int) -> int:
        """The word of event `e` at position i (an event too big for one is kept in the side table)."""
        kind, what, thread, depth, payload = e
        tb = thread_bits(thread)
        wb = point_bits(what) if kind == POINT else (what << 2 if isinstance(what, int) and 0 <= what < 1 << 14
                                                     else -1)
        if tb < 0 or wb < 0 or not 0 <= depth < 256 or kind not in (ENTER, LEAVE, POINT):
            self._wide[i] = Event(*e)
            return _WIDE
        self._wide.pop(i, None)
        ref = 0 if payload is None or payload == () else self.payload_ref(payload)
        return kind | wb | tb | depth << 24 | ref << 32

    def append_event(self, e: Event | tuple) -> None:
        """Append an event given whole (the slow path, and events copied from another trace)."""
        self.words.append(self._encode(e, len(self.words)))

    def put(self, i: int, e: Event | tuple) -> None:
        """Write event `e` at position i (filling a HOLE)."""
        self.words[i] = self._encode(e, i)

    def fill(self) -> None:
        """Replace the HOLEs by the events they stand for (see HOLE)."""
        if self.unfilled and self.filler is not None:
            self.filler()
            if HOLE in self.words:
                from ..errors import VmioError
                raise VmioError("the replay that fills the trace in did not reach its end")
        self.unfilled = False

    def truncate(self, n: int) -> None:
        """Keep the first `n` events."""
        if n < len(self.words):
            del self.words[n:]
            if self._wide:
                for i in [i for i in self._wide if i >= n]:
                    del self._wide[i]

    def extend_from(self, other: "EventStore", start: int, stop: int) -> None:
        """Append `other[start:stop]` (a store sharing this one's payload table), word by word (HOLEs
        too)."""
        self.unfilled = self.unfilled or other.unfilled
        if other._payloads is not self._payloads:
            self.extend(other[start:stop])
            return
        base = len(self.words) - start
        self.words.extend(other.words[start:stop])
        for i, e in other._wide.items():
            if start <= i < stop:
                self._wide[base + i] = e

    def clear(self) -> None:
        self.words = array("Q")
        del self._payloads[3:]
        self._ids.clear()  # (in place: the recorder holds this table)
        self._ids.update({_key(False): 1, _key(True): 2})
        self._wide.clear()

    # -- reading -------------------------------------------------------------------------------------------
    def decode(self, i: int, w: int) -> Event:
        kind = w & 3
        if kind == _WIDE:
            if w == HOLE:
                self.unfilled = True
                self.fill()
                w = self.words[i]
                if w & 3 != _WIDE:
                    return self.decode(i, w)
            return self._wide[i]
        ref = w >> 32
        if ref:
            payload = self._payloads[ref]
        else:
            payload = None if kind == LEAVE else ()
        what = (w >> 2) & 0x3FFF
        return _new(Event, (kind, POINT_NAMES[what] if kind == POINT else what, THREADS[(w >> 16) & 0xFF],
                            (w >> 24) & 0xFF, payload))

    def __len__(self) -> int:
        return len(self.words)

    def __getitem__(self, i: int | slice) -> Any:
        words = self.words
        if isinstance(i, slice):
            if self.unfilled:
                self.fill()
            start, stop, step = i.indices(len(words))
            return [self.decode(j, words[j]) for j in range(start, stop, step)]
        if i < 0:
            i += len(words)
        return self.decode(i, words[i])

    def __iter__(self) -> Iterator[Event]:
        # (decode, inlined: a timeline or an export reads every event)
        if self.unfilled:
            self.fill()
        payloads, wide, threads, names = self._payloads, self._wide, THREADS, POINT_NAMES
        for i, w in enumerate(self.words):
            kind = w & 3
            if kind == _WIDE:
                yield wide[i]
                continue
            ref = w >> 32
            what = (w >> 2) & 0x3FFF
            yield _new(Event, (kind, names[what] if kind == POINT else what, threads[(w >> 16) & 0xFF],
                               (w >> 24) & 0xFF, payloads[ref] if ref else (None if kind == LEAVE else ())))

    def recorded(self) -> Iterator[tuple[int, Event]]:
        """(index, event) of every event recorded so far, in order, skipping those only counted (HOLEs)
        and without filling them in: for readers that need only events the debugger always records
        (the host reads' and writes' exits: see `Debugger._arm`), such as the halt's summary."""
        for i, w in enumerate(self.words):
            if w != HOLE:
                yield i, self.decode(i, w)

    def entries(self) -> Iterator[tuple[int, int, str]]:
        """(index, trace point id, thread) of every entry, in order, without building the events (the
        timeline's overview reads only these)."""
        if self.unfilled:
            self.fill()
        threads = THREADS
        for i, w in enumerate(self.words):
            k = w & 3
            if k == ENTER:
                yield i, (w >> 2) & 0x3FFF, threads[(w >> 16) & 0xFF]
            elif k == _WIDE and self._wide[i].kind == ENTER:
                e = self._wide[i]
                yield i, e.what, e.thread

    def __delitem__(self, i: slice) -> None:
        if not isinstance(i, slice) or i.step not in (None, 1) or (i.stop is not None and i.stop < len(self)):
            raise TypeError("a trace can only be cut at the end: del events[n:]")
        self.truncate(i.indices(len(self.words))[0])

    def append(self, e: Event | tuple) -> None:
        self.append_event(e)

    def extend(self, events: Any) -> None:
        for e in events:
            self.append_event(e)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EventStore):
            return list(self) == list(other)
        if isinstance(other, (list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<EventStore: {len(self)} events>"
