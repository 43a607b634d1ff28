"""The asynchronous block path end to end: vCPU submit → coroutine → thread pool → real pwrite/pread on a
worker → eventfd → main loop → coroutine re-entered → bottom half → the device's callback."""
from __future__ import annotations

import errno
import json
import os

import pytest

from vmio_edu.qemu.qemu_coroutine import coroutines_view
from vmio_edu.trace.backtrace import backtrace

from blockbench import SECTOR, Bench, Rec, Request, make_image, read_image


def pattern(nbytes, seed=1):
    return bytes((i * 31 + seed * 17 + 5) & 0xFF for i in range(nbytes))


def test_write_lands_at_sector_times_512_and_nothing_else_changes(image, bench_factory):
    before = read_image(image)
    data = pattern(SECTOR)
    b = bench_factory(image)
    w = Request("write", 5, 1, data)
    b.run(w)
    after = read_image(image)
    assert w.ret == 0
    assert after[5 * SECTOR:6 * SECTOR] == data
    assert after[:5 * SECTOR] == before[:5 * SECTOR]
    assert after[6 * SECTOR:] == before[6 * SECTOR:]
    assert len(after) == len(before)


def test_read_returns_what_was_written(image, bench_factory):
    data = pattern(2 * SECTOR, seed=3)
    b = bench_factory(image)
    w = Request("write", 9, 2, data)
    r = Request("read", 9, 2)
    b.run(w, r)
    assert (w.ret, r.ret) == (0, 0)
    assert r.data == data


def test_read_of_untouched_sectors_gives_the_image_bytes(image, bench_factory):
    before = read_image(image)
    b = bench_factory(image)
    r = Request("read", 2, 3)
    b.run(r)
    assert r.ret == 0 and r.data == before[2 * SECTOR:5 * SECTOR]


def test_threads_callback_on_main_worker_pwrites_created_by_main_via_bh(image, bench_factory):
    rec = Rec()
    b = bench_factory(image, hooks=rec)
    w = Request("write", 1, 1, pattern(SECTOR))
    b.run(w)
    assert w.cb_thread == "main" and w.ret == 0
    assert "worker-1" in b.thread_names()
    # the vCPU submits and asks for a worker; the main loop's BH creates it; the worker does the pwrite
    assert rec.threads_of("bdrv_aio_writev") == ["vcpu0"]
    assert rec.threads_of("paio_submit") == ["vcpu0"]
    assert rec.threads_of("thread_pool_submit_aio") == ["vcpu0"]
    assert rec.threads_of("spawn_thread") == ["vcpu0"]
    assert rec.threads_of("spawn_thread_bh_fn") == ["main"]
    assert rec.threads_of("do_spawn_thread")[0] == "main"
    assert "vcpu0" not in rec.threads_of("do_spawn_thread")
    assert rec.threads_of("aio_worker") == ["worker-1"]
    assert rec.threads_of("handle_aiocb_rw_linear") == ["worker-1"]
    assert rec.threads_of("event_notifier_ready") == ["main"]
    assert rec.threads_of("bdrv_co_io_em_complete") == ["main"]
    assert rec.threads_of("bdrv_co_em_bh") == ["main"]
    # ordering: worker spawned before it ran; the completion after the pwrite
    names = [(n, t) for k, n, t, _ in rec.events if k == "enter"]
    assert names.index(("do_spawn_thread", "main")) < names.index(("aio_worker", "worker-1"))
    assert names.index(("aio_worker", "worker-1")) < names.index(("event_notifier_ready", "main"))
    assert names.index(("event_notifier_ready", "main")) < names.index(("bdrv_co_em_bh", "main"))


def test_coroutine_yields_on_vcpu_and_finishes_on_main(image, bench_factory):
    b = bench_factory(image)
    w = Request("write", 0, 1, pattern(SECTOR))
    b.run(w)
    view = coroutines_view(b.state)
    assert view["created"] == 1 and view["live"] == []
    co = view["terminated"][0]
    assert co["entry"] == "bdrv_co_do_rw" and co["state"] == "terminated"
    assert co["history"] == [["enter", "vcpu0"], ["yield", "vcpu0"], ["enter", "main"], ["terminate", "main"]]


