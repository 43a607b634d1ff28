"""`vmio-edu diff-paths`: its text fits 100 columns, its JSON keeps a stable schema, bad input is named.
(End-to-end tests across QEMU 1.6.1 and 10.2 are in tests/e2e/test_diff_paths_stacks.py.)"""
from __future__ import annotations

import json

import pytest

from vmio_edu.cli import main
from vmio_edu.trace.diffreport import WIDTH, break_pair

SAME_STACK = ["diff-paths", "--stacks", "1.6.1,1.6.1"]


def run(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def json_run():
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(SAME_STACK + ["--format", "json"]) == 0
    return json.loads(buf.getvalue())


def test_text_fits_the_width_and_shows_every_part(capsys):
    code, out, _ = run(capsys, *SAME_STACK)
    assert code == 0
    lines = out.splitlines()
    too_wide = [ln for ln in lines if len(ln) > WIDTH]
    assert not too_wide, too_wide[:3]
    assert any(ln.startswith("── thread vcpu0") for ln in lines)
    assert any(ln.startswith("── thread worker-1") for ln in lines)
    ide = next(ln for ln in lines if " ide_data_writew " in ln)
    assert ide.split()[0] == "SAME" and ide.count("×256") == 2
    assert "Backtrace on 1.6.1 (QEMU v1.6.1) at bdrv_aio_writev, thread vcpu0:" in out
    assert "#0  bdrv_aio_writev (" in out and "at block.c:3388" in out
    total = next(ln for ln in lines if ln.strip().startswith("total"))
    assert total.split()[1:] == ["267", "267"]
    assert "RIP at the exit of a plain OUT" in out


def test_json_schema_is_stable(json_run):
    d = json_run
    assert set(d) == {"schema", "command", "op", "lba", "sectors", "stacks", "summary", "rows", "break", "exits"}
    assert d["schema"] == 2 and d["command"] == "diff-paths" and d["op"] == "write"
    assert set(d["summary"]) == {"SAME", "RENAMED", "ADDED", "REMOVED", "MOVED"}
    assert d["summary"]["SAME"] == len(d["rows"]) > 100
    row = d["rows"][0]
    assert set(row) == {"kind", "old", "new", "shared", "merged", "note"}
    assert set(row["old"]) == {"name", "layer", "thread", "count", "depth", "first", "parent", "caller",
                               "coroutine", "file", "line", "shared"}
    assert set(d["stacks"]["old"]) == {"stack", "qemu", "linux", "engine", "stages", "trace_events", "image_ok",
                                       "problems", "engine_note"}
    assert d["stacks"]["old"]["problems"] == []
    assert d["break"]["old"]["function"] == d["break"]["new"]["function"] == "bdrv_aio_writev"
    assert d["break"]["old"]["frames"][0]["function"] == "bdrv_aio_writev"
    assert set(d["exits"]) == {"old_total", "new_total", "classes", "facts", "notes", "kernel_differences"}
    data = next(c for c in d["exits"]["classes"] if c["port"] == 0x1F0)
    assert data == {"reason": "IO", "direction": "out", "port": 0x1F0, "size": 2, "old": 256, "new": 256}
    assert d["exits"]["facts"][0]["fact"] == "plain_out_rip" and d["exits"]["facts"][0]["old"] == "past"
    kd = {k["name"]: k for k in d["exits"]["kernel_differences"]}
    assert set(kd["out_rip"]) == {"name", "what", "linux_3_7", "linux_6_12", "kvm_pvm", "kvm_pvm_differs_from_6_12",
                                  "why_3_7", "why_6_12", "where_6_12"}
    # measured values, not prose: the same word the run's own facts use
    assert (kd["out_rip"]["linux_3_7"], kd["out_rip"]["linux_6_12"]) == ("past", "at")
    assert kd["rep_ins_page_batch"]["linux_3_7"] == [128, 128]
    assert [k for k in kd if kd[k]["kvm_pvm_differs_from_6_12"]] == ["out_rip"]


def test_json_is_deterministic(json_run, capsys):
    code, out, _ = run(capsys, *SAME_STACK, "--format", "json")
    assert code == 0 and json.loads(out) == json_run


def test_read_and_no_break(capsys):
    code, out, _ = run(capsys, *SAME_STACK, "--op", "read", "--break", "none", "--format", "json")
    d = json.loads(out)
    assert code == 0 and d["break"] is None and d["op"] == "read"
    assert any(r["old"]["name"] == "bdrv_aio_readv" for r in d["rows"] if r["old"])
    assert d["exits"]["facts"][1]["old"] == [256]  # one rep insw batch of 256 words


@pytest.mark.parametrize("args, message", [
    (["--stacks", "1.6.1"], "--stacks takes two stacks"),
    (["--stacks", "1.6.1,9.9"], "unknown stack '9.9'"),
    (["--sectors", "0"], "sectors must be 1..256"),
    (["--stacks", "10.2,1.6.1"], "put the older stack first (--stacks 1.6.1,10.2)"),
    (["--break", "no_such_function"], "no modelled function is called 'no_such_function'"),
])
def test_bad_input_is_named(capsys, args, message):
    code, out, err = run(capsys, "diff-paths", *(["--stacks", "1.6.1,1.6.1"] if "--stacks" not in args else []),
                         *args)
    assert code != 0 and message in err and not out


def test_a_failed_image_check_says_what_failed(capsys):
    # as `vmio-edu trace` does: a sector past the image's end is named, not "does not hold what the guest wrote"
    code, out, _ = run(capsys, *SAME_STACK, "--lba", "5000", "--break", "none")
    assert code == 1
    failed = out[out.index("IMAGE CHECK FAILED"):]
    assert "sector 5000 is past the end of the image (2048 sectors)" in failed.replace("\n  ", " ")
    assert all(len(line) <= WIDTH for line in failed.splitlines())


def test_the_default_break_on_10_2_against_itself_is_its_own_entry(capsys):
    # the default --break is 1.6.1's bdrv_aio_writev; on 10.2 alone that is blk_aio_pwritev, not an error
    code, out, err = run(capsys, "diff-paths", "--stacks", "10.2,10.2")
    assert code == 0, err
    assert out.count("Backtrace on 10.2 (QEMU v10.2.0) at blk_aio_pwritev, thread vcpu0:") == 2


def test_break_takes_either_stacks_name():
    assert break_pair("bdrv_aio_writev", "1.6.1", "10.2") == ("bdrv_aio_writev", "blk_aio_pwritev")
    assert break_pair("blk_aio_pwritev", "1.6.1", "10.2") == ("bdrv_aio_writev", "blk_aio_pwritev")
    assert break_pair("paio_submit", "1.6.1", "10.2") == ("paio_submit", "raw_thread_pool_submit")
    assert break_pair("ide_sector_write", "1.6.1", "10.2") == ("ide_sector_write", "ide_sector_write")
    assert break_pair("blk_aio_pwritev", "1.6.1", "1.6.1") == ("blk_aio_pwritev", "blk_aio_pwritev")


def test_changes_only_keeps_each_change_after_its_place():
    from vmio_edu.trace.diffpaths import Stage, align
    from vmio_edu.trace.diffreport import format_rows

    old = [Stage(n, "qemu-block", "vcpu0") for n in ("a", "b", "c", "d", "e")]
    new = [Stage(n, "qemu-block", "vcpu0") for n in ("a", "b", "x", "c", "d")]
    lines = format_rows(align(old, new, {}), changes_only=True)
    body = [ln.split()[:3] for ln in lines[2:]]
    assert body == [["SAME", "qemu-block", "b"], ["ADDED", "qemu-block", "x"], ["SAME", "qemu-block", "d"],
                    ["REMOVED", "qemu-block", "e"]]
    assert len(format_rows(align(old, new, {}))) == 2 + 6
