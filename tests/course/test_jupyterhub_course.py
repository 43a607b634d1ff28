"""A real course, end to end, on a real JupyterHub (issue 10, item 6).

The instructor releases the `sectors` exercise (it plugs the student's function into the whole machine, yet
grades in seconds). Two students log in with their unix passwords, have the hub start their servers, fetch
the exercise with nbgrader's Assignments extension, write their answer into the notebook through the
contents API and submit: alice right, bob with pwrite offsets in sectors instead of bytes. The instructor
collects, autogrades, generates and releases feedback. The gradebook must hold exactly 4/4 and 2/4, part by
part, and each student must fetch their own feedback through their server: their score, and for bob the
case that failed.
"""
from __future__ import annotations

import re

import pytest

from vmio_edu.grading import make, seed_for_user

from .hub import COURSE_ID

pytestmark = pytest.mark.slow

ASSIGNMENT = "sectors"
NOTEBOOK = f"{ASSIGNMENT}/{ASSIGNMENT}.ipynb"

# What the students type into the answer cell (written here, as a student would; not the reference).
ALICE = '''\
def plan_write(regs: dict) -> dict:
    lba = (regs["select"] & 0x0F) << 24 | regs["hcyl"] << 16 | regs["lcyl"] << 8 | regs["sector"]
    count = regs["nsector"] if regs["nsector"] else 256   # a sector count of 0 means 256
    requests = [(lba + i, 1) for i in range(count)]       # one bdrv_aio_writev per sector in PIO mode
    return {"lba": lba, "requests": requests,
            "pwrites": [(sector * 512, n * 512) for sector, n in requests]}
'''
# bob forgets that pwrite(2) takes bytes: the LBA and the requests are right, the pwrites are not
BOB = ALICE.replace("(sector * 512, n * 512)", "(sector, n)")
assert BOB != ALICE

PARTS = {"lba": 1.0, "requests": 1.0, "pwrites": 1.0, "model": 1.0}
EXPECTED = {"alice": {"lba": 1.0, "requests": 1.0, "pwrites": 1.0, "model": 1.0},
            "bob": {"lba": 1.0, "requests": 1.0, "pwrites": 0.0, "model": 0.0}}


def answer(nb: dict, code: str) -> dict:
    """Put `code` into the notebook's answer cell (nbgrader's solution cell), as the student does."""
    cells = [c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("solution")]
    assert len(cells) == 1, f"expected one answer cell, found {len(cells)}"
    assert "raise NotImplementedError()" in "".join(cells[0]["source"]), "the released cell is not a stub"
    cells[0]["source"] = code
    return nb


def html_text(html: str) -> str:
    import html as h
    return re.sub(r"\s+", " ", h.unescape(re.sub(r"<[^>]+>", " ", html)))


def gradebook(course) -> dict:
    """Scores per student and per part, read with nbgrader's own gradebook API (on a copy of the database,
    so this root process leaves nothing behind in the instructor's directory)."""
    import shutil
    import tempfile

    from nbgrader.api import Gradebook

    with tempfile.TemporaryDirectory() as tmp:
        db = shutil.copy(course.course_dir / "gradebook.db", tmp)
        with Gradebook(f"sqlite:///{db}") as gb:
            out = {}
            for sub in gb.assignment_submissions(ASSIGNMENT):
                nb = sub.notebooks[0]
                out[sub.student.id] = {
                    "total": (sub.score, sub.max_score),
                    "parts": {g.name.removeprefix(f"{ASSIGNMENT}_"): g.score for g in nb.grades},
                    "needs_manual_grade": sub.needs_manual_grade,
                }
            return out


