"""nbgrader, graded through vmio-edu's sandbox instead of nbgrader's kernel.

In `nbgrader_config.py`:

    from vmio_edu.grading.nbgrader_autograde import use_vmio_edu_grader
    c = get_config()
    use_vmio_edu_grader(c)

`nbgrader autograde` then runs `GradeInSandbox` in place of its `Execute` step: no student code runs in
nbgrader's process or kernel. The submission is graded part by part with `runner.grade_notebook` (the
student id and assignment from nbgrader), and each graded test cell gets, as its outputs, the feedback
(a stream) and the part's points (an execute_result: nbgrader's partial credit). A cell of the student's
that looped or crashed is named in the feedback; the submission is never dropped.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from .base import PartResult


def _outputs(r: PartResult) -> list[dict]:
    text = f"{r.name}: {r.points:g}/{r.max_points:g}\n{r.feedback}\n"
    return [{"output_type": "stream", "name": "stdout", "text": text},
            {"output_type": "execute_result", "execution_count": 1, "metadata": {},
             "data": {"text/plain": repr(float(r.points))}}]


def grade_nb_dict(nb: dict, student: str, assignment: str) -> tuple[dict, Any]:
    """Grade a notebook (a dict, as nbgrader holds it); returns it with the test cells' outputs filled."""
    from . import EXERCISE_MODULES
    from .notebook import cell_role, exercise_name
    from .runner import grade_notebook
    name = assignment if assignment in EXERCISE_MODULES else exercise_name(nb)
    with tempfile.TemporaryDirectory(prefix="vmio-nbgrader-") as tmp:
        path = os.path.join(tmp, "submission.ipynb")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(nb, f)
        report = grade_notebook(path, student=student, exercise_name=name)
    by_part = {p.name: p for p in report.parts}
    for cell in nb["cells"]:
        if cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata", {})
        part = (meta.get("vmio_edu") or {}).get("part")
        gid = (meta.get("nbgrader") or {}).get("grade_id", "")
        if part is None and meta.get("nbgrader", {}).get("grade") and gid.startswith(f"{report.exercise}_"):
            part = gid[len(report.exercise) + 1:]  # nbgrader's sanitizing may drop our metadata
        if part in by_part:
            cell["outputs"] = _outputs(by_part[part])
        else:
            cell["outputs"] = []
            if cell_role(cell) == "selfcheck" and report.notes:
                cell["outputs"] = [{"output_type": "stream", "name": "stdout",
                                    "text": "".join(f"note: {n}\n" for n in report.notes)}]
        cell["execution_count"] = None
    return nb, report


def _preprocessor_class() -> type:
    from nbformat import from_dict
    from nbgrader.preprocessors import NbGraderPreprocessor

    class GradeInSandbox(NbGraderPreprocessor):  # enabled by default, as nbgrader's own steps
        """nbgrader's Execute step, replaced: grade with vmio-edu's sandbox, write the verdicts as outputs."""

        def preprocess(self, nb: Any, resources: dict) -> tuple[Any, dict]:
            info = resources.get("nbgrader", {})
            graded, _report = grade_nb_dict(json.loads(json.dumps(nb)), info.get("student", ""),
                                            info.get("assignment", ""))
            return from_dict(graded), resources

    return GradeInSandbox


def use_vmio_edu_grader(c: Any) -> None:
    """Configure nbgrader (`c = get_config()`) to autograde with vmio-edu's sandbox."""
    from nbgrader.converters.autograde import Autograde
    steps = list(Autograde.class_traits()["autograde_preprocessors"].default())
    from nbgrader.preprocessors import Execute
    c.Autograde.autograde_preprocessors = [_preprocessor_class() if s is Execute else s for s in steps]


def grade_this_notebook_part(name: str, part: str) -> PartResult:
    """For a hidden test cell run by nbgrader's own kernel: grade this submission's file, one part."""
    from .course import student_from_path
    from .runner import Limits, grade_notebook
    cwd = os.getcwd()
    nbs = sorted(f for f in os.listdir(cwd) if f.endswith(".ipynb"))
    student = student_from_path(os.path.join(cwd, nbs[0])) if nbs else None
    if not nbs or not student:
        return PartResult(part, 0, 0, "autograde_part runs only inside an nbgrader course directory")
    path = os.path.join(cwd, f"{name}.ipynb") if f"{name}.ipynb" in nbs else os.path.join(cwd, nbs[0])
    report = grade_notebook(path, student=student, exercise_name=name, parts=[part], limits=Limits())
    return report.parts[0]
