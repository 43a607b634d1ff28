"""`vmio-edu trace --stack 10.2 --break blk_aio_pwritev` prints QEMU 10.2's backtrace with 10.2 file:line
(issue 15's first "done when"), on real KVM (the emulated engine needs the Linux 6.12 model)."""
import json

import pytest

from vmio_edu.cli import main


@pytest.mark.kvm
def test_trace_break_prints_the_10_2_backtrace(need_kvm, capsys):
    assert main(["trace", "--stack", "10.2", "--engine", "kvm", "--op", "write", "--lba", "3",
                 "--break", "blk_aio_pwritev"]) == 0
    out = capsys.readouterr().out
    lines = [x for x in out.splitlines() if x.startswith("#")]
    assert lines[0].startswith("#0  blk_aio_pwritev (blk=0x") and "offset=1536" in lines[0]
    assert lines[0].endswith("at block/block-backend.c:1721")
    assert lines[1].endswith("ide_sector_write (s=" + lines[0].split("opaque=")[1].split(")")[0]
                             + ") at hw/ide/core.c:1100")
    assert any(x.endswith("at system/physmem.c:3269") and "flatview_write_continue_step" in x for x in lines)
    [dispatch] = [x for x in lines if "memory_region_dispatch_write (" in x]
    assert "op=MO_16, attrs=0" in dispatch  # the size travels as a MemOp in 10.2
    assert lines[-1].startswith("#15 qemu_thread_start (") and lines[-1].endswith("util/qemu-thread-posix.c:393")


@pytest.mark.kvm
def test_trace_json_names_the_stack(need_kvm, capsys):
    assert main(["trace", "--stack", "10.2", "--engine", "kvm", "--op", "both", "--lba", "2", "--sectors", "2",
                 "--format", "json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["stack"] == "10.2" and r["check"]["ok"] and r["check"]["sectors_written"] == [2, 3]
    assert {"blk_aio_pwritev", "blk_aio_prwv", "ide_bus_set_irq"} <= set(r["functions"]["qemu-block"]) | \
        set(r["functions"]["qemu-ide"])
    assert {"qemu_default_main", "main_loop_wait", "aio_dispatch"} <= set(r["functions"]["qemu-event-loop"])
    assert set(r["stages"]["qemu-threadpool"]) >= {"main", "worker-1"}