def test_coroutine_stack_at_paio_submit_is_the_real_frames(image, bench_factory):
    rec = Rec()
    b = bench_factory(image, hooks=rec)
    r = Request("read", 2, 1)
    b.run(r)
    [(fn, thread, names, frames)] = rec.stacks
    assert thread == "vcpu0"
    assert names == ["paio_submit", "raw_aio_submit", "raw_aio_readv", "bdrv_co_io_em", "bdrv_co_readv_em",
                     "bdrv_co_do_readv", "bdrv_co_readv", "raw_co_readv", "bdrv_co_do_readv", "bdrv_co_do_rw"]
    bt = backtrace(frames, thread)
    assert [(f.file, f.line) for f in bt] == [
        ("block/raw-posix.c", 784), ("block/raw-posix.c", 828), ("block/raw-posix.c", 836),
        ("block.c", 4017), ("block.c", 4034), ("block.c", 2550), ("block.c", 2567), ("block/raw.c", 47),
        ("block.c", 2550), ("block.c", 3867), ("coroutine-ucontext.c", 118)]
    assert {k: bt[0].args[k] for k in ("sector_num", "nb_sectors", "type")} == \
        {"sector_num": 2, "nb_sectors": 1, "type": 1}  # QEMU_AIO_READ


def test_write_stack_at_paio_submit_uses_the_writev_names(image, bench_factory):
    rec = Rec()
    b = bench_factory(image, hooks=rec)
    b.run(Request("write", 3, 1, pattern(SECTOR)))
    [(_, thread, names, frames)] = rec.stacks
    assert names == ["paio_submit", "raw_aio_submit", "raw_aio_writev", "bdrv_co_io_em", "bdrv_co_writev_em",
                     "bdrv_co_do_writev", "bdrv_co_writev", "raw_co_writev", "bdrv_co_do_writev", "bdrv_co_do_rw"]
    assert backtrace(frames, thread)[0].args["type"] == 2  # QEMU_AIO_WRITE


@pytest.mark.parametrize("latency", [1, 3])
def test_vcpu_keeps_running_between_submit_and_callback(image, bench_factory, latency):
    b = bench_factory(image, latency=latency)
    w = Request("write", 4, 1, pattern(SECTOR))
    b.run(w)
    assert w.ret == 0
    assert w.cb_tick - w.submit_tick >= latency


def test_idle_worker_is_reused(image, bench_factory):
    rec = Rec()
    b = bench_factory(image, hooks=rec)
    b.run(Request("write", 1, 1, pattern(SECTOR)), Request("write", 2, 1, pattern(SECTOR, 2)),
          Request("read", 1, 1))
    assert [t for t in b.thread_names() if t.startswith("worker")] == ["worker-1"]
    assert rec.threads_of("spawn_thread") == ["vcpu0"]  # only the first request needed a worker
    assert rec.threads_of("aio_worker") == ["worker-1"] * 3


def test_two_requests_in_flight_get_two_workers(image, bench_factory):
    """The second worker is spawned by the first one as it starts (worker_thread → do_spawn_thread),
    not by the vCPU. Worker-1 runs until it blocks, so it takes both requests off the semaphore before
    worker-2 first runs; worker-2 then waits idle."""
    rec = Rec()
    b = bench_factory(image, hooks=rec)
    d1, d2 = pattern(SECTOR, 4), pattern(SECTOR, 5)
    w1, w2 = Request("write", 3, 1, d1), Request("write", 12, 1, d2)
    b.run(w1, w2, together=True)
    assert (w1.ret, w2.ret) == (0, 0) and w1.cb_thread == w2.cb_thread == "main"
    img = read_image(image)
    assert img[3 * SECTOR:4 * SECTOR] == d1 and img[12 * SECTOR:13 * SECTOR] == d2
    assert [t for t in b.thread_names() if t.startswith("worker")] == ["worker-1", "worker-2"]
    assert rec.threads_of("spawn_thread") == ["vcpu0", "vcpu0"]
    assert rec.threads_of("do_spawn_thread")[:2] == ["main", "worker-1"]
    assert rec.threads_of("aio_worker") == ["worker-1", "worker-1"]
    pool = b.state.aio_context.thread_pool
    assert pool.cur_threads == 2 and pool.new_threads == 0 and pool.pending_threads == 0
    assert [(w["name"], w["state"], w["done"]) for w in pool.view()["workers"]] == [
        ("worker-1", "idle", 2), ("worker-2", "idle", 0)]


