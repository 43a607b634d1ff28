"""The panel view of diff-paths: coloured row kinds, links to the real lines at each stack's tag, both
backtraces, the exits; themed by JupyterLab's variables; built once, read-only."""
from __future__ import annotations

import re

import pytest

from vmio_edu.trace.diffpaths import Stage, align
from vmio_edu.trace.diffreport import DiffResult, StackRun, diff_paths
from vmio_edu.widgets import diffview as V


def stage(name, layer="qemu-block", thread="vcpu0", count=1, file="block.c", line=10, **kw):
    return Stage(name, layer, thread, count, file=file, line=line, **kw)


@pytest.fixture(scope="module")
def synthetic():
    """Every row kind, from made-up stages (the rules are tested in tests/trace/test_diffpaths.py)."""
    old = [stage("ide_sector_write", "qemu-ide", file="hw/ide/core.c", line=790),
           stage("bdrv_aio_writev", file="block.c", line=3384), stage("cpu_outw", "qemu-cpu"),
           stage("ide_sector_write_cb", "qemu-ide", thread="main")]
    new = [stage("ide_sector_write", "qemu-ide", file="hw/ide/core.c", line=1075, shared=True),
           stage("blk_aio_pwritev", file="block/block-backend.c", line=1716), stage("bdrv_aligned_pwritev"),
           stage("ide_sector_write_cb", "qemu-ide", thread="worker-1")]
    rows = align(old, new, {("qemu", "bdrv_aio_writev"): "blk_aio_pwritev"})
    run = lambda st, stages: StackRun(st, "QEMU " + st, "Linux x", "unicorn", stages, [], "past", [], True)
    return DiffResult("write", 0, 1, run("1.6.1", old), run("10.2", new), rows)


def test_every_kind_has_its_themed_colour(synthetic):
    page = V.diff_html(synthetic, "all")
    for kind in ("SAME", "RENAMED", "ADDED", "REMOVED", "MOVED"):
        assert f'class="vmio-row-{kind}"' in page, kind
        look = f"border:1px solid {V.KIND_COLOURS[kind]}" if kind == "SAME" else f"background:{V.KIND_COLOURS[kind]}"
        assert f'class="vmio-kind vmio-kind-{kind}" style="{look}' in page
    assert all(c.startswith("var(--jp-") for c in V.KIND_COLOURS.values())
    # every colour in the style sheet comes from the theme (a fallback inside var() only)
    outside = re.sub(r"var\([^()]*\)", "", V.STYLE)
    assert not re.search(r"#[0-9a-fA-F]{3,6}\b", outside.replace("#fff;", ""))


def test_names_link_to_the_real_line_at_each_stacks_tag(synthetic):
    page = V.diff_html(synthetic, "all")
    assert "https://github.com/qemu/qemu/blob/v1.6.1/block.c#L3384" in page
    assert "https://github.com/qemu/qemu/blob/v10.2.0/block/block-backend.c#L1716" in page
    assert "≡" in page  # ide_sector_write: shared code


def test_changes_tab_keeps_changes_and_their_context(synthetic):
    page = V.diff_html(synthetic, "changes")
    kinds = re.findall(r'class="vmio-row-(\w+)"', page)
    assert "SAME" in kinds and kinds.count("SAME") <= 1  # only as the context before a change
    assert {"RENAMED", "ADDED", "REMOVED", "MOVED"} <= set(kinds)


def test_the_widget_has_four_tabs_and_fits_the_screen(synthetic):
    box = V.diff_view(synthetic)
    tabs = box.children[1]
    assert [tabs.get_title(i) for i in range(5)] == ["Changes", "Aligned path", "Ladder", "Backtraces", "Exits"]
    assert "max-height: 470px" in V.STYLE and "max-width: 1300px" in V.STYLE  # 1366×768 with JupyterLab's bars
    assert "no matching stop" in tabs.children[3].value.lower()
    with pytest.raises(ValueError, match="unknown tab"):
        V.diff_html(synthetic, "nope")


def test_a_real_comparison_renders_backtraces_and_exits():
    r = diff_paths(op="write", old="1.6.1", new="1.6.1", host=False)
    bt = V.tab_html(r, "backtraces")
    assert bt.count("<b>bdrv_aio_writev</b>") == 2 and "hw/ide/core.c:798" in bt
    assert ":None" not in bt and " at <" in bt
    ex = V.tab_html(r.to_json(), "exits")  # the JSON form renders the same
    assert re.search(r"IO out port=0x1f0 size=2</td><td>256</td><td>256</td>", ex)
    assert "class=\"vmio-differs\"" not in ex
    # the measured kernel facts: values, those that differ from 6.12 marked
    row = re.search(r"<code>out_rip</code></td>(.*?)</tr>", ex).group(1)
    assert re.findall(r">([^<>]+)</td>", row) == ["past", "at", "past"]
    assert row.count("vmio-kernel-differs") == 2
    batch = re.search(r"<code>rep_ins_page_batch</code></td>(.*?)</tr>", ex).group(1)
    assert re.findall(r">([^<>]+)</td>", batch) == ["128 + 128", "256", "256"] and batch.count("differs") == 1


def test_ladder_numbers_each_column_in_its_own_path_order(synthetic):
    import matplotlib
    matplotlib.use("Agg")
    from vmio_edu.widgets.diffladder import ladder, rungs

    rs = rungs(synthetic, layers=("qemu-ide", "qemu-block", "qemu-cpu"))
    got = [(r.kind, r.old, r.new, r.old_y, r.new_y) for r in rs]
    assert got == [("SAME", "ide_sector_write", "ide_sector_write", 0, 0),
                   ("RENAMED", "bdrv_aio_writev", "blk_aio_pwritev", 1, 1),
                   ("REMOVED", "cpu_outw", None, 2, None),
                   ("ADDED", None, "bdrv_aligned_pwritev", None, 2),
                   ("MOVED", "ide_sector_write_cb", "ide_sector_write_cb", 3, 3)]
    assert [r.new for r in rungs(synthetic, threads=("main", "worker-1"))] == ["ide_sector_write_cb"]
    assert ladder(synthetic, layers=("qemu-ide", "qemu-block", "qemu-cpu")) == rs
    with pytest.raises(ValueError, match="no aligned stage"):
        rungs(synthetic, layers=("vmx",))


def test_backtraces_tab_without_a_line_or_without_a_stop(synthetic):
    d = synthetic.to_json()
    d["break"] = {"old": {"function": "f", "thread": "vcpu0", "frames": [
        {"level": 0, "function": "f", "args": {"x": 1}, "file": "", "line": None, "layer": "qemu-block",
         "thread": "vcpu0", "stack": "1.6.1"}]},
        "new": {"function": "g", "error": "g is not on the 10.2 stack"}}
    page = V.tab_html(d, "backtraces")
    assert "#0  <b>f</b> (x=1)</div>" not in page and "(x=1)\n" not in page and "(x=1)</pre>" in page
    assert "g is not on the 10.2 stack" in page and "None" not in page


def test_ladder_tab_is_themed_svg(synthetic):
    page = V.tab_html(synthetic, "ladder")
    assert "<svg" in page and "blk_aio_pwritev" in page and "bdrv_aio_writev" in page
    assert ".vmio-ladder svg text { fill: var(--jp-ui-font-color1" in page
    assert 'fill: #ffffff' not in page  # a transparent background, not a white sheet in the dark theme
    assert page == V.tab_html(synthetic, "ladder")  # the same comparison, the same SVG
