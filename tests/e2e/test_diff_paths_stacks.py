"""diff-paths across the two real model stacks (issue 15 item 5): QEMU 1.6.1 / Linux 3.7 beside QEMU 10.2 /
Linux 6.12, on the emulated engine and on this host's /dev/kvm."""
from __future__ import annotations

import pytest

from vmio_edu.cli import main
from vmio_edu.trace.diffpaths import find
from vmio_edu.trace.diffreport import WIDTH, diff_paths


@pytest.fixture(scope="module")
def write():
    return diff_paths(op="write", host=False)


@pytest.fixture(scope="module")
def read():
    return diff_paths(op="read", brk="paio_submit", host=False)


def one(rows, name, kind=None):
    hits = find(rows, name, kind)
    assert hits, f"no row {name} {kind or ''}"
    return hits[0]


def test_renamed_stages_carry_both_names(write):
    rows = write.rows
    for old, new in [("bdrv_aio_writev", "blk_aio_pwritev"), ("paio_submit", "raw_thread_pool_submit"),
                     ("qemu_kvm_cpu_thread_fn", "kvm_vcpu_thread_fn"), ("ide_set_irq", "ide_bus_set_irq"),
                     ("bdrv_co_aio_rw_vector", "blk_aio_prwv"), ("bdrv_co_do_rw", "blk_aio_write_entry")]:
        r = one(rows, new)
        assert (r.kind, r.old.name) == ("RENAMED", old), (new, r)
        assert r.old.thread == r.new.thread


def test_added_and_removed_stages(write):
    rows, new = write.rows, write.new.stages
    assert {r.kind for r in find(rows, "bdrv_aligned_pwritev")} == {"ADDED"}
    assert len(find(rows, "bdrv_aligned_pwritev")) == 2  # once per block node
    drivers = find(rows, "bdrv_driver_pwritev")
    assert sorted(r.kind for r in drivers) == ["ADDED", "RENAMED"]  # the second node's is new
    assert sum(1 for s in new if s.name == "bdrv_driver_pwritev") == 2
    assert one(rows, "flatview_write").kind == "ADDED"
    assert one(rows, "cpu_outw").kind == "REMOVED" and one(rows, "cpu_outb").kind == "REMOVED"
    assert one(rows, "bdrv_check_request").kind == "REMOVED"
    # the per-word exits stay one row each, with their count, on both stacks
    ide = one(rows, "ide_data_writew")
    assert ide.kind == "SAME" and ide.old.count == ide.new.count == 256


def test_the_pool_worker_still_does_the_pwrite(write):
    pw = [r for r in write.rows if r.new is not None and r.new.layer == "host" and "pwrite" in r.new.name]
    assert pw and all(r.new.thread.startswith("worker") for r in pw)
    assert pw[0].kind in ("SAME", "RENAMED") and pw[0].old.thread.startswith("worker")  # the system call's entry


def test_backtraces_at_matching_stops(write, read):
    assert write.break_names == ("bdrv_aio_writev", "blk_aio_pwritev")
    old, new = write.backtraces["old"]["frames"], write.backtraces["new"]["frames"]
    assert (old[0]["function"], old[0]["file"], old[0]["line"]) == ("bdrv_aio_writev", "block.c", 3388)
    assert (new[0]["function"], new[0]["file"], new[0]["stack"]) == ("blk_aio_pwritev", "block/block-backend.c",
                                                                      "10.2")
    assert [f["function"] for f in new[1:3]] == ["ide_sector_write", "ide_data_writew"]
    assert new[1]["file"] == "hw/ide/core.c" and new[1]["line"] != old[1]["line"]
    assert "kvm_vcpu_thread_fn" in [f["function"] for f in new] and "cpu_outw" not in [f["function"] for f in new]
    assert read.break_names == ("paio_submit", "raw_thread_pool_submit")
    assert read.backtraces["new"]["frames"][0]["function"] == "raw_thread_pool_submit"


def test_exit_counts_are_equal_where_they_must_be(write, read):
    for r in (write, read):
        assert all(e["old"] == e["new"] for e in r.exit_table()), r.exit_table()
        assert r.old.image_ok and r.new.image_ok
    data = next(e for e in write.exit_table() if e["port"] == 0x1F0)
    assert (data["old"], data["new"]) == (256, 256)
    assert read.old.rep_ins_counts == read.new.rep_ins_counts == [256]


