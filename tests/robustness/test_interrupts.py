"""Ctrl-C (a Jupyter interrupt) during a plain Machine.run() and during the debugger's cont().

The kernel's interrupt button raises KeyboardInterrupt in the main thread. The scheduler catches it while
it waits for the model, asks the running model thread to park at its next vCPU tick (or, with a
debugger, its next trace point), and run() returns the Parked state "interrupted"; nothing is killed
half-way. The interrupted machine can go on (run() again) or be closed, and at the stop the image holds
exactly the sectors whose pwrite completed. tests/debugger/test_interrupt.py covers where the debugger
parks; here the image is checked at the stop itself.
"""
import _thread
import threading
import time

import pytest

from robustness_helpers import assert_closed_cleanly, assert_image_matches, open_fds
from vmio_edu import Machine
from vmio_edu.guest import assemble

SECTOR = 512


@pytest.fixture(autouse=True)
def _main_thread_only():
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("KeyboardInterrupt is delivered to the main thread only")


def _run_expecting_interrupt(run):
    try:
        return run()
    except KeyboardInterrupt:  # pragma: no cover - the failure this test exists to catch
        pytest.fail("Ctrl-C escaped the run instead of parking the model")


def _ctrl_c_seen_by(m):
    """A pwrite hook: press Ctrl-C, then hold this (model) thread until the caller's thread has turned it
    into a park request, so the stop comes at a known point whatever the speed of the machine."""
    def hook(fd, pos):
        _thread.interrupt_main()
        end = time.monotonic() + 10
        while not m.sched.park_requested:
            assert time.monotonic() < end, "the KeyboardInterrupt never reached the scheduler"
            time.sleep(0.002)
    return hook


def _check_stopped_state(m, disk, log, fd, total):
    done = log.completed(fd)
    assert 0 < len(done) < total
    assert [s for s, _ in done] == list(range(m.lba, m.lba + len(done)))  # in order, a prefix
    assert [d for _, d in done] == [m.pattern[i * SECTOR:(i + 1) * SECTOR] for i in range(len(done))]
    assert_image_matches(disk, disk.reference, done)
    assert not m.guest_result()["done"]
    return done


def test_interrupt_during_a_long_run_then_close(disk, pwrite_log):
    """Ctrl-C at the 6th pwrite of a 64-sector write (a hook there, not a timer: the stop comes at a known
    point whatever the machine's speed); then close."""
    fds = open_fds()
    m = Machine(image=disk.path, op="write", lba=0, sectors=64)
    fd = m.bs.file.opaque.fd
    pwrite_log.before[5] = _ctrl_c_seen_by(m)
    parked = _run_expecting_interrupt(m.run)
    assert (parked.reason, parked.detail, parked.thread) == ("stop", "interrupted", "vcpu0")
    assert not m.halted and m.exits[-1].reason != "HLT"
    done = _check_stopped_state(m, disk, pwrite_log, fd, 64)
    assert len(done) == 6  # the pwrite under way when Ctrl-C came completes; no new one starts
    m.close()
    assert_closed_cleanly(m, fds)
    assert_image_matches(disk, disk.reference, pwrite_log.completed(fd))  # closing wrote nothing more


def test_interrupt_then_run_on_to_the_end(disk, pwrite_log, engine):
    """Ctrl-C right after the 3rd sector's pwrite starts; the stop shows a consistent image; run() again
    finishes the write as if nothing had happened."""
    m = Machine(image=disk.path, op="write", lba=10, sectors=16, engine=engine)
    fd = m.bs.file.opaque.fd
    pwrite_log.before[2] = _ctrl_c_seen_by(m)
    parked = _run_expecting_interrupt(m.run)
    assert (parked.reason, parked.detail) == ("stop", "interrupted")
    done = _check_stopped_state(m, disk, pwrite_log, fd, 16)
    assert len(done) == 3  # the pwrite under way when Ctrl-C came completes; no new one starts
    end = m.run()
    assert end.reason == "idle" and m.halted
    r = m.guest_result()
    assert (r["status"], r["error"], r["sectors_done"]) == (0x50, 0, 16)
    m.close()
    assert len(pwrite_log.completed(fd)) == 16
    assert_image_matches(disk, disk.reference, {10: m.pattern})


