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
