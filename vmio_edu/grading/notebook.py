"""Exercise notebooks in nbgrader's format: build them, release the student version, read a submission.

Cells carry nbgrader's metadata (`nbgrader: {grade, solution, locked, points, grade_id, schema_version: 3}`)
so the notebooks work with nbgrader as they are, plus `vmio_edu: {role, part}` so vmio-edu's own grader
knows what each cell is (roles: intro, seed, problem, background, solution, selfcheck, tests-intro, test).
Plain JSON, no nbformat dependency: the grader must run where Jupyter is not installed.
"""
from __future__ import annotations

import copy
import json
import os
import re
from typing import Any

from ..errors import ExerciseError
from .base import HIDDEN_BEGIN, HIDDEN_END, SOLUTION_BEGIN, SOLUTION_END, Exercise

CODE_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
NB_METADATA = {
    "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
    "language_info": {"name": "python", "pygments_lexer": "ipython3"},
}


class NotebookError(ExerciseError):
    """A notebook that cannot be read or is not a vmio-edu exercise."""


# -- building ---------------------------------------------------------------------------------------------
def _nbg(grade_id: str, *, grade: bool = False, solution: bool = False, locked: bool = False,
         points: float | None = None) -> dict:
    m = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3, "solution": solution,
         "task": False}
    if grade:
        m["points"] = points
    return m


def _cell(kind: str, source: str, cell_id: str, role: str, nbgrader: dict | None = None, **extra: Any) -> dict:
    meta: dict[str, Any] = {"vmio_edu": {"role": role, **extra}}
    if nbgrader is not None:
        meta["nbgrader"] = nbgrader
    if kind == "markdown":
        return {"cell_type": "markdown", "id": cell_id, "metadata": meta, "source": source}
    return {"cell_type": "code", "execution_count": None, "id": cell_id, "metadata": meta, "outputs": [],
            "source": source}


def build_notebook(ex: Exercise, solution: str | None = None) -> dict:
    """The notebook of one exercise: with `solution` (the answer cell with its BEGIN/END SOLUTION markers,
    from the instructor material) the source notebook; without, the template's (a student version after
    `release_notebook`)."""
    n = ex.name
    answer_cell = (solution if solution is not None else ex.template).rstrip("\n")
    parts_table = "\n".join(f"| `{p.name}` | {p.points:g} | {p.title} |" for p in ex.parts)
    model_note = ("\n\nSome checks run the whole vmio-edu machine with your function plugged in; they take a "
                  "few seconds." if ex.uses_model else "")
    intro = f"""# {ex.title}

**Learning goal.** {ex.goal}

Your numbers come from `SEED`: by default it is derived from your user name, so every student gets a
different exercise and you get the same one each time. Change `SEED` to practise on other numbers.
Write the function `{ex.answer}` in the answer cell, run the self-check for feedback, then the test cells.{model_note}

| part | points | what is checked |
|---|---|---|
{parts_table}"""
    seed_src = ("import vmio_edu.grading as grading\n\n"
                "SEED = grading.seed_for_user()  # any number to practise; grading always uses your own seed\n"
                "print(\"Your seed:\", SEED)")
    cells = [
        _cell("markdown", intro, f"{n}-intro", "intro", _nbg(f"{n}_intro", locked=True)),
        _cell("code", seed_src, f"{n}-seed", "seed"),
        _cell("code", f'grading.show_problem("{n}", SEED)', f"{n}-problem", "problem",
              _nbg(f"{n}_problem", locked=True)),
        _cell("markdown", "## What you need to know\n\n" + ex.intro, f"{n}-background", "background",
              _nbg(f"{n}_background", locked=True)),
        _cell("code", answer_cell, f"{n}-solution", "solution", _nbg(f"{n}_solution", solution=True)),
        _cell("markdown", "## Self-check\n\nRun this for feedback on your own cases (the graded tests below "
              "also try hidden cases).", f"{n}-selfcheck-md", "selfcheck-intro",
              _nbg(f"{n}_selfcheck_md", locked=True)),
        _cell("code", f'_ = grading.self_check("{n}", {ex.answer}, SEED)', f"{n}-selfcheck", "selfcheck",
              _nbg(f"{n}_selfcheck", locked=True)),
        _cell("markdown", "## Graded tests\n\nOne cell per part. A cell that runs without an error has passed on "
              "your cases; grading adds hidden cases.", f"{n}-tests-md", "tests-intro",
              _nbg(f"{n}_tests_md", locked=True)),
    ]
    for p in ex.parts:
        src = (f"# Part {p.name!r} ({p.points:g} point{'s' if p.points != 1 else ''}): {p.title}\n"
               f'grading.assert_part("{n}", "{p.name}", {ex.answer}, SEED)\n'
               f"{HIDDEN_BEGIN}\n"
               f'grading.autograde_part("{n}", "{p.name}", {ex.answer}, SEED)\n'
               f"{HIDDEN_END}")
        cells.append(_cell("code", src, f"{n}-test-{p.name}", "test",
                           _nbg(f"{n}_{p.name}", grade=True, locked=True, points=p.points), part=p.name))
    return {"cells": cells, "metadata": {**copy.deepcopy(NB_METADATA), "vmio_edu": {"exercise": n, "version": 1}},
            "nbformat": 4, "nbformat_minor": 5}


