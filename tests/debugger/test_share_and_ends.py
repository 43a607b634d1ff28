"""stop.reference reaches the same moment in a fresh machine; the halt is a success with a summary; a
command after the end says the run is over."""
import pytest

from vmio_edu import Machine  # noqa: F401 - the references name it


def _same(a, b):
    assert (a.index, a.kind, a.function, a.layer, a.thread, a.depth) == \
        (b.index, b.kind, b.function, b.layer, b.thread, b.depth)
    assert [f.to_json() for f in a.backtrace] == [f.to_json() for f in b.backtrace]
    assert a.args == b.args


def test_reference_reaches_the_same_stop(make, engine):
    m, dbg = make(op="write", lba=4, sectors=2, seed=7)
    dbg.break_at("ide_sector_write")
    dbg.cont()
    stop = dbg.cont()  # the second sector
    ref = stop.reference
    assert ref == (f'Machine(op="write", lba=4, sectors=2, engine="{engine}", seed=7)'
                   f'.debugger().goto({stop.index})')
    assert stop.to_json()["reference"] == ref
    # evaluate the pasted line as it is (split only to close the new machine afterwards)
    machine_src, rest = ref.split(".debugger()")
    other_m = eval(machine_src)
    try:
        other = eval("other_m.debugger()" + rest)
        _same(other, stop)
        assert other.reason == "goto"
        assert other.views["ide"] == stop.views["ide"]
    finally:
        other_m.close()


def test_reference_keeps_parameters_that_differ_from_the_defaults(make):
    m, dbg = make(op="both", lba=1, sectors=1, polling=True, latency=3)
    stop = dbg.step()
    assert "polling=True" in stop.reference and "latency=3" in stop.reference
    assert stop.reference.startswith('Machine(op="both", lba=1, sectors=1, ')
    assert "image=" not in stop.reference  # a fresh temporary image: every Machine makes the same blank one
    assert dbg.stop.reference.endswith(f".goto({stop.index})")


def test_reference_of_a_guest_of_ones_own_says_so(engine):
    from vmio_edu.guest.programs import default_guest
    with Machine(default_guest(), engine=engine, op="write") as m:
        assert m.debugger().stop.reference.startswith("Machine(GUEST, ")


def test_halt_is_a_success_with_a_summary(make):
    m, dbg = make(op="both", lba=6, sectors=3)
    stop = dbg.cont()
    assert stop.reason == "halted"
    s = stop.summary
    assert s["success"] is True
    assert s["sectors_written"] == 3 and s["sectors_read"] == 3
    assert s["exits"] == len(m.exits) and s["exits_by_reason"]["HLT"] == 1
    assert s["io_exits_out"] == sum(1 for x in m.exits if x.reason == "IO" and x.direction == "out")
    assert s["guest_result"]["sectors_done"] == 6
    assert stop.message.startswith("success: the guest halted normally")
    assert "wrote 3 sectors and read 3 sectors" in stop.message and f"{len(m.exits)} VM exits" in stop.message
    assert stop.to_json()["summary"] == s


def test_a_failing_driver_is_not_a_success(make):
    m, dbg = make(op="write", lba=2047, sectors=4)  # past the end of the 2048-sector image
    stop = dbg.cont()
    assert stop.reason == "halted"
    assert stop.summary["success"] is False
    assert "reports a failure" in stop.message


def test_commands_after_the_end_say_the_run_is_over(make):
    m, dbg = make(op="write", lba=0, sectors=1)
    halted = dbg.cont()
    for cmd in (dbg.step, dbg.cont, dbg.next, dbg.finish):
        s = cmd()
        assert s.reason == "end" and s.index == halted.index
        assert "the run is over" in s.message and "dbg.back()" in s.message
        assert dbg.stop is halted
    # and time travel still works from there
    back = dbg.back()
    assert back.reason == "back" and back.index < halted.index
    assert dbg.cont().reason == "halted"


def test_reference_of_the_start_and_of_the_halt(make):
    m, dbg = make(op="write", lba=2, sectors=1)
    assert dbg.stop.reference.endswith(".debugger().goto(-1)")
    end = dbg.cont()
    machine_src, rest = end.reference.split(".debugger()")
    other_m = eval(machine_src)
    try:
        other = eval("other_m.debugger()" + rest)
        assert (other.reason, other.index) == ("halted", end.index)
        assert other.summary == end.summary
    finally:
        other_m.close()
