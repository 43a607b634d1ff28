"""A `cont` into new ground counts events instead of recording them; reading `dbg.events` fills them in
from a recording replay on a machine of its own (rr's record little, replay for detail)."""
from __future__ import annotations

from vmio_edu import Machine
from vmio_edu.trace.events import HOLE


def _recorded(**kw) -> list:
    with Machine(engine="unicorn", record=True, **kw) as m:
        m.run()
        return [e[:4] for e in m.trace.events]


def test_cont_counts_and_a_reader_gets_the_full_trace():
    kw = {"op": "write", "lba": 3, "sectors": 1}
    ref = _recorded(**kw)
    with Machine(engine="unicorn", **kw) as m:
        dbg = m.debugger()
        dbg.break_at("ide_sector_write")
        stop = dbg.cont()
        words = dbg._history.words
        assert len(words) == stop.index + 1
        holes = sum(1 for w in words if w == HOLE)
        assert holes > len(words) // 2  # most of the run was counted, not recorded
        assert words[stop.index] != HOLE  # the breakpoint's own event is recorded
        assert [e[:4] for e in dbg.events] == ref[:stop.index + 1]  # filled in on reading
        assert HOLE not in dbg._history.words and HOLE not in m.trace.events.words
        assert dbg.stop is stop and stop.views["registers"]  # the live machine was not moved to fill it in
        dbg.clear()
        end = dbg.cont()
        assert end.reason == "halted" and [e[:4] for e in dbg.events] == ref
        back = dbg.back()  # time travel over a filled-in trace
        assert back.index == len(ref) - 1 or ref[back.index][0] != 2


def test_a_recording_machine_keeps_recording_under_the_debugger():
    with Machine(engine="unicorn", op="write", lba=3, sectors=1, record=True) as m:
        dbg = m.debugger()
        assert dbg.cont().reason == "halted"
        assert HOLE not in dbg._history.words and not dbg._replay_box


def test_the_halt_summary_needs_no_fill_in():
    """Running to the halt counts most events; its summary (bytes the host wrote and read) comes from the
    host reads' and writes' exits, which are always recorded, so no recording replay is started."""
    with Machine(engine="unicorn", op="both", lba=5, sectors=2) as m:
        dbg = m.debugger()
        end = dbg.cont()
        assert end.reason == "halted" and not dbg._replay_box
        assert sum(1 for w in dbg._history.words if w == HOLE) > len(dbg._history) // 2
        s = end.summary
        assert (s["sectors_written"], s["sectors_read"], s["bytes_written"]) == (2, 2, 1024)
        assert s["events"] == len(dbg._history) and s["success"] is True
        assert dbg.events[-1] is not None and dbg._replay_box  # a reader of the whole trace fills it in


def test_a_cont_to_the_halt_stays_counted_and_its_summary_is_the_full_traces():
    # The halt's summary (vmio_edu.trace.ends) needs only the host reads' and writes' returns, which are
    # recorded: it must not fill the history in (a replay of the whole run at every halt).
    from vmio_edu.trace.ends import run_summary

    for op in ("write", "read"):
        with Machine(engine="unicorn", op=op, lba=2, sectors=2) as m:
            dbg = m.debugger()
            stop = dbg.cont()
            assert stop.reason == "halted"
            words = dbg._history.words
            assert sum(1 for w in words if w == HOLE) > len(words) // 2  # still counted, not filled in
            summary = dict(stop.summary)
            assert summary == run_summary(m, list(dbg.events))  # the same as from the filled-in trace
            assert summary["bytes_written" if op == "write" else "bytes_read"] == 1024