def test_interrupt_during_debugger_cont_leaves_a_consistent_image(disk, pwrite_log):
    m = Machine(image=disk.path, op="write", lba=20, sectors=4)
    dbg = m.debugger()
    fd = m.bs.file.opaque.fd
    pwrite_log.before[1] = _ctrl_c_seen_by(m)
    stop = _run_expecting_interrupt(dbg.cont)
    assert stop.reason == "interrupted"
    _check_stopped_state(m, disk, pwrite_log, fd, 4)
    assert dbg.cont().reason == "halted"
    m.close()
    assert_image_matches(disk, disk.reference, {20: m.pattern})


def test_interrupt_a_guest_spinning_without_exits(engine):
    """`jmp $` never leaves KVM_RUN: the emulated CPU checks for a park request as it runs, the real engine
    kicks the vCPU out every few ms (vmio_edu.kvm.kick). Ctrl-C parks it long before any budget."""
    fds = open_fds()
    m = Machine(assemble("l: jmp l", mode=32), mode=32, engine=engine, max_spin_seconds=15,
                max_instructions=2 * 10 ** 9)  # budgets far beyond the 0.3 s, but finite
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    parked = _run_expecting_interrupt(m.run)
    timer.join()
    assert (parked.reason, parked.detail) == ("stop", "interrupted")
    m.close()
    assert_closed_cleanly(m, fds)


def test_ctrl_c_outside_the_schedulers_wait_still_parks_the_model(disk, pwrite_log, monkeypatch):
    """The KeyboardInterrupt can also land between two of the scheduler's waits and escape resume() while
    the model runs on. Simulated here: the first wait raises it at once. run() must still ask the model
    to park and wait for it, never return with model threads running."""
    m = Machine(image=disk.path, op="write", lba=30, sectors=8)
    fd = m.bs.file.opaque.fd
    real_wait = m.sched._wait_controller
    calls = []

    def wait_controller():
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real_wait()

    monkeypatch.setattr(m.sched, "_wait_controller", wait_controller)
    parked = _run_expecting_interrupt(m.run)
    assert (parked.reason, parked.detail) == ("stop", "interrupted")
    assert not m.sched.park_requested
    assert_image_matches(disk, disk.reference, pwrite_log.completed(fd))
    assert m.run().reason == "idle" and m.guest_result()["sectors_done"] == 8
    m.close()
    assert_image_matches(disk, disk.reference, {30: m.pattern})


def test_interrupt_during_a_replay_stops_it_and_time_travel_goes_on(disk, pwrite_log):
    """Ctrl-C while the debugger replays (going back rebuilds the state by running a fresh machine
    silently): the replay parks as "interrupted" before its target, and a later goto reaches the target
    with the same state as the first run had there."""
    m = Machine(image=disk.path, op="write", lba=40, sectors=4)
    dbg = m.debugger()
    dbg.checkpoint_every = 0  # every replay starts from a fresh machine: it redoes all four pwrites
    assert dbg.cont().reason == "halted"
    first = len(pwrite_log.calls)
    assert first == 4
    target = len(dbg.events) - 5
    end_digest = dbg.state_digest()
    ref = dbg.goto(target)  # a replay; note the state there
    digest = {k: v for k, v in dbg.state_digest().items() if k != "image_sha256"}
    n = len(pwrite_log.calls)
    dbg.goto(-1)  # back to the start
    pwrite_log.before[n + 2] = _ctrl_c_seen_by(m)  # during the next replay's 3rd pwrite
    stop = _run_expecting_interrupt(lambda: dbg.goto(target))
    assert stop.reason == "interrupted" and 0 <= stop.index < target
    again = dbg.goto(target)
    assert again.index == ref.index == target
    assert {k: v for k, v in dbg.state_digest().items() if k != "image_sha256"} == digest
    assert dbg.cont().reason == "halted" and dbg.state_digest()["image_sha256"] == end_digest["image_sha256"]
    m.close()
    assert_image_matches(disk, disk.reference, {40: m.pattern})
