"""The notebooks (nbgrader format), `vmio-edu release` and `vmio-edu grade` with its subprocess limits."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import material, solution_code
from sandbox_helpers import grade, submit
from vmio_edu.cli import main
from vmio_edu.grading import EXERCISE_MODULES, exercise
from vmio_edu.grading.base import SOLUTION_BEGIN, SOLUTION_END
from vmio_edu.grading.notebook import build_notebook, dumps, load_notebook, release_notebook
from vmio_edu_instructor.build import stale

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "exercises" / "source"


def solution_body(name: str) -> list[str]:
    """The lines between the solution markers: what must never reach a student."""
    lines, inside = [], False
    for line in material.solution(name).split("\n"):
        if SOLUTION_BEGIN in line:
            inside = True
        elif SOLUTION_END in line:
            inside = False
        elif inside and line.strip():
            lines.append(line.strip())
    return lines


# -- the committed notebooks ---------------------------------------------------------------------------------
def test_committed_notebooks_are_the_generated_ones():
    assert stale(str(SOURCE)) == [], "run: PYTHONPATH=instructor python -m vmio_edu_instructor.build"


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
    nb = build_notebook(exercise("exit_qual"), material.solution("exit_qual"))
    nb["cells"][4]["source"] = nb["cells"][4]["source"].replace(SOLUTION_END, "")
    (src / "x.ipynb").write_text(dumps(nb))
    assert main(["release", str(src), "--out", str(tmp_path / "o")]) == 2
    assert "without '### END SOLUTION'" in capsys.readouterr().err


def test_the_wheel_has_no_instructor_material():
    """Reference solutions, oracles and hidden cases live in instructor/, which the package does not ship."""
    import tomllib
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert conf["tool"]["setuptools"]["packages"]["find"]["include"] == ["vmio_edu*"]
    # (the model under vmio_edu/qemu is the library's own implementation by design: an answer may not run it;
    # completion hands out the right statements in the wrong order, by design too)
    bodies = [line for name in EXERCISE_MODULES if name != "completion" for line in solution_body(name)
              if len(line) > 40]
    for path in (ROOT / "vmio_edu" / "grading").rglob("*.py"):
        text = path.read_text()
        leaked = [line for line in bodies if line in text]
        assert not leaked, (path, leaked[:2])


# -- grading --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", EXERCISE_MODULES)
def test_grading_the_released_notebook_scores_zero(name, tmp_path, capsys):
    nb = release_notebook(load_notebook(str(SOURCE / f"{name}.ipynb")))
    folder = tmp_path / "submitted" / "bo" / name
    folder.mkdir(parents=True)
    (folder / f"{name}.ipynb").write_text(dumps(nb))
    r = grade(folder / f"{name}.ipynb", capsys=capsys)
    assert r["exercise"] == name and r["student"] == "bo"
    assert [p["name"] for p in r["parts"]] == exercise(name).part_names
    assert r["total"] == 0 and r["max_total"] == exercise(name).max_points
    assert all("NotImplementedError" in p["feedback"] or "generator" in p["feedback"] or
               "not graded" in p["feedback"] for p in r["parts"]), r["parts"]


def test_grading_a_correct_submission(tmp_path, capsys):
    r = grade(submit(tmp_path, "exit_qual", solution_code("exit_qual")), capsys=capsys)
    assert r["total"] == r["max_total"] == 4


@pytest.mark.parametrize("name", ["handle_io", "ide_write", "completion", "sectors", "threads"])
def test_grading_a_correct_model_submission(tmp_path, capsys, model, name):
    r = grade(submit(tmp_path, name, solution_code(name)), capsys=capsys)
    assert r["total"] == r["max_total"], r["parts"]


def test_text_report(tmp_path, capsys):
    code = solution_code("exit_qual").replace('"size": (q & 7) + 1', '"size": q & 7')
    assert main(["grade", str(submit(tmp_path, "exit_qual", code))]) == 0
    out = capsys.readouterr().out
    assert "size           0/1" in out and "total 3/4" in out and "encode size - 1" in out


def test_part_names_and_points_come_from_the_instructor_not_the_submission(tmp_path, capsys):
    path = submit(tmp_path, "exit_qual", solution_code("exit_qual"))
    nb = json.loads(path.read_text())
    nb["metadata"]["vmio_edu"]["exercise"] = "kvm_run"  # claims another exercise
    for c in nb["cells"]:
        g = c["metadata"].get("nbgrader", {})
        if g.get("grade"):
            g["points"] = 1000
    path.write_text(json.dumps(nb))
    r = grade(path, capsys=capsys)
    assert r["exercise"] == "exit_qual" and r["max_total"] == 4 and r["total"] == 4
    assert any("kvm_run" in n for n in r["notes"])


def test_a_cell_that_raises_is_reported(tmp_path, capsys):
    code = "import no_such_module_here\ndef decode_exit_qualification(q):\n    return {}\n"
    r = grade(submit(tmp_path, "exit_qual", code), "--part", "size", capsys=capsys)
    assert r["parts"][0]["points"] == 0
    assert any("ModuleNotFoundError" in n for n in r["notes"])


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


def test_missing_notebook_unknown_part_and_no_student(tmp_path, capsys):
    assert main(["grade", str(tmp_path / "nowhere.ipynb")]) == 2
    assert "cannot read" in capsys.readouterr().err
    path = submit(tmp_path, "exit_qual", "x = 1\n")
    assert main(["grade", str(path), "--part", "nope"]) == 2
    assert "has no part 'nope'" in capsys.readouterr().err
    loose = tmp_path / "loose.ipynb"
    loose.write_text(path.read_text())
    assert main(["grade", str(loose)]) == 2
    assert "--student" in capsys.readouterr().err
    r = grade(loose, "--student", "ann", "--part", "size", capsys=capsys)
    assert r["student"] == "ann" and r["exercise"] == "exit_qual"


def test_grade_works_on_a_notebook_without_our_metadata(tmp_path, capsys):
    """A Jupyter front end may drop unknown metadata: the assignment directory names the exercise."""
    path = submit(tmp_path, "exit_qual", solution_code("exit_qual"))
    nb = json.loads(path.read_text())
    nb["metadata"].pop("vmio_edu")
    for c in nb["cells"]:
        c["metadata"].pop("vmio_edu", None)
    path.write_text(dumps(nb))
    r = grade(path, capsys=capsys)
    assert r["exercise"] == "exit_qual" and r["total"] == 4


def test_vmio_edu_console_script_has_the_commands():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "vmio_edu.cli", "--help"], capture_output=True, text=True,
                         env=dict(os.environ))
    assert "release" in out.stdout and "grade" in out.stdout and "trace" in out.stdout
    assert "course-secret" in out.stdout


def test_seeds_follow_the_nbgrader_student(tmp_path, capsys, monkeypatch):
    from vmio_edu.grading import seed_for_user
    r = grade(submit(tmp_path, "exit_qual", "x = 1\n", student="zoe"), "--part", "size", capsys=capsys)
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
