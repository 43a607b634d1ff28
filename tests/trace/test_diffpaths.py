"""diff-paths' core: the rename table, reducing a trace to its stages, and aligning two stage lists
(issue 15 item 5). Synthetic stage lists pin the alignment rules; real 1.6.1 runs pin the reduction."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmio_edu import Machine
from vmio_edu.trace.diffpaths import (Stage, align, counterparts, find, load_renames, reduce_stages,
                                      rename_table, summary)

REFERENCE = Path("/work/shared/reference/source-map.json")


def S(name, layer="qemu-block", thread="vcpu0", count=1, **kw):
    return Stage(name, layer, thread, count, **kw)


# -- the rename table ----------------------------------------------------------------------------------
def test_rename_table_has_the_path_renames():
    r = rename_table()
    assert r[("qemu", "bdrv_aio_writev")] == "blk_aio_pwritev"
    assert r[("qemu", "paio_submit")] == "raw_thread_pool_submit"
    assert r[("qemu", "qemu_kvm_cpu_thread_fn")] == "kvm_vcpu_thread_fn"
    assert r[("qemu", "ide_set_irq")] == "ide_bus_set_irq"
    assert r[("linux", "__vcpu_run")] == "vcpu_run"
    # unchanged names and non-functions (a syscall stub, struct kvm_run) are not renames
    assert ("qemu", "kvm_cpu_exec") not in r and ("qemu", "ide_sector_write") not in r
    assert not any(" " in k[1] or "(" in v for k, v in r.items())


@pytest.mark.skipif(not REFERENCE.exists(), reason="the shared reference map is not on this machine")
def test_rename_table_matches_the_reference_map():
    """The packaged sources.json's `modern` members are the reference map's: every packaged rename is the
    map's, and the map's others belong to entries the package keeps without a counterpart (a prototype
    with no definition in 3.7) or leaves out (functions off the modelled path)."""
    ref, pkg = load_renames(REFERENCE), rename_table()
    assert len(ref) >= 30 and len(json.loads(REFERENCE.read_text())) >= 180
    assert {k: ref.get(k) for k in pkg} == pkg
    packaged = json.loads((Path(__import__("vmio_edu.trace", fromlist=["x"]).__file__).parent
                           / "sources.json").read_text())
    for side, name in set(ref) - set(pkg):
        assert (packaged.get(f"{side}:{name}") or {}).get("modern") is None, (side, name)


def test_rename_table_from_a_bad_file_says_so(tmp_path):
    p = tmp_path / "map.json"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read the rename table"):
        load_renames(p)


def test_counterparts_take_either_name():
    assert counterparts("bdrv_aio_writev") == ("bdrv_aio_writev", "blk_aio_pwritev")
    assert counterparts("blk_aio_pwritev") == ("bdrv_aio_writev", "blk_aio_pwritev")
    assert counterparts("ide_sector_write") == ("ide_sector_write", "ide_sector_write")


# -- alignment on synthetic stage lists ----------------------------------------------------------------
RENAMES = {("qemu", "bdrv_aio_writev"): "blk_aio_pwritev", ("qemu", "paio_submit"): "raw_thread_pool_submit",
           ("qemu", "bdrv_co_writev_em"): "bdrv_driver_pwritev"}


def kinds(rows):
    return [(r.kind, r.old.name if r.old else None, r.new.name if r.new else None) for r in rows]


def test_same_renamed_added_removed():
    old = [S("ide_sector_write", "qemu-ide"), S("bdrv_aio_writev"), S("bdrv_co_writev_em"), S("cpu_outw"),
           S("paio_submit")]
    new = [S("ide_sector_write", "qemu-ide"), S("blk_aio_pwritev"), S("bdrv_aligned_pwritev"),
           S("bdrv_driver_pwritev"), S("bdrv_driver_pwritev"), S("raw_thread_pool_submit")]
    assert kinds(align(old, new, RENAMES)) == [
        ("SAME", "ide_sector_write", "ide_sector_write"),
        ("RENAMED", "bdrv_aio_writev", "blk_aio_pwritev"),
        ("ADDED", None, "bdrv_aligned_pwritev"),
        ("RENAMED", "bdrv_co_writev_em", "bdrv_driver_pwritev"),
        ("REMOVED", "cpu_outw", None),
        ("ADDED", None, "bdrv_driver_pwritev"),  # the second node's
        ("RENAMED", "paio_submit", "raw_thread_pool_submit"),
    ]


def test_a_stage_on_another_thread_is_moved():
    old = [S("kvm_cpu_exec", "qemu-cpu"), S("ide_sector_write_cb", "qemu-ide", thread="main")]
    new = [S("kvm_cpu_exec", "qemu-cpu"), S("ide_sector_write_cb", "qemu-ide", thread="vcpu0")]
    rows = align(old, new, {})
    assert kinds(rows) == [("SAME", "kvm_cpu_exec", "kvm_cpu_exec"),
                           ("MOVED", "ide_sector_write_cb", "ide_sector_write_cb")]
    assert rows[1].note == "main → vcpu0"


def test_workers_are_one_thread_role_whatever_their_number():
    rows = align([S("handle_aiocb_rw", thread="worker-1")], [S("handle_aiocb_rw", thread="worker-3")], {})
    assert kinds(rows) == [("SAME", "handle_aiocb_rw", "handle_aiocb_rw")]


def test_a_same_name_beats_a_rename_onto_it():
    """aio_worker -> handle_aiocb_rw and handle_aiocb_rw -> itself: 10.2's one handle_aiocb_rw is the
    same function, so aio_worker is the one removed."""
    renames = {("qemu", "aio_worker"): "handle_aiocb_rw"}
    old = [S("worker_thread", thread="worker-1"), S("aio_worker", thread="worker-1"),
           S("handle_aiocb_rw", thread="worker-1")]
    new = [S("worker_thread", thread="worker-1"), S("handle_aiocb_rw", thread="worker-1")]
    assert kinds(align(old, new, renames)) == [("SAME", "worker_thread", "worker_thread"),
                                               ("REMOVED", "aio_worker", None),
                                               ("SAME", "handle_aiocb_rw", "handle_aiocb_rw")]


def test_a_chain_the_other_stack_merged_is_not_removed():
    """1.6.1 enters the memory API through cpu_outb and again through cpu_outw; 10.2 through one chain:
    the second 1.6.1 chain's functions are reached in 10.2 too, through the chain listed first."""
    old = [S("kvm_handle_io", "qemu-cpu", count=263), S("cpu_outb", "qemu-cpu", count=7),
           S("portio_write", "qemu-memory", count=7), S("ide_ioport_write", "qemu-ide", count=7),
           S("cpu_outw", "qemu-cpu", count=256), S("portio_write", "qemu-memory", count=256),
           S("ide_data_writew", "qemu-ide", count=256)]
    new = [S("kvm_handle_io", "qemu-cpu", count=263), S("portio_write", "qemu-memory", count=263),
           S("ide_ioport_write", "qemu-ide", count=7), S("ide_data_writew", "qemu-ide", count=256)]
    rows = align(old, new, {})
    assert kinds(rows) == [("SAME", "kvm_handle_io", "kvm_handle_io"), ("REMOVED", "cpu_outb", None),
                           ("SAME", "portio_write", "portio_write"),
                           ("SAME", "ide_ioport_write", "ide_ioport_write"), ("REMOVED", "cpu_outw", None),
                           ("SAME", "portio_write", "portio_write"),
                           ("SAME", "ide_data_writew", "ide_data_writew")]
    assert [r.merged for r in rows] == ["", "", "", "", "", "new", ""]
    assert rows[5].new is rows[2].new
    # with fewer calls in 10.2 than the two 1.6.1 chains made, the second chain really is gone
    new[1] = S("portio_write", "qemu-memory", count=7)
    assert [r.kind for r in align(old, new, {})][5] == "REMOVED"