def test_several_iovecs_use_one_vectored_transfer(image, bench_factory):
    before = read_image(image)
    data = pattern(3 * SECTOR, seed=9)
    bufs = [bytearray(data[:700]), bytearray(data[700:1536])]
    b = bench_factory(image)
    w = Request("write", 6, 3, bufs=bufs)
    r = Request("read", 6, 3, bufs=[bytearray(100), bytearray(3 * SECTOR - 100)])
    b.run(w, r)
    after = read_image(image)
    assert (w.ret, r.ret) == (0, 0)
    assert after[6 * SECTOR:9 * SECTOR] == data and r.data == data
    assert after[:6 * SECTOR] == before[:6 * SECTOR] and after[9 * SECTOR:] == before[9 * SECTOR:]


@pytest.mark.parametrize("sector,nb", [(16, 1), (15, 2), (-1, 1), (100, 1)])
def test_past_the_end_is_eio_and_the_file_is_unchanged(image, bench_factory, sector, nb):
    before = read_image(image)
    b = bench_factory(image)
    w = Request("write", sector, nb, pattern(nb * SECTOR))
    r = Request("read", sector, nb)
    b.run(w, r)
    assert w.ret == -errno.EIO and r.ret == -errno.EIO
    assert w.cb_thread == "main"  # still through the bottom half, never from inside bdrv_aio_writev
    assert read_image(image) == before
    assert not [t for t in b.thread_names() if t.startswith("worker")]


def test_last_sector_is_writable(image, bench_factory):
    b = bench_factory(image)
    w = Request("write", 15, 1, pattern(SECTOR))
    b.run(w)
    assert w.ret == 0 and read_image(image)[15 * SECTOR:] == pattern(SECTOR)


def test_read_only_image_refuses_writes_with_eacces(image, bench_factory):
    before = read_image(image)
    b = bench_factory(image, readonly=True)
    w = Request("write", 0, 1, pattern(SECTOR))
    r = Request("read", 0, 1)
    b.run(w, r)
    assert w.ret == -errno.EACCES
    assert r.ret == 0 and r.data == before[:SECTOR]
    assert read_image(image) == before


def test_enospc_from_a_real_pwrite(image, bench_factory):
    """The file BDS's fd is swapped for /dev/full, whose write(2) really fails with ENOSPC."""
    before = read_image(image)
    b = bench_factory(image)
    full = os.open("/dev/full", os.O_RDWR)
    try:
        os.dup2(full, b.bs.file.opaque.fd)
    finally:
        os.close(full)
    w = Request("write", 3, 1, pattern(SECTOR))
    b.run(w)
    assert w.ret == -errno.ENOSPC and w.cb_thread == "main"
    assert read_image(image) == before


def test_read_error_is_minus_errno(image, bench_factory):
    """A write-only fd under the BDS: the real pread fails with EBADF."""
    b = bench_factory(image)
    wronly = os.open(image, os.O_WRONLY)
    try:
        os.dup2(wronly, b.bs.file.opaque.fd)
    finally:
        os.close(wronly)
    r = Request("read", 0, 1)
    b.run(r)
    assert r.ret == -errno.EBADF


def test_short_read_past_eof_is_zero_filled(image, bench_factory):
    """The file shrinks after open: pread comes back short and raw-posix pads with zeros."""
    before = read_image(image)
    b = bench_factory(image)
    os.truncate(image, 10 * SECTOR + 256)
    r = Request("read", 10, 2)
    b.run(r)
    assert r.ret == 0
    assert r.data == before[10 * SECTOR:10 * SECTOR + 256] + bytes(2 * SECTOR - 256)