def test_the_kernels_differ_at_a_plain_out(write):
    """3.7 skips a plain OUT before it exits; 6.12 VMX exits with RIP on the OUT (x86.c kvm_fast_pio_out /
    complete_fast_pio_out): the same guest, other RIPs at the same exits."""
    assert (write.old.plain_out_rip, write.new.plain_out_rip) == ("past", "at")
    assert any("complete_fast_pio_out" in n and "x86.c" in n for n in write.notes())
    names = [d["name"] for d in write.to_json()["exits"]["kernel_differences"]]
    assert "out_rip" in names and "rep_ins_page_batch" in names


def test_the_read_path_aligns_too(read):
    r = one(read.rows, "blk_aio_preadv")
    assert (r.kind, r.old.name) == ("RENAMED", "bdrv_aio_readv")
    assert one(read.rows, "blk_aio_read_entry").old.name == "bdrv_co_do_rw"
    assert one(read.rows, "bdrv_aligned_preadv").kind == "ADDED"


def test_each_run_keeps_its_recorded_trace_for_figures(write):
    from vmio_edu.widgets.figures import find_arrows

    # the run's events (counted at the halt), then the machine's shutdown
    assert len(write.old.trace) >= write.old.events and len(write.new.trace) >= write.new.events
    worker = next(s.first for s in write.new.stages if s.thread.startswith("worker"))
    (a,) = find_arrows(write.new.trace, [("qemu_bh_schedule", "thread_pool_completion_bh", "bottom half")],
                       start=worker)
    assert (a.src_thread, a.dst_thread) == ("worker-1", "main")


def test_same_inputs_same_comparison(write):
    again = diff_paths(op="write", host=False)
    assert again.to_json() == write.to_json()


def test_cli_default_fits_and_names_both_stacks(capsys):
    assert main(["diff-paths", "--changes"]) == 0
    out = capsys.readouterr().out
    assert all(len(line) <= WIDTH for line in out.splitlines())
    assert "10.2 = QEMU v10.2.0 on Linux v6.12" in out
    assert "Backtrace on 10.2 (QEMU v10.2.0) at blk_aio_pwritev" in out
    line = next(ln for ln in out.splitlines() if " blk_aio_pwritev " in ln)
    assert line.split()[:3] == ["RENAMED", "qemu-block", "bdrv_aio_writev"]


def test_on_real_kvm_both_stacks_see_the_same_kernel(need_kvm):
    """On /dev/kvm the kernel is this host's for both stacks: the exits are equal class by class and the
    RIP at a plain OUT is the same (kvm_pvm advances it, like 3.7 and unlike 6.12 VMX)."""
    r = diff_paths(op="write", engine="kvm", brk=None, host=False)
    assert r.old.engine == r.new.engine == "kvm"
    assert all(e["old"] == e["new"] for e in r.exit_table())
    assert r.old.plain_out_rip == r.new.plain_out_rip == "past"
    assert not [s for s in r.new.stages if s.layer == "vmx"]  # the real kernel's stages are opaque
    assert one(r.rows, "blk_aio_pwritev").kind == "RENAMED"


def test_break_at_a_stage_only_10_2_has(capsys):
    """bdrv_aligned_pwritev has no 1.6.1 counterpart: 10.2's backtrace, and a sentence for 1.6.1."""
    r = diff_paths(op="write", brk="bdrv_aligned_pwritev", host=False)
    assert r.break_names == ("bdrv_aligned_pwritev", "bdrv_aligned_pwritev")
    assert "not on the 1.6.1 stack" in r.backtraces["old"]["error"]
    frames = r.backtraces["new"]["frames"]
    assert frames[0]["function"] == "bdrv_aligned_pwritev" and frames[0]["stack"] == "10.2"
    assert "blk_aio_write_entry" in [f["function"] for f in frames]  # on the coroutine's stack


@pytest.mark.parametrize("stack, where", [("1.6.1", "past"), ("10.2", "at")])
def test_plain_out_rip_reads_the_guests_own_bytes(stack, where):
    """A tiny 16-bit guest: `out dx, al` (0xEE) exits with RIP past it on Linux 3.7 and on it on 6.12 VMX;
    a guest without a plain OUT gives no answer."""
    from vmio_edu import Machine
    from vmio_edu.guest import assemble
    from vmio_edu.trace.diffreport import plain_out_rip

    with Machine(assemble("mov dx, 0x1f0\nmov al, 0x5a\nout dx, al\ncli\nhlt", mode=16), mode=16, stack=stack) as m:
        m.run()
        assert plain_out_rip(m) == where
    with Machine(assemble("cli\nhlt", mode=16), mode=16, stack=stack) as m:
        m.run()
        assert plain_out_rip(m) is None
