"""VIRTIO_BLK_T_FLUSH and writethrough: bdrv_aio_flush → bdrv_co_flush → raw_aio_flush → a pool worker's
fdatasync(2), as in QEMU 1.6.1."""
import pytest

from vmio_edu import Machine
from vmio_edu.qemu.block import bdrv_set_enable_write_cache
from vmio_edu.trace.tracepoint import REGISTRY

VIRTIO_BLK_T_FLUSH = 4


def _calls(m, *names):
    return [REGISTRY[e.what].name for e in m.trace.events if e.kind == 0 and REGISTRY[e.what].name in names]


@pytest.mark.parametrize("ioeventfd", [False, True])
def test_a_flush_request_reaches_fdatasync_on_a_pool_worker(ioeventfd):
    with Machine(disk="virtio", op=VIRTIO_BLK_T_FLUSH, sectors=1, ioeventfd=ioeventfd, record=True) as m:
        m.run()
        r = m.guest_result()
        assert (r["done"], r["outcome"], r["status"], r["requests"]) == (True, 0, 0, 1)
        assert _calls(m, "virtio_blk_handle_flush", "bdrv_aio_flush", "raw_aio_flush", "handle_aiocb_flush",
                      "sys_fdatasync", "virtio_blk_flush_complete") == [
            "virtio_blk_handle_flush", "bdrv_aio_flush", "raw_aio_flush", "handle_aiocb_flush", "sys_fdatasync",
            "virtio_blk_flush_complete"]
        assert m.image_changes() == []
        dbg_thread = {e.thread for e in m.trace.events if e.kind == 0 and REGISTRY[e.what].name == "sys_fdatasync"}
        assert dbg_thread == {"worker-1"}


def test_the_flush_backtrace_shows_the_worker_and_the_syscall():
    with Machine(disk="virtio", op=VIRTIO_BLK_T_FLUSH, sectors=1) as m:
        dbg = m.debugger()
        dbg.break_at("sys_fdatasync")
        stop = dbg.cont()
        assert stop.thread == "worker-1"
        assert [(f.function, f"{f.file}:{f.line}") for f in stop.backtrace[:3]] == [
            ("sys_fdatasync", "fs/sync.c:219"), ("handle_aiocb_flush", "block/raw-posix.c:495"),
            ("aio_worker", "block/raw-posix.c:762")]


def test_writethrough_flushes_after_every_write():
    # A drive in writethrough mode (no write cache: a driver that did not take VIRTIO_BLK_F_WCE) gets
    # bdrv_co_flush inside every write, before the write completes (block.c:2652-2654).
    with Machine(op="write", sectors=2, record=True) as m:  # IDE, 1 sector per request
        bdrv_set_enable_write_cache(m.bs, False)
        m.run()
        assert m.guest_result()["outcome"] == 0 and m.image_changes() == [0, 1]
        assert _calls(m, "sys_pwrite64", "sys_fdatasync") == ["sys_pwrite64", "sys_fdatasync"] * 2
    with Machine(op="write", sectors=2, record=True) as m:  # writeback, the default: no flush
        m.run()
        assert _calls(m, "sys_fdatasync") == []
