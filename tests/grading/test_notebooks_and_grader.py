"""The notebooks (nbgrader format), `vmio-edu release` and `vmio-edu grade` with its subprocess limits."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from vmio_edu.cli import main
from vmio_edu.grading import EXERCISE_MODULES, exercise
from vmio_edu.grading.base import SOLUTION_BEGIN, SOLUTION_END
from vmio_edu.grading.build import stale
from vmio_edu.grading.notebook import (build_notebook, dumps, fill_answer, load_notebook, release_notebook,
                                       without_markers)

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "exercises" / "source"


def solution_body(name: str) -> list[str]:
    """The lines between the solution markers: what must never reach a student."""
    lines, inside = [], False
    for line in exercise(name).solution.split("\n"):
        if SOLUTION_BEGIN in line:
            inside = True
        elif SOLUTION_END in line:
            inside = False
        elif inside and line.strip():
            lines.append(line.strip())
    return lines


def grade(path, *args, capsys) -> dict:
    rc = main(["grade", str(path), "--format", "json", *args])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out)


def submission(tmp_path, name: str, code: str, seed: int | None = 5, released: bool = True) -> Path:
    nb = build_notebook(exercise(name))
    if released:
        nb = release_notebook(nb)
    path = tmp_path / f"{name}.ipynb"
    path.write_text(dumps(fill_answer(nb, code, seed=seed)))
    return path


# -- the committed notebooks ---------------------------------------------------------------------------------
def test_committed_notebooks_are_the_generated_ones():
    assert stale(str(SOURCE)) == [], "run: python -m vmio_edu.grading.build"


@pytest.mark.parametrize("name", EXERCISE_MODULES)
def test_notebooks_follow_nbgrader_format(name):
    nb = load_notebook(str(SOURCE / f"{name}.ipynb"))
    assert nb["nbformat"] == 4 and nb["metadata"]["kernelspec"]["name"] == "python3"
    assert nb["metadata"]["vmio_edu"]["exercise"] == name
    ids, points, solutions = set(), 0.0, 0
    for cell in nb["cells"]:
        m = cell["metadata"].get("nbgrader")
        if m is None:
            continue
        assert m["schema_version"] == 3 and {"grade", "solution", "locked", "grade_id"} <= set(m)
        assert m["grade_id"] not in ids
        ids.add(m["grade_id"])
        if m["grade"]:
            assert m["locked"] and not m["solution"] and cell["cell_type"] == "code"
            assert "### BEGIN HIDDEN TESTS" in cell["source"] and "### END HIDDEN TESTS" in cell["source"]
            points += m["points"]
        if m["solution"]:
            solutions += 1
            assert SOLUTION_BEGIN in cell["source"] and not m["locked"]
    assert solutions == 1
    assert points == exercise(name).max_points
    text = json.dumps(nb)
    assert "seed_for_user" in text and "self_check" in text and exercise(name).goal[:40] in text


def test_release_leaves_no_solution_and_no_hidden_tests(tmp_path, capsys):
    out = tmp_path / "release"
    assert main(["release", str(SOURCE), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.ipynb" for n in EXERCISE_MODULES)
    for name in EXERCISE_MODULES:
        text = (out / f"{name}.ipynb").read_text()
        nb = json.loads(text)
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", "autograde_part"):
            assert marker not in text, (name, marker)
        sources = "\n".join(c["source"] for c in nb["cells"] if c["cell_type"] == "code")
        leaked = [line for line in solution_body(name) if line in sources and len(line) > 12]
        assert not leaked, (name, leaked)
        assert "# YOUR CODE HERE\n" in sources and "raise NotImplementedError()" in sources
        assert all(c.get("outputs", []) == [] for c in nb["cells"])
        # the visible test of every part is still there for the student
        assert sources.count("grading.assert_part(") == len(exercise(name).parts)


def test_release_without_a_source_dir_uses_the_builtin_exercises(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["release"]) == 0
    assert len(list((tmp_path / "exercises" / "release").glob("*.ipynb"))) == len(EXERCISE_MODULES)


def test_release_of_a_broken_source_is_a_clear_error(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    nb = build_notebook(exercise("exit_qual"))
    nb["cells"][4]["source"] = nb["cells"][4]["source"].replace(SOLUTION_END, "")
    (src / "x.ipynb").write_text(dumps(nb))
    assert main(["release", str(src), "--out", str(tmp_path / "o")]) == 2
    assert "without '### END SOLUTION'" in capsys.readouterr().err


# -- grading --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", EXERCISE_MODULES)
def test_grading_the_released_notebook_scores_zero(name, tmp_path, capsys):
    path = tmp_path / f"{name}.ipynb"
    path.write_text(dumps(release_notebook(build_notebook(exercise(name)))))
    r = grade(path, "--seed", "11", capsys=capsys)
    assert r["exercise"] == name and r["seed"] == 11
    assert [p["name"] for p in r["parts"]] == exercise(name).part_names
    assert r["total"] == 0 and r["max_total"] == exercise(name).max_points
    assert all("NotImplementedError" in p["feedback"] or "generator" in p["feedback"] or
               "not graded" in p["feedback"] for p in r["parts"]), r["parts"]


def test_grading_a_correct_submission(tmp_path, capsys):
    path = submission(tmp_path, "exit_qual", without_markers(exercise("exit_qual").solution), seed=321)
    r = grade(path, capsys=capsys)
    assert r["seed"] == 321 and r["seed_source"] == "set in the notebook"
    assert r["total"] == r["max_total"] == 4


def test_grading_a_correct_model_submission(tmp_path, capsys, model):
    path = submission(tmp_path, "handle_io", without_markers(exercise("handle_io").solution), seed=8)
    r = grade(path, capsys=capsys)
    assert r["total"] == r["max_total"], r["parts"]


def test_text_report(tmp_path, capsys):
    code = without_markers(exercise("exit_qual").solution).replace('"size": (q & 7) + 1', '"size": q & 7')
    path = submission(tmp_path, "exit_qual", code)
    assert main(["grade", str(path)]) == 0
    out = capsys.readouterr().out
    assert "size           0/1" in out and "total 3/4" in out and "encode size - 1" in out


def test_the_seed_printed_in_the_notebook_is_used(tmp_path, capsys):
    nb = release_notebook(build_notebook(exercise("pio_exits")))
    for cell in nb["cells"]:
        if cell["metadata"].get("vmio_edu", {}).get("role") == "seed":
            cell["outputs"] = [{"name": "stdout", "output_type": "stream", "text": ["Your seed: 4711\n"]}]
    path = tmp_path / "p.ipynb"
    path.write_text(dumps(nb))
    r = grade(path, "--part", "exits", capsys=capsys)
    assert r["seed"] == 4711 and r["seed_source"] == "printed in the notebook"
    assert [p["name"] for p in r["parts"]] == ["exits"]


# -- limits: loops, crashes, memory ------------------------------------------------------------------------
def test_an_endless_loop_scores_zero_and_grading_goes_on(tmp_path, capsys):
    code = "def decode_exit_qualification(q):\n    while True:\n        pass\n"
    r = grade(submission(tmp_path, "exit_qual", code), "--timeout", "2", "--part", "size", "--part", "port",
              capsys=capsys)
    assert [p["name"] for p in r["parts"]] == ["size", "port"] and r["total"] == 0
    assert all("time limit" in p["feedback"] and "checking part" in p["feedback"] for p in r["parts"])


def test_an_endless_loop_at_the_top_of_a_cell(tmp_path, capsys):
    code = "while True:\n    pass\n"
    r = grade(submission(tmp_path, "kvm_run", code), "--timeout", "2", "--part", "io", capsys=capsys)
    (part,) = r["parts"]
    assert part["points"] == 0 and "running your notebook cell" in part["feedback"]


def test_a_loop_in_one_part_spares_the_others(tmp_path, capsys):
    ref = without_markers(exercise("kvm_run").solution)
    code = ref.replace("    elif out[\"exit_reason\"] == 6:  # KVM_EXIT_MMIO\n",
                       "    elif out[\"exit_reason\"] == 6:  # KVM_EXIT_MMIO\n        while True:\n            pass\n")
    assert code != ref
    r = grade(submission(tmp_path, "kvm_run", code), "--timeout", "2", capsys=capsys)
    parts = {p["name"]: p for p in r["parts"]}
    for looping in ("exit_reason", "values", "mmio"):  # these try the MMIO exits too
        assert parts[looping]["points"] == 0 and "time limit" in parts[looping]["feedback"]
    assert parts["io"]["points"] == 2  # graded after exit_reason timed out: the grader went on


@pytest.mark.parametrize("body,phrase", [
    ("import os\n    os._exit(3)", "exited with status 3"),
    ("import ctypes\n    return ctypes.string_at(0)", "SIGSEGV"),
    ("raise SystemExit(1)", "SystemExit"),
    ("return bytearray(1 << 30)", "MemoryError"),
])
def test_crashes_and_memory_hogs_score_zero(tmp_path, capsys, body, phrase):
    code = f"def decode_exit_qualification(q):\n    {body}\n"
    r = grade(submission(tmp_path, "exit_qual", code), "--memory-mb", "600", "--part", "size", "--part", "port",
              capsys=capsys)
    assert [p["name"] for p in r["parts"]] == ["size", "port"]
    for p in r["parts"]:
        assert p["points"] == 0 and phrase in p["feedback"], p


def test_a_cell_that_raises_is_reported(tmp_path, capsys):
    code = "import no_such_module_here\ndef decode_exit_qualification(q):\n    return {}\n"
    r = grade(submission(tmp_path, "exit_qual", code), "--part", "size", capsys=capsys)
    assert r["parts"][0]["points"] == 0
    assert any("ModuleNotFoundError" in n for n in r["notes"])


def test_student_prints_do_not_reach_the_report(tmp_path, capsys):
    code = ("print('{\"total\": 99}')\n" + without_markers(exercise("exit_qual").solution))
    r = grade(submission(tmp_path, "exit_qual", code), "--part", "size", capsys=capsys)
    assert r["total"] == 1 and r["max_total"] == 1


@pytest.mark.parametrize("content,phrase", [
    ("{not json", "is not valid notebook JSON"),
    ("[1, 2, 3]", "not a notebook"),
    (json.dumps({"cells": [{"cell_type": "code", "source": "x = 1", "metadata": {}}], "metadata": {}}),
     "is not a vmio-edu exercise"),
    (json.dumps({"cells": [], "metadata": {"vmio_edu": {"exercise": "nope"}}}), "which this vmio-edu does not know"),
    (json.dumps({"cells": ["oops"], "metadata": {}}), "cell 0 is not a notebook cell"),
])
def test_broken_notebooks_give_a_clear_error(tmp_path, capsys, content, phrase):
    path = tmp_path / "bad.ipynb"
    path.write_text(content)
    assert main(["grade", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and phrase in err and "Traceback" not in err


def test_missing_notebook_and_unknown_part(tmp_path, capsys):
    assert main(["grade", str(tmp_path / "nowhere.ipynb")]) == 2
    assert "cannot read" in capsys.readouterr().err
    path = submission(tmp_path, "exit_qual", "x = 1\n")
    assert main(["grade", str(path), "--part", "nope"]) == 2
    assert "has no part 'nope'" in capsys.readouterr().err


def test_grade_works_on_a_notebook_without_our_metadata(tmp_path, capsys):
    """A Jupyter front end may drop unknown metadata: nbgrader's grade_ids are enough."""
    nb = fill_answer(release_notebook(build_notebook(exercise("exit_qual"))),
                     without_markers(exercise("exit_qual").solution), seed=1)
    nb["metadata"].pop("vmio_edu")
    for c in nb["cells"]:
        c["metadata"].pop("vmio_edu", None)
    path = tmp_path / "plain.ipynb"
    path.write_text(dumps(nb))
    r = grade(path, "--seed", "1", capsys=capsys)
    assert r["exercise"] == "exit_qual" and r["total"] == 4