def test_a_counterpart_reached_at_another_point_is_paired_where_10_2_has_it():
    """bdrv_co_io_em's job (submit to the pool from the coroutine, then yield) is thread_pool_submit_co's
    in 10.2, which runs after raw_thread_pool_submit instead of before raw_co_prw: the order crosses, so
    the LCS leaves both over; they are paired, in 10.2's place, with a note."""
    renames = {("qemu", "bdrv_co_io_em"): "thread_pool_submit_co"}
    old = [S("bdrv_driver_pwritev"), S("bdrv_co_io_em"), S("raw_co_prw"), S("raw_thread_pool_submit")]
    new = [S("bdrv_driver_pwritev"), S("raw_co_prw"), S("raw_thread_pool_submit"), S("thread_pool_submit_co")]
    rows = align(old, new, renames)
    assert kinds(rows)[-1] == ("RENAMED", "bdrv_co_io_em", "thread_pool_submit_co")
    assert "another point of the run" in rows[-1].note and len(rows) == 4


def test_the_read_side_entry_is_a_counterpart_too():
    rows = align([S("bdrv_co_do_rw")], [S("blk_aio_read_entry")], rename_table())
    assert kinds(rows) == [("RENAMED", "bdrv_co_do_rw", "blk_aio_read_entry")]
    assert kinds(align([S("bdrv_co_do_rw")], [S("blk_aio_read_entry")], {}))[0][0] == "REMOVED"


