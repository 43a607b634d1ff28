"""The deterministic scheduler: one thread at a time, handover by rule, clean parking and closing."""
import threading

import pytest

from vmio_edu.errors import BudgetExceeded
from vmio_edu.trace.sched import Scheduler


def _machine(latency=1):
    s = Scheduler(latency=latency)
    s.machine = None
    return s


def test_worker_runs_only_after_latency_ticks():
    s = _machine(latency=2)
    log = []
    box = {}

    def worker():
        while True:
            s.block("waiting for work")
            log.append(("worker", s.ticks))

    def vcpu():
        for i in range(6):
            log.append(("vcpu", s.ticks))
            if i == 1:
                s.wake(box["w"])
            s.tick()
        s.block("halted")

    box["w"] = s.spawn("worker-1", worker)
    s.spawn("vcpu0", vcpu, vcpu=True)
    parked = s.resume()
    assert parked.reason == "idle"
    woke_at = log.index(("vcpu", 1))
    ran = [e for e in log if e[0] == "worker"]
    assert ran == [("worker", 3)]  # woken at tick 1, due at tick 1+2, runs at that tick
    assert log.index(ran[0]) > woke_at
    s.close()
    assert all(not t.thread.is_alive() for t in s.threads)


def test_only_one_thread_runs_at_a_time():
    s = _machine()
    inside = []
    overlap = []
    box = {}

    def body(name):
        for _ in range(50):
            if inside:
                overlap.append(name)
            inside.append(name)
            inside.pop()
            if name == "vcpu0":
                s.wake(box["a"])
                s.wake(box["b"])
                s.tick()
            else:
                s.block("idle")

    box["a"] = s.spawn("a", body, "a")
    box["b"] = s.spawn("b", body, "b")
    s.spawn("vcpu0", body, "vcpu0", vcpu=True)
    s.resume()
    s.close()
    assert overlap == []


def test_same_program_same_interleaving():
    def run_once():
        s = _machine()
        log = []
        box = {}

        def worker(n):
            while True:
                s.block("wait")
                log.append(f"w{n}@{s.ticks}")
                if n == 1:
                    s.wake(box[2])

        def vcpu():
            for i in range(10):
                if i % 3 == 0:
                    s.wake(box[1])
                log.append(f"v@{s.ticks}")
                s.tick()

        box[1] = s.spawn("w1", worker, 1)
        box[2] = s.spawn("w2", worker, 2)
        s.spawn("vcpu0", vcpu, vcpu=True)
        s.resume()
        s.close()
        return log

    first = run_once()
    assert any(x.startswith("w2") for x in first)
    assert all(run_once() == first for _ in range(3))


def test_park_and_resume_hands_back_to_controller():
    s = _machine()
    seen = []

    def vcpu():
        for i in range(3):
            seen.append(i)
            s.park(detail=i)
        s.block("halted")

    s.spawn("vcpu0", vcpu, vcpu=True)
    details = []
    while True:
        p = s.resume()
        if p.reason != "stop":
            break
        details.append(p.detail)
        assert threading.current_thread() is threading.main_thread()
    assert details == [0, 1, 2] and seen == [0, 1, 2]
    s.close()


def test_error_in_a_thread_reaches_controller():
    s = _machine()

    def vcpu():
        raise ValueError("boom in the model")

    s.spawn("vcpu0", vcpu, vcpu=True)
    p = s.resume()
    assert p.reason == "error" and isinstance(p.detail, ValueError)
    assert s.resume().reason == "error"  # stays failed, does not hang
    s.close()


def test_exit_budget():
    s = _machine()
    s.max_ticks = 5

    def vcpu():
        while True:
            s.tick()

    s.spawn("vcpu0", vcpu, vcpu=True)
    p = s.resume()
    assert p.reason == "error" and isinstance(p.detail, BudgetExceeded)
    assert "5 VM exits" in str(p.detail)
    s.close()


def test_interrupt_parks_at_next_tick():
    s = _machine()
    count = [0]

    def vcpu():
        while True:
            count[0] += 1
            s.tick()

    s.spawn("vcpu0", vcpu, vcpu=True)
    s.park_requested = True  # what a Ctrl-C in resume() sets
    p = s.resume()
    assert p.reason == "stop" and p.detail == "interrupted"
    n = count[0]
    s.park_requested = True
    assert s.resume().detail == "interrupted" and count[0] > n  # the machine stays usable
    s.close()


def test_close_unwinds_blocked_threads():
    s = _machine()

    def waiter():
        s.block("forever")

    for i in range(3):
        s.spawn(f"w{i}", waiter)
    assert s.resume().reason == "idle"
    s.close()
    assert all(not t.thread.is_alive() for t in s.threads)
    with pytest.raises(RuntimeError):
        s.current()
