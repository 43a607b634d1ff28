"""Notebook 11 (issue 15 item 5): the learner predicts what changed before seeing the aligned paths, then
reads them, the two backtraces, the exits and the permalinks at both tags. (test_notebooks.py executes it
with every notebook; this checks its shape, which the layer notebooks' test does not cover.)"""
import json
from pathlib import Path

NB = Path(__file__).resolve().parents[2] / "notebooks" / "11-then-and-now.ipynb"


def _cells():
    return json.loads(NB.read_text())["cells"]


def test_predictions_come_before_the_answers():
    cells = _cells()
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    first_predict = next(i for i, s in enumerate(code) if "predict(" in s)
    first_table = next(i for i, s in enumerate(code) if "diff_view(" in s)
    assert sum(s.count("predict(") for s in code) >= 3
    assert first_predict < first_table, "the learner must predict before the table shows the answers"
    # the answers are computed from the runs, not written in
    assert any("answer=len(block_added)" in s for s in code)
    assert any("answer=pwrite.thread" in s for s in code)
    assert any("new.plain_out_rip" in s for s in code)


def test_it_shows_both_stacks_and_their_sources():
    every = "\n".join("".join(c["source"]) for c in _cells())
    assert "diff_paths(" in every and "diff_view(" in every and "plt.show()" in every
    assert 'result.backtraces["old"]' in every and 'result.backtraces["new"]' in every
    assert 'stack="10.2"' in every and "dbg.panel()" in every
    assert "real_url(" in every and "exit_table()" in every
    assert "semantics.md" not in every and "shared/reference" not in every


def test_ci_checks_are_folded_last():
    cells = _cells()
    last = cells[-1]
    assert last["cell_type"] == "code" and last["metadata"].get("jupyter", {}).get("source_hidden") is True
    src = "".join(last["source"])
    assert src.count("assert") >= 10 and '"RENAMED"' in src and "cpu_outw" in src
    assert cells[-2]["cell_type"] == "markdown" and "".join(cells[-2]["source"]).startswith("## Checks for CI")