def _run_once(tmp_path, name):
    path = os.fspath(tmp_path / name)
    make_image(path)
    rec = Rec()
    b = Bench(path, hooks=rec)
    try:
        b.run(Request("write", 7, 1, pattern(SECTOR)), Request("read", 7, 1), Request("write", 99, 1, pattern(SECTOR)))
    finally:
        b.close()
    return rec.events, read_image(path)


def test_two_identical_runs_give_the_identical_trace(tmp_path):
    ev1, img1 = _run_once(tmp_path, "a.img")
    ev2, img2 = _run_once(tmp_path, "b.img")
    assert len(ev1) > 100
    assert ev1 == ev2
    assert img1 == img2
    threads = {t for _, _, t, _ in ev1}
    assert threads == {"vcpu0", "main", "worker-1"}


def test_views_are_plain_data(image, bench_factory):
    b = bench_factory(image)
    b.run(Request("write", 2, 1, pattern(SECTOR)), Request("read", 2, 1))
    ctx = b.state.aio_context
    pool = ctx.view()["thread_pool"]
    json.dumps(pool)
    json.dumps(ctx.view())
    json.dumps(coroutines_view(b.state))
    json.dumps(b.bs.view())
    assert pool["queue"] == [] and pool["in_flight"] == []
    assert [w["name"] for w in pool["workers"]] == ["worker-1"]
    assert pool["workers"][0]["state"] == "idle" and pool["workers"][0]["done"] == 2
    done = pool["completed"]
    assert [c["arg"]["aio_type"] for c in done] == ["QEMU_AIO_WRITE", "QEMU_AIO_READ"]
    assert [c["arg"]["aio_offset"] for c in done] == [1024, 1024]
    assert all(c["arg"]["aio_nbytes"] == 512 and c["state"] == "THREAD_DONE" and c["ret"] == 0 for c in done)
    assert all(c["worker"] == "worker-1" and c["cb"] == "bdrv_co_io_em_complete" for c in done)


def test_closing_releases_every_fd(tmp_path):
    def fds():
        return sorted(os.listdir("/proc/self/fd"))
    path = os.fspath(tmp_path / "c.img")
    make_image(path)
    n = len(fds())
    b = Bench(path)
    assert len(fds()) == n + 3  # the image, the AioContext's eventfd, the pool's eventfd
    b.run(Request("write", 1, 1, pattern(SECTOR)))
    b.close()
    assert len(fds()) == n
    assert all(not t.thread.is_alive() for t in b.sched.threads)


def test_a_write_past_the_end_of_the_growable_file_bds_leaves_total_sectors(image, bench_factory):
    """block.c bdrv_co_do_writev at v1.6.1 (2613-2668) updates wr_highest_sector only: the file grows on
    disk (a real pwrite past its end), but bs->total_sectors keeps the size read at open."""
    b = bench_factory(image)
    fmt = b.bs
    b.bs = fmt.file  # submit to the protocol ("file") BDS, which is growable
    w = Request("write", 17, 1, pattern(SECTOR))
    b.run(w)
    b.bs = fmt
    assert w.ret == 0 and fmt.file.growable
    assert os.path.getsize(image) == 18 * SECTOR  # the pwrite really grew the file
    assert fmt.file.total_sectors == 16 and fmt.file.wr_highest_sector == 17


def test_bdrv_co_aio_rw_vector_has_the_1_6_1_signature():
    """block.c:3878 at v1.6.1: (bs, sector_num, qiov, nb_sectors, cb, opaque, is_write); no `flags`."""
    import inspect

    from vmio_edu.qemu.block import bdrv_co_aio_rw_vector
    assert list(inspect.signature(bdrv_co_aio_rw_vector).parameters) == \
        ["bs", "sector_num", "qiov", "nb_sectors", "cb", "opaque", "is_write"]