def test_a_model_that_keeps_the_old_name_still_matches():
    """The map renames sys_pwrite64 to ksys_pwrite64; a 10.2 model that kept sys_pwrite64 is the same stage."""
    renames = {("linux", "sys_pwrite64"): "ksys_pwrite64"}
    rows = align([S("sys_pwrite64", "host", "worker-1")], [S("sys_pwrite64", "host", "worker-1")], renames)
    assert kinds(rows) == [("SAME", "sys_pwrite64", "sys_pwrite64")]


def test_alignment_is_deterministic_and_total():
    old = [S(n) for n in "a b c a b c d".split()]
    new = [S(n) for n in "a c b c d a".split()]
    first = kinds(align(old, new, {}))
    assert first == kinds(align(old, new, {}))
    rows = align(old, new, {})
    # every stage once (the 1.6.1 ones may be reordered to where 10.2 has them), 10.2's in its order
    assert sorted(id(r.old) for r in rows if r.old is not None and r.merged != "old") == sorted(map(id, old))
    assert [id(r.new) for r in rows if r.new is not None and r.merged != "new"] == list(map(id, new))
    assert sum(summary(rows).values()) == len(rows)


def test_shared_code_is_marked_on_the_row():
    rows = align([S("ide_sector_write", "qemu-ide")], [S("ide_sector_write", "qemu-ide", shared=True)], {})
    assert rows[0].kind == "SAME" and rows[0].shared


# -- reducing real 1.6.1 runs --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def write_stages():
    with Machine(op="write", record=True) as m:
        m.run()
        return reduce_stages(m.trace.events)


def test_the_per_word_exits_collapse_into_counted_rows(write_stages):
    by = {(s.thread, s.name, s.layer): s for s in write_stages}
    assert by[("vcpu0", "ide_data_writew", "qemu-ide")].count == 256
    assert by[("vcpu0", "cpu_outw", "qemu-cpu")].count == 256
    assert by[("vcpu0", "ide_sector_write", "qemu-ide")].count == 1
    assert len(write_stages) < 300  # thousands of events, a couple of hundred stages
    assert by[("worker-1", "sys_pwrite64", "host")].file == "fs/read_write.c"


def test_coroutine_stages_hang_under_the_enter_and_resume_on_main(write_stages):
    st = write_stages
    co = next(s for s in st if s.name == "bdrv_co_do_rw")
    assert co.coroutine and st[co.parent].name == co.caller == "qemu_coroutine_enter"
    files = [s for s in st if s.name == "bdrv_co_do_writev"]
    assert len(files) == 2  # the raw format node's and the file node's: two chains, two stages
    resumed = [s for s in st if s.coroutine and s.thread == "main"]
    assert resumed, "the coroutine's work after the pool's completion runs on the main loop"


def test_two_runs_of_one_stack_are_all_same(write_stages):
    with Machine(op="write", record=True) as m:
        m.run()
        again = reduce_stages(m.trace.events)
    rows = align(write_stages, again, old_name="1.6.1", new_name="1.6.1")
    assert summary(rows) == {"SAME": len(write_stages), "RENAMED": 0, "ADDED": 0, "REMOVED": 0, "MOVED": 0}
    assert [s.to_json() for s in again] == [s.to_json() for s in write_stages]


def test_a_write_and_a_read_differ_where_they_should(write_stages):
    with Machine(op="read", record=True) as m:
        m.run()
        read = reduce_stages(m.trace.events)
    rows = align(write_stages, read, old_name="1.6.1", new_name="1.6.1")
    assert find(rows, "bdrv_aio_writev")[0].kind == "REMOVED"
    assert find(rows, "bdrv_aio_readv")[0].kind == "ADDED"
    assert find(rows, "kvm_cpu_exec")[0].kind == "SAME"
