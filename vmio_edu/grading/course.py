"""The instructor's side of a course: where the instructor material is, the course secret, graded seeds.

The instructor material (reference solutions, oracles, hidden-case generators: the package
`vmio_edu_instructor`) lives in the repository's `instructor/` directory, not in the `vmio_edu` wheel.
The grader finds it through `--instructor DIR` or $VMIO_EDU_INSTRUCTOR and imports it in its own process
only; the sandbox that runs a student's code never has it on its path or in its environment.

Seeds of a graded run:
* visible cases: `seed_for_user(student)`, the numbers the student's notebook showed them
  (a `SEED = N` in the notebook is ignored);
* hidden cases: HMAC-SHA256(course secret, "exercise:student"), so only the instructor can compute them.
"""
from __future__ import annotations

import hashlib
import hmac
import importlib
import os
import random
import secrets
import sys
from dataclasses import dataclass
from typing import Any

from ..errors import ExerciseError
from .base import seed_for_user

INSTRUCTOR_ENV = "VMIO_EDU_INSTRUCTOR"
SECRET_ENV = "VMIO_EDU_COURSE_SECRET"
SECRET_FILE = "course_secret"
PACKAGE = "vmio_edu_instructor"


class CourseError(ExerciseError):
    """The instructor material or the course secret is missing or unusable."""


def instructor_dir(path: str | None = None) -> str:
    where = path or os.environ.get(INSTRUCTOR_ENV)
    if not where:
        raise CourseError(f"grading needs the instructor material: set ${INSTRUCTOR_ENV} to the course's "
                          "instructor/ directory (or pass --instructor DIR)")
    where = os.path.abspath(where)
    if not os.path.isfile(os.path.join(where, PACKAGE, "__init__.py")):
        raise CourseError(f"{where!r} is not an instructor directory (it has no {PACKAGE}/ package)")
    return where


def load_instructor(path: str | None = None) -> Any:
    """The `vmio_edu_instructor` package from the instructor directory (grader process only)."""
    where = instructor_dir(path)
    mod = sys.modules.get(PACKAGE)
    if mod is not None:
        if os.path.dirname(os.path.dirname(os.path.abspath(mod.__file__))) == where:
            return mod
        for k in [k for k in sys.modules if k == PACKAGE or k.startswith(PACKAGE + ".")]:
            del sys.modules[k]
    sys.path.insert(0, where)
    try:
        return importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(where)


def read_secret(path: str | None = None) -> bytes:
    env = os.environ.get(SECRET_ENV, "").strip()
    if env:
        return env.encode()
    f = os.path.join(instructor_dir(path), SECRET_FILE)
    try:
        with open(f, encoding="utf-8") as fh:
            text = fh.read().strip()
    except OSError:
        raise CourseError(f"no course secret: run `vmio-edu course-secret` (it creates {f}) or set "
                          f"${SECRET_ENV}") from None
    if len(text) < 16:
        raise CourseError(f"the course secret in {f} is too short (at least 16 characters)")
    return text.encode()


def init_secret(path: str | None = None) -> tuple[str, bool]:
    """Create the course secret file if it is missing; (its path, whether it was created)."""
    f = os.path.join(instructor_dir(path), SECRET_FILE)
    if os.path.exists(f):
        return f, False
    fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")
    return f, True


def hidden_seed(secret: bytes, exercise: str, student: str) -> int:
    return int.from_bytes(hmac.new(secret, f"{exercise}:{student}".encode(), hashlib.sha256).digest()[:16], "big")


@dataclass
class Course:
    material: Any  # the vmio_edu_instructor package
    secret: bytes

    @classmethod
    def load(cls, path: str | None = None) -> "Course":
        return cls(load_instructor(path), read_secret(path))

    @staticmethod
    def visible_seed(student: str) -> int:
        return seed_for_user(student)

    def hidden_cases(self, exercise: str, student: str, params: dict) -> list:
        """The hidden cases of one student, expected values included (they never leave the grader)."""
        r = random.Random(hidden_seed(self.secret, exercise, student))
        return self.material.hidden_cases(exercise, r, params)


def student_from_path(path: str) -> str | None:
    """The student id in an nbgrader course path: .../submitted|autograded/<student>/<assignment>/NB.ipynb."""
    parts = os.path.normpath(os.path.abspath(path)).split(os.sep)
    if len(parts) >= 4 and parts[-4] in ("submitted", "autograded", "feedback"):
        return parts[-3] or None
    return None
