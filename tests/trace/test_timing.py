"""Layer self time: blocked threads and callees are not charged to a layer (fake clock, no real timing)."""
from vmio_edu.trace import timing
from vmio_edu.trace.sched import Scheduler
from vmio_edu.trace.tracepoint import tracepoint

clock = [0]


@tracepoint("qemu-ide")
def ide_sector_write():
    clock[0] += 5
    bdrv_aio_writev()
    clock[0] += 5


@tracepoint("qemu-block")
def bdrv_aio_writev():
    clock[0] += 7


@tracepoint("qemu-threadpool")
def aio_poll(sched):
    clock[0] += 1
    sched.block("waiting")  # while blocked, the vCPU runs for a long time: not aio_poll's time
    clock[0] += 2


def test_self_time_excludes_callees_and_blocked_time(monkeypatch):
    monkeypatch.setattr(timing.time, "perf_counter_ns", lambda: clock[0])
    s = Scheduler()
    timer = timing.LayerTimer().attach(s)
    box = {}

    def main():
        aio_poll(s)
        s.block("done")

    def vcpu():
        ide_sector_write()
        clock[0] += 1000  # in the guest, outside any trace point
        s.wake(box["main"])
        s.tick()
        s.block("halted")

    box["main"] = s.spawn("main", main)
    s.spawn("vcpu0", vcpu, vcpu=True)
    s.resume()
    s.close()
    assert timer.ns["qemu-ide"] == 10
    assert timer.ns["qemu-block"] == 7
    assert timer.ns["qemu-threadpool"] == 3
    assert timer.ns[timing.OUTSIDE] == 1000
