"""Ctrl-C during cont(): the model parks cleanly at its next trace point, the Stop says "interrupted", and
the machine goes on to the end afterwards with the right bytes on disk."""
import _thread
import os
import signal
import threading
import time

import pytest


def _wait_for(flag, seconds=10.0):
    """Block the calling (model) thread until flag() holds; test-only, never in the model itself."""
    end = time.monotonic() + seconds
    while not flag():
        if time.monotonic() > end:
            raise AssertionError("the interrupt never reached the scheduler")
        time.sleep(0.002)


def _finish_and_check(m, dbg):
    dbg.clear()
    end = dbg.cont()
    assert end.reason == "halted"
    assert m.image_changes() == [3] and m.image_bytes(3) == m.expected_sectors()[3]


def test_park_request_from_a_condition(make):
    m, dbg = make()

    def ask_to_park(stop):
        m.sched.park_requested = True  # what the scheduler does when Ctrl-C reaches it
        return False

    dbg.break_at("ide_sector_write", condition=ask_to_park)
    stop = dbg.cont()
    assert stop.reason == "interrupted" and "Ctrl-C" in stop.message
    ev = dbg.events[stop.index]
    assert stop.index > 0 and ev[2] == stop.thread and stop.backtrace  # parked at a real trace point
    assert dbg.events[stop.index - 1][0] == 0  # right after the ide_sector_write entry
    assert not m.sched.park_requested
    _finish_and_check(m, dbg)


def test_park_request_from_another_thread(make):
    m, dbg = make()
    timer = []

    def start_timer(stop):
        t = threading.Timer(0.02, lambda: setattr(m.sched, "park_requested", True))
        timer.append(t)
        t.start()
        _wait_for(lambda: m.sched.park_requested)
        return False

    dbg.break_at("bdrv_aio_writev", condition=start_timer)
    stop = dbg.cont()
    assert stop.reason == "interrupted" and stop.function is not None
    timer[0].join()
    assert stop.views["ide"]["status"] & 0x80  # parked inside the write: BSY
    _finish_and_check(m, dbg)


@pytest.mark.parametrize("how", ["interrupt_main", "sigint"])
def test_real_keyboard_interrupt(make, how):
    """A real KeyboardInterrupt in the caller's thread while the model runs (the Jupyter kernel's Ctrl-C
    or the interrupt button): `_thread.interrupt_main()` or SIGINT to the process."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("KeyboardInterrupt is delivered to the main thread only")
    m, dbg = make()

    def interrupt(stop):
        if how == "interrupt_main":
            _thread.interrupt_main()
        else:
            os.kill(os.getpid(), signal.SIGINT)
        _wait_for(lambda: m.sched.park_requested)  # the caller's thread saw it and asked the model to park
        return False

    dbg.break_at("ide_sector_write", condition=interrupt)
    stop = dbg.cont()
    assert stop.reason == "interrupted"
    assert stop.index > 0 and stop.thread == "vcpu0"
    _finish_and_check(m, dbg)


def test_goto_runs_past_breakpoints(make):
    """goto() is time travel, not a run: it lands exactly on its index whatever breakpoints lie between."""
    m, dbg = make()
    dbg.cont()
    n = len(dbg.events)
    dbg.goto(100)
    bp = dbg.break_at("ide_sector_write")
    stop = dbg.goto(n - 50)  # forwards, over the one ide_sector_write
    assert stop.index == n - 50 and stop.reason == "goto" and bp.hits == 0
    back = dbg.goto(200)  # backwards: a replay, also silent
    assert back.index == 200 and back.reason == "goto" and bp.hits == 0
    assert dbg.cont().function == "ide_sector_write" and bp.hits == 1
