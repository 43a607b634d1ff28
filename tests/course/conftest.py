"""The course machine for tests/course/: unix users, a real JupyterHub, nbgrader's exchange and the
instructor's course directory (see hub.py). On failure the hub's log (with the single-user servers'), and
every nbgrader command and server answer, are printed."""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from .hub import COURSE_ID, REPO, Diagnostics, Hub, Student, UnixUsers, User, build_course_env, missing

# .ci/run sets it: in CI this test must run, so what would be a skip elsewhere is a failure there
REQUIRED = os.environ.get("VMIO_EDU_COURSE_TEST") == "required"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@dataclass
class Course:
    hub: Hub
    bin_dir: Path
    users: UnixUsers
    instructor: User
    students: list[Student]
    course_dir: Path
    instructor_material: Path
    exchange: Path
    diag: Diagnostics

    def as_instructor(self, *argv: str, root: bool = False, timeout: float = 900) -> str:
        """A command in the course directory, as the instructor's unix user (as a teacher runs it), or as
        root (`sudo`), with $VMIO_EDU_INSTRUCTOR pointing at the instructor material (docs/teaching.md)."""
        p = self.users.run_as(None if root else self.instructor, list(argv), cwd=self.course_dir,
                              bin_dir=self.bin_dir, timeout=timeout,
                              env={"VMIO_EDU_INSTRUCTOR": str(self.instructor_material)})
        who = "instructor (root)" if root else "instructor"
        self.diag.note(f"{who}: {' '.join(argv)} -> {p.returncode}", p.stdout)
        assert p.returncode == 0, f"{' '.join(argv)} failed ({p.returncode}):\n{p.stdout[-6000:]}"
        return p.stdout

    def nbgrader(self, *args: str, root: bool = False, timeout: float = 900) -> str:
        return self.as_instructor("python", "-m", "nbgrader", *args, root=root, timeout=timeout)


@pytest.fixture
def course(request):
    why = missing()
    if why:
        if REQUIRED:
            pytest.fail(f"the course test must run here (VMIO_EDU_COURSE_TEST=required) but: {why}")
        pytest.skip(why)
    # Not pytest's tmp_path: that is private to root (0700), and every course user must reach the exchange.
    base = Path(tempfile.mkdtemp(prefix="vmio-course-"))
    base.chmod(0o755)
    diag = Diagnostics()
    users = UnixUsers(base)
    hub, ready = None, False
    try:
        bin_dir = build_course_env(base, diag)
        instructor = users.add("inst")
        students = [users.add("alice"), users.add("bob")]

        # nbgrader's exchange: shared, world-writable, as on a real hub (docs/teaching.md)
        exchange = base / "exchange"
        exchange.mkdir()
        exchange.chmod(0o777)

        # The site-wide nbgrader config every single-user server reads (a hub's /etc/jupyter)
        site = base / "jupyter-config"
        site.mkdir()
        site.chmod(0o755)
        (site / "nbgrader_config.py").write_text(
            f"c = get_config()\nc.CourseDirectory.course_id = {COURSE_ID!r}\nc.Exchange.root = {str(exchange)!r}\n")

        # The instructor's material (reference solutions, hidden cases; not in the wheel) and course
        # directory, owned by the instructor, in a home only the instructor can read (docs/teaching.md).
        # autograde goes through vmio-edu's sandbox (use_vmio_edu_grader), not nbgrader's kernel.
        material = instructor.home / "instructor"
        shutil.copytree(REPO / "instructor", material,
                        ignore=shutil.ignore_patterns("__pycache__", "course_secret"))
        course_dir = instructor.home / "course"
        course_dir.mkdir()
        (course_dir / "nbgrader_config.py").write_text(
            "from vmio_edu.grading.nbgrader_autograde import use_vmio_edu_grader\n"
            f"c = get_config()\nc.CourseDirectory.course_id = {COURSE_ID!r}\n"
            f"c.Exchange.root = {str(exchange)!r}\n"
            "c.ExecutePreprocessor.timeout = 300\n"
            "use_vmio_edu_grader(c)\n")
        for d in (material, course_dir):
            for p in [d, *d.rglob("*")]:
                shutil.chown(p, instructor.uid, instructor.gid)
        material.chmod(0o700)

        hub = Hub(base / "hub", bin_dir, {u.name for u in [instructor, *students]},
                  {"JUPYTER_CONFIG_PATH": str(site), "PYTHONUNBUFFERED": "1"}, diag)
        hub.start()
        course = Course(hub, bin_dir, users, instructor, [Student(hub, s, diag) for s in students], course_dir,
                        material, exchange, diag)
        course.as_instructor("vmio-edu", "course-secret", timeout=300)  # once per course
        ready = True
        yield course
    finally:
        call = getattr(request.node, "rep_call", None)
        failed = not ready or (call is not None and call.failed)
        try:
            if hub is not None:
                hub.stop()
        finally:
            users.remove()
            if failed:
                print(diag.report())
            shutil.rmtree(base, ignore_errors=True)
