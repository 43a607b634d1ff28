"""The course workflow of docs/teaching.md with real nbgrader: generate_assignment, autograde, feedback,
export, in a temporary course directory (offline; about 20 s, so marked slow)."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import solution_code
from vmio_edu.grading.notebook import dumps, fill_answer

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    # nbgrader runs `alembic` (its database migrations) from PATH: the venv's bin must be on it
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.pop("JUPYTERHUB_USER", None)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))  # the config imports vmio_edu
    p = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    return p


def test_nbgrader_release_autograde_feedback(tmp_path):
    pytest.importorskip("nbgrader")
    course = tmp_path / "course"
    (course / "source" / "exit_qual").mkdir(parents=True)
    (course / "nbgrader_config.py").write_text(
        "from vmio_edu.grading.nbgrader_autograde import use_vmio_edu_grader\n"
        'c = get_config()\nc.CourseDirectory.course_id = "vmio-edu"\n'
        "use_vmio_edu_grader(c)\n")
    shutil.copy(ROOT / "exercises" / "source" / "exit_qual.ipynb", course / "source" / "exit_qual")

    nbgrader(course, "generate_assignment", "exit_qual")
    released = course / "release" / "exit_qual" / "exit_qual.ipynb"
    text = released.read_text()
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text and "raise NotImplementedError()" in text

    nb = json.loads(text)
    right = solution_code("exit_qual")
    wrong = right.replace('"size": (q & 7) + 1', '"size": q & 7')
    looping = "def decode_exit_qualification(q):\n    while True:\n        pass\n"
    cheat = "import vmio_edu.grading as g\ndecode_exit_qualification = g.reference('exit_qual')\n"
    for student, code in (("alice", right), ("bob", wrong), ("carol", looping), ("dan", cheat)):
        (course / "submitted" / student / "exit_qual").mkdir(parents=True)
        (course / "submitted" / student / "exit_qual" / "exit_qual.ipynb").write_text(dumps(fill_answer(nb, code)))

    nbgrader(course, "autograde", "exit_qual")
    nbgrader(course, "generate_feedback", "exit_qual")
    nbgrader(course, "export")
    with open(course / "grades.csv", newline="") as f:
        scores = {row["student_id"]: (float(row["score"]), float(row["max_score"])) for row in csv.DictReader(f)}
    assert scores == {"alice": (4.0, 4.0), "bob": (3.0, 4.0), "carol": (0.0, 4.0), "dan": (0.0, 4.0)}
    feedback = (course / "feedback" / "bob" / "exit_qual" / "exit_qual.html").read_text()
    assert "encode size - 1" in feedback  # the hidden test's specific feedback reaches the student
    # a looping answer is not dropped: carol gets feedback naming the time limit
    assert "time limit" in (course / "feedback" / "carol" / "exit_qual" / "exit_qual.html").read_text()
    assert "reference" in (course / "feedback" / "dan" / "exit_qual" / "exit_qual.html").read_text()
