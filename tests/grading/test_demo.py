"""debug_with: the learner's own function runs inside the machine, under the debugger, until close()."""
from conftest import reference
from vmio_edu.grading.demo import debug_with
from vmio_edu.qemu.hw.ide import core


def test_the_learners_function_runs_in_the_machine_and_the_panel_stops_in_it():
    real = reference("ide_write")  # instructor material (the tests play the instructor)
    calls = []

    def ide_data_writew(opaque, addr, val):  # the learner's version: the reference, counting its calls
        calls.append(val)
        return real(opaque, addr, val)

    original = core.ide_data_writew
    dbg = debug_with(core, "ide_data_writew", ide_data_writew, op="write", lba=5, sectors=1)
    try:
        assert core.ide_data_writew is not original  # plugged for the debugger's lifetime
        dbg.break_at("ide_data_writew")
        stop = dbg.cont()
        assert stop.reason == "breakpoint" and stop.function == "ide_data_writew" and stop.file == "hw/ide/core.c"
        assert [f.function for f in stop.backtrace][:2] == ["ide_data_writew", "portio_write"]
        assert calls == []  # stopped on entry: the learner's body has not run yet
        dbg.finish()
        assert len(calls) == 1 and dbg.machine.ide.bus[0].ifs[0].data_ptr == 2
        dbg.clear()
        end = dbg.cont()
        assert end.reason == "halted" and len(calls) >= 256
        assert dbg.machine.image_bytes(5) == dbg.machine.expected_sectors()[5]
        dbg.goto(stop.index)  # time travel replays the run, still through the learner's function
        assert dbg.stop.function == "ide_data_writew"
    finally:
        dbg.close()
    assert core.ide_data_writew is original  # close() put QEMU's own function back


def test_a_missing_function_is_named():
    import pytest
    with pytest.raises(TypeError, match="define ide_data_writew first"):
        debug_with(core, "ide_data_writew", None, op="write")
    assert core.ide_data_writew.__name__ == "ide_data_writew" and not getattr(core.ide_data_writew, "student", False)