def test_a_course_on_jupyterhub(course):
    alice, bob = course.students
    names = {"alice": alice.user.name, "bob": bob.user.name}

    # -- the instructor prepares and releases the exercise (nbgrader's commands, docs/teaching.md)
    from pathlib import Path
    import shutil
    source = course.course_dir / "source" / ASSIGNMENT
    source.mkdir(parents=True)
    shutil.copy(Path(__file__).resolve().parents[2] / "exercises" / "source" / f"{ASSIGNMENT}.ipynb", source)
    shutil.chown(source.parent, course.instructor.uid, course.instructor.gid)
    shutil.chown(source, course.instructor.uid, course.instructor.gid)
    shutil.chown(source / f"{ASSIGNMENT}.ipynb", course.instructor.uid, course.instructor.gid)
    course.nbgrader("generate_assignment", ASSIGNMENT)
    course.nbgrader("release_assignment", ASSIGNMENT)

    # -- the students, through the hub only
    assert alice.request_token("not-" + alice.user.password).status_code == 403  # PAM really checks
    for student, code in ((alice, ALICE), (bob, BOB)):
        student.log_in()
        student.start_server()
        listed = student.assignments()
        assert [(a["assignment_id"], a["status"]) for a in listed] == [(ASSIGNMENT, "released")], listed
        after = student.assignment_action("fetch", ASSIGNMENT)["value"]
        fetched = [a for a in after if a["status"] == "fetched"]
        assert [a["path"] for a in fetched] == [ASSIGNMENT], after
        nb = student.read_notebook(NOTEBOOK)
        student.save_notebook(NOTEBOOK, answer(nb, code))
        assert code in "".join(next(c["source"] for c in student.read_notebook(NOTEBOOK)["cells"]
                                    if c["metadata"].get("nbgrader", {}).get("solution")))
        # before submitting, the student presses Validate: their own kernel runs the notebook (and the
        # model, as their unix user) on their own cases
        checked = student.validate(NOTEBOOK)  # {} when every test cell passes
        if student is alice:
            assert checked == {}, checked
        else:
            assert set(checked) == {"failed"}, checked
            errors = " ".join(f["error"] for f in checked["failed"])
            assert "your plan says" in html_text(errors), checked
        after = student.assignment_action("submit", ASSIGNMENT)["value"]
        submitted = [a for a in after if a["status"] == "submitted"]
        assert len(submitted) == 1 and len(submitted[0]["submissions"]) == 1, after
        assert submitted[0]["submissions"][0]["student_id"] == student.user.name

    # -- the instructor collects, autogrades, writes and releases the feedback
    course.nbgrader("collect", ASSIGNMENT)
    for name in names.values():
        assert (course.course_dir / "submitted" / name / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file()
    # autograde as root (sudo): vmio-edu's sandbox then runs the students' code as nobody, who cannot read
    # the instructor material (0700) or the course secret (docs/teaching.md, threat model)
    course.nbgrader("autograde", ASSIGNMENT, root=True)
    course.nbgrader("generate_feedback", ASSIGNMENT)
    course.nbgrader("release_feedback", ASSIGNMENT)

    grades = gradebook(course)
    assert set(grades) == set(names.values()), grades
    for who, name in names.items():
        want = EXPECTED[who]
        assert grades[name]["parts"] == want, (who, grades[name])
        assert grades[name]["total"] == (sum(want.values()), sum(PARTS.values())), (who, grades[name])
        assert not grades[name]["needs_manual_grade"], (who, grades[name])

    # -- each student fetches their own feedback through their server
    for who, student in (("alice", alice), ("bob", bob)):
        after = student.assignment_action("fetch_feedback", ASSIGNMENT)["value"]
        subs = [s for a in after if a["status"] == "submitted" for s in a["submissions"]]
        assert len(subs) == 1 and subs[0]["has_local_feedback"], after
        assert subs[0]["student_id"] == student.user.name
        feedback = html_text(student.read_text(f"{subs[0]['local_feedback_path']}/{ASSIGNMENT}.html"))
        total = sum(EXPECTED[who].values())
        assert f"Score: {total:.1f} / {sum(PARTS.values()):.1f}" in feedback, (who, feedback[:3000])
        # graded on their own numbers: the model case comes from the student's user name (visible seed)
        case = make(ASSIGNMENT, seed_for_user(student.user.name))["model"]
        lba, n = case["lba"], case["sectors"]
        real = ", ".join(f"({(lba + i) * 512}, 512)" for i in range(n))
        assert f"the model wrote {n} sector(s) at LBA {lba} " in feedback, (who, feedback[:5000])
        # the protected configuration: no note that the sandbox ran as the grader or could read the material
        assert "sandbox ran as the grader's own user" not in feedback, feedback[:5000]
        assert "instructor material is readable by other users" not in feedback, feedback[:5000]
        if who == "bob":
            # the case that failed and the rule broken: the model's pwrites against bob's plan
            mine = ", ".join(f"({lba + i}, 1)" for i in range(n))
            assert f"its pwrites were [{real}], your plan says [{mine}]" in feedback, feedback[:5000]
            assert "pwrites should be" in feedback and "offset = sector_num * 512" in feedback, feedback[:5000]
        else:
            assert f"your plan matches its pwrites [{real}]" in feedback, feedback[:5000]
            assert "your plan says" not in feedback and "should be" not in feedback, feedback[:5000]
