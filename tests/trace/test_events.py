"""The columnar trace (vmio_edu.trace.events): what goes in comes out as the same events."""
from __future__ import annotations

import pytest

from vmio_edu.trace.events import ENTER, LEAVE, POINT, Event, EventStore
from vmio_edu.trace.recorder import Recorder
from vmio_edu.trace.tracepoint import ThreadContext, TracePoint

EVENTS = [
    (ENTER, 5, "CPU 0/KVM", 3, (0x1F0, 2, "x")),
    (LEAVE, 5, "CPU 0/KVM", 3, 512),
    (LEAVE, 6, "main", 1, None),
    (ENTER, 7, "worker-1", 0, ()),
    (POINT, "kvm_run_exit", "CPU 0/KVM", 4, (("reason", 2), ("rip", 0x1234))),
    (POINT, "empty", "main", 0, ()),
    (LEAVE, 6, "main", 1, "a string"),
    (LEAVE, 6, "main", 1, -95),
    (LEAVE, 6, "main", 1, 1 << 70),
]


def test_round_trip_with_named_fields():
    s = EventStore()
    for e in EVENTS:
        s.append(e)
    assert len(s) == len(EVENTS)
    assert list(s) == EVENTS and s[:] == EVENTS and s[2:5] == EVENTS[2:5] and s[-1] == EVENTS[-1]
    e = s[0]
    assert isinstance(e, Event) and isinstance(e, tuple)
    assert (e.kind, e.what, e.thread, e.depth, e.payload) == EVENTS[0] and e[:4] == EVENTS[0][:4]
    assert s[4].what == "kvm_run_exit" and s[4].payload == (("reason", 2), ("rip", 0x1234))


def test_results_keep_their_type():
    s = EventStore()
    for v in (0, False, 1, True, None):
        s.append((LEAVE, 1, "main", 0, v))
    got = [e.payload for e in s]
    assert got == [0, False, 1, True, None]
    assert [type(v) for v in got] == [int, bool, int, bool, type(None)]


def test_events_too_big_for_a_word_are_kept_whole():
    s = EventStore()
    s.append((ENTER, 1, "main", 300, (1,)))  # 300 frames deep
    s.append((ENTER, 1 << 15, "main", 0, ()))  # a trace point id past 14 bits
    s.append((LEAVE, 1, "main", 2, 7))
    assert list(s) == [(ENTER, 1, "main", 300, (1,)), (ENTER, 1 << 15, "main", 0, ()), (LEAVE, 1, "main", 2, 7)]
    del s[1:]
    assert list(s) == [(ENTER, 1, "main", 300, (1,))]


def test_cut_at_the_end_only_and_clear():
    s = EventStore()
    s.extend(EVENTS)
    del s[4:]
    assert list(s) == EVENTS[:4]
    with pytest.raises(TypeError, match="cut at the end"):
        del s[0:2]
    s.clear()
    assert len(s) == 0 and list(s) == []
    s.append(EVENTS[0])
    assert list(s) == EVENTS[:1]


def test_extend_from_a_store_sharing_the_payloads():
    a = EventStore()
    a.extend(EVENTS)
    b = EventStore(share=a)
    b.extend_from(a, 2, 6)
    assert list(b) == EVENTS[2:6]
    assert b.words.tolist() == a.words[2:6].tolist()  # same payload table: the same words


def test_recorder_keeps_only_small_values():
    """Objects among the arguments or as a result are not kept (a trace never holds the machine)."""
    tp = TracePoint(3, "f", "qemu-ide", "qemu", ("a", "b"), (0, 1), None)
    ctx = ThreadContext("main")
    rec = Recorder()
    obj = object()
    rec.enter(tp, (obj, 4), ctx)
    rec.enter(tp, ([1, 2], 5), ctx)  # unhashable
    rec.leave(tp, obj, ctx)
    rec.leave(tp, True, ctx)
    rec.event("pt", "kvm", {"n": 1, "o": obj, "s": "x"}, ctx)
    assert list(rec.events) == [(ENTER, 3, "main", 0, (None, 4)), (ENTER, 3, "main", 0, (None, 5)),
                                (LEAVE, 3, "main", 0, None), (LEAVE, 3, "main", 0, True),
                                (POINT, "pt", "main", 0, (("n", 1), ("s", "x")))]


class _Unhashable:
    """A model object that cannot be hashed (as a dataclass with eq is), counting the attempts."""

    tries = 0

    def __hash__(self) -> int:
        type(self).tries += 1
        raise TypeError("unhashable type: '_Unhashable'")


def test_unhashable_arguments_are_recorded_as_before_and_not_hashed_again():
    # Every real parameter is traced, so most entries carry a model object (`s`, `vcpu`): the recorder
    # remembers that a trace point's argument types cannot be looked up, and stops trying (an exception
    # each), while recording the same payloads as the look-up path.
    tp = TracePoint(4, "f", "qemu-ide", "qemu", ("s", "addr", "val"), (0, 1, 2), None)
    ctx = ThreadContext("main")
    rec = Recorder()
    s = _Unhashable()
    _Unhashable.tries = 0
    rec.enter(tp, (0x1F0, 7, "x"), ctx)  # plain: interned under itself
    for val in (7, 8, 7, True):
        rec.enter(tp, (s, 0x1F0, val), ctx)
    rec.enter(tp, (s, 0x1F0, memoryview(bytearray(2))), ctx)  # another shape: looked up (and raises)
    rec.enter(tp, (s, 0x1F0, memoryview(bytearray(2))), ctx)
    rec.enter(tp, (0x1F0, 7, "x"), ctx)
    assert _Unhashable.tries == 3  # once per shape (int, bool, memoryview last), not once per call
    assert list(rec.events) == [(ENTER, 4, "main", 0, p) for p in [
        (0x1F0, 7, "x"), (None, 0x1F0, 7), (None, 0x1F0, 8), (None, 0x1F0, 7), (None, 0x1F0, True),
        (None, 0x1F0, None), (None, 0x1F0, None), (0x1F0, 7, "x")]]
    # the same payloads share one reference, as when every call was looked up
    refs = [w >> 32 for w in rec.events.words]
    assert refs[1] == refs[3] and refs[0] == refs[7] and refs[5] == refs[6] and len(set(refs)) == 5