def dumps(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


# -- releasing --------------------------------------------------------------------------------------------
def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def strip_regions(source: str, begin: str, end: str, stub: tuple[str, ...] | None, where: str) -> tuple[str, bool]:
    """nbgrader's rule: drop the lines from `begin` to `end` (markers included); put `stub`, indented like
    the begin marker, in their place."""
    out: list[str] = []
    inside = found = False
    for line in source.split("\n"):
        if begin in line:
            if inside:
                raise NotebookError(f"{where}: nested {begin!r}")
            inside = found = True
            if stub:
                indent = re.match(r"\s*", line).group(0)
                out += [indent + s for s in stub]
        elif end in line:
            if not inside:
                raise NotebookError(f"{where}: {end!r} without {begin!r}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise NotebookError(f"{where}: {begin!r} without {end!r}")
    return "\n".join(out), found


def release_notebook(nb: dict) -> dict:
    """The student version: solutions replaced by `# YOUR CODE HERE` / `raise NotImplementedError()`,
    hidden tests removed, outputs cleared (what `nbgrader generate_assignment` does)."""
    nb = copy.deepcopy(nb)
    for i, cell in enumerate(nb.get("cells", [])):
        where = f"cell {i}"
        src = _source(cell)
        stub = CODE_STUB if cell.get("cell_type") == "code" else ("YOUR ANSWER HERE",)
        src, _ = strip_regions(src, SOLUTION_BEGIN, SOLUTION_END, stub, where)
        src, _ = strip_regions(src, HIDDEN_BEGIN, HIDDEN_END, None, where)
        cell["source"] = src
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
    return nb


def release_dir(source_dir: str, out_dir: str) -> list[str]:
    """Release every notebook in `source_dir` into `out_dir`; returns the paths written."""
    if not os.path.isdir(source_dir):
        raise NotebookError(f"no such directory: {source_dir!r}")
    names = sorted(f for f in os.listdir(source_dir) if f.endswith(".ipynb"))
    if not names:
        raise NotebookError(f"no .ipynb files in {source_dir!r}")
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for f in names:
        nb = load_notebook(os.path.join(source_dir, f))
        path = os.path.join(out_dir, f)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(dumps(release_notebook(nb)))
        written.append(path)
    return written


# -- reading a submission ---------------------------------------------------------------------------------
def load_notebook(path: str) -> dict:
    """Read a notebook, with a clear error for anything that is not one."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise NotebookError(f"cannot read {path!r}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise NotebookError(f"{path!r} is not a text file (UTF-8 decoding failed at byte {e.start})") from e
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as e:
        raise NotebookError(f"{path!r} is not valid notebook JSON: {e.msg} at line {e.lineno}, "
                            f"column {e.colno}") from e
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise NotebookError(f"{path!r} is JSON but not a notebook (no list of cells)")
    for i, c in enumerate(nb["cells"]):
        if not isinstance(c, dict) or c.get("cell_type") not in ("code", "markdown", "raw"):
            raise NotebookError(f"{path!r}: cell {i} is not a notebook cell")
        src = c.get("source", "")
        if not isinstance(src, (str, list)) or isinstance(src, list) and not all(isinstance(s, str) for s in src):
            raise NotebookError(f"{path!r}: cell {i} has a malformed source")
    return nb


def cell_role(cell: dict) -> str:
    """What a cell is: from vmio-edu's metadata, else from nbgrader's, else "student" (a cell they added)."""
    meta = cell.get("metadata") if isinstance(cell.get("metadata"), dict) else {}
    ours = meta.get("vmio_edu")
    if isinstance(ours, dict) and isinstance(ours.get("role"), str):
        return ours["role"]
    nbg = meta.get("nbgrader")
    if isinstance(nbg, dict):
        if nbg.get("solution"):
            return "solution"
        if nbg.get("grade"):
            return "test"
        if nbg.get("locked"):
            return "locked"
    return "student"


def exercise_name(nb: dict) -> str | None:
    meta = nb.get("metadata") if isinstance(nb.get("metadata"), dict) else {}
    ours = meta.get("vmio_edu")
    if isinstance(ours, dict) and isinstance(ours.get("exercise"), str):
        return ours["exercise"]
    from . import EXERCISE_MODULES
    for c in nb.get("cells", []):
        gid = ((c.get("metadata") or {}).get("nbgrader") or {}).get("grade_id", "")
        for name in EXERCISE_MODULES:
            if isinstance(gid, str) and gid.startswith(name + "_"):
                return name
    return None


# Cells the grader runs: the student's code. Problem display, self-check and test cells are the grader's.
RUN_ROLES = ("seed", "solution", "student")


def student_code(nb: dict) -> list[tuple[int, str]]:
    """(cell index, source) of the code cells to run before checking, in notebook order. IPython magics
    and shell escapes are dropped (the grader runs plain Python)."""
    out = []
    for i, c in enumerate(nb["cells"]):
        if c.get("cell_type") != "code" or cell_role(c) not in RUN_ROLES:
            continue
        lines = []
        for line in _source(c).split("\n"):
            s = line.lstrip()
            lines.append(line[:len(line) - len(s)] + "pass  # (magic dropped by the grader)"
                         if s.startswith(("%", "!")) else line)
        out.append((i, "\n".join(lines)))
    return out


SEED_LITERAL = re.compile(r"^\s*SEED\s*=\s*(\d+)\s*(#.*)?$", re.M)
SEED_OUTPUT = re.compile(r"Your seed:\s*(\d+)")


def submitted_seed(nb: dict) -> tuple[int | None, str]:
    """The seed the student worked with: a literal `SEED = N`, else the printed "Your seed: N"."""
    for c in nb["cells"]:
        if c.get("cell_type") != "code" or cell_role(c) not in ("seed", "student"):
            continue
        found = SEED_LITERAL.findall(_source(c))
        if found:
            return int(found[-1][0]), "set in the notebook"
    for c in nb["cells"]:
        if cell_role(c) != "seed":
            continue
        for o in c.get("outputs") or []:
            text = o.get("text", "") if isinstance(o, dict) else ""
            text = "".join(text) if isinstance(text, list) else str(text)
            m = SEED_OUTPUT.search(text)
            if m:
                return int(m.group(1)), "printed in the notebook"
    return None, ""


# -- submissions (for instructors' dry runs and the tests) -------------------------------------------------
def without_markers(source: str) -> str:
    """A solution as a student would hand it in: the solution text kept, the marker lines dropped."""
    return "\n".join(line for line in source.split("\n")
                     if SOLUTION_BEGIN not in line and SOLUTION_END not in line)


def fill_answer(nb: dict, code: str, seed: int | None = None) -> dict:
    """A copy of `nb` with its answer cell replaced by `code` (and `SEED = seed` set in the seed cell), as a
    student would submit it."""
    nb = copy.deepcopy(nb)
    found = False
    for cell in nb["cells"]:
        role = cell_role(cell)
        if role == "solution":
            cell["source"], found = code, True
        elif role == "seed" and seed is not None:
            cell["source"] = f"import vmio_edu.grading as grading\n\nSEED = {int(seed)}\nprint(\"Your seed:\", SEED)"
    if not found:
        raise NotebookError("the notebook has no answer (solution) cell")
    return nb
