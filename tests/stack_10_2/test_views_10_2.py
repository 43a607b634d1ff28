"""The debugger's views read a QEMU 10.2 machine: at a stop inside the coroutine every view is plain data,
and shows 10.2's objects (the BlockBackend, the two nodes' tracked requests, the pool with no semaphore)."""
import json

from vmio_edu import Machine
from vmio_edu.trace.views import VIEW_NAMES


def test_every_view_at_raw_co_prw(engine, stack):
    with Machine(engine=engine, stack=stack, op="write", lba=2) as m:
        dbg = m.debugger()
        dbg.break_at("raw_co_prw")
        stop = dbg.cont()
        assert stop.function == "raw_co_prw" and stop.thread == "vcpu0"
        views = {n: json.loads(json.dumps(stop.views[n], default=str)) for n in VIEW_NAMES}
        assert views["ide"]["status_text"] == "BSY|DRDY|DSC"
        tracked = views["qiov"]["tracked_requests"]
        assert [(t["bds"].split(" ")[-1], t["offset"], t["bytes"]) for t in tracked] == \
            [("(raw)", 1024, 512), ("(file)", 1024, 512)]  # the format node, then the file node
        assert views["block"]["name"] == "ide0-hd0" and views["block"]["in_flight"] == 1
        [co] = views["coroutines"]["live"]
        assert co["entry"] == "blk_aio_write_entry" and co["state"] == "running"
        assert views["threads"]["bql_owner"] == "vcpu0"  # inside the device access, under the BQL
        main = next(t for t in views["threads"]["threads"] if t["name"] == "main")
        assert main["why"] == "qemu_poll_ns" and [f["function"] for f in main["backtrace"][-2:]] == ["qemu_default_main", "main"]