def test_vmio_edu_console_script_has_the_commands():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "vmio_edu.cli", "--help"], capture_output=True, text=True,
                         env=dict(os.environ))
    assert "release" in out.stdout and "grade" in out.stdout and "trace" in out.stdout


def test_seeds_follow_the_nbgrader_student(tmp_path, capsys, monkeypatch):
    from vmio_edu.grading import seed_for_user
    nb = release_notebook(build_notebook(exercise("exit_qual")))
    folder = tmp_path / "submitted" / "zoe" / "exit_qual"
    folder.mkdir(parents=True)
    (folder / "exit_qual.ipynb").write_text(dumps(nb))
    r = grade(folder / "exit_qual.ipynb", "--part", "size", capsys=capsys)
    assert r["seed"] == seed_for_user("zoe") and "zoe" in r["seed_source"]
    # inside `nbgrader autograde` the kernel runs as the instructor in autograded/<student>/<assignment>
    work = tmp_path / "autograded" / "zoe" / "exit_qual"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("JUPYTERHUB_USER", "instructor")
    assert seed_for_user() == seed_for_user("instructor")
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert seed_for_user() == seed_for_user("zoe")


def test_binder_environment_is_pinned_and_installs_the_repo():
    lines = [ln.split("#")[0].strip() for ln in (ROOT / "binder" / "requirements.txt").read_text().splitlines()]
    lines = [ln for ln in lines if ln]
    assert "." in lines or "-e ." in lines  # the package itself, from the repository root
    pins = dict(ln.split("==") for ln in lines if not ln.startswith(("-e", ".")))
    assert {"jupyterlab", "ipywidgets", "anywidget", "matplotlib"} <= set(pins)
    assert all(v and v[0].isdigit() for v in pins.values())
    from importlib.metadata import PackageNotFoundError, version
    for name, pinned in pins.items():  # where installed (a developer machine), the tests ran on these
        try:
            assert version(name) == pinned, name
        except PackageNotFoundError:
            pass
