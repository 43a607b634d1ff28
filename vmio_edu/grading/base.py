"""What every exercise shares: results, seeds, calling student code safely, and the exercise record.

An exercise module (one per exercise, e.g. `exit_qual.py`) builds one `Exercise`:

* `make(seed) -> dict`: the randomized parameters (JSON-able). Same seed, same exercise.
* `problem(params) -> str`: the problem text (Markdown) with the student's own numbers.
* `TEMPLATE`: the answer cell as the student gets it (`# YOUR CODE HERE` / `raise NotImplementedError()`).
  The reference solution, the oracles and the hidden cases are instructor material (`instructor/`,
  not in this package; see `course.py`).
* `check(answer, params, parts=None, hidden=None) -> list[PartResult]`: grade the student's function on
  the student's own cases, plus `hidden` (cases with their expected values, from the instructor material).
  `answer` is a local function (the self-check) or a `runner.Remote`: the function running in the sandbox,
  whose calls return plain data; stateful checks go through `capture(answer, kind, data)`.
"""
from __future__ import annotations

import getpass
import hashlib
import os
import random
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

SOLUTION_BEGIN = "### BEGIN SOLUTION"
SOLUTION_END = "### END SOLUTION"
HIDDEN_BEGIN = "### BEGIN HIDDEN TESTS"
HIDDEN_END = "### END HIDDEN TESTS"
SEED_RANGE = 1_000_000


@dataclass
class PartResult:
    """The grade of one part: points out of max_points, and feedback that says what is wrong and why."""

    name: str
    points: float
    max_points: float
    feedback: str

    @property
    def full(self) -> bool:
        return self.points >= self.max_points

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Part:
    name: str
    points: float
    title: str  # one line: what this part checks


@dataclass
class Exercise:
    """One graded exercise. See the module docstring for the contract."""

    name: str
    title: str
    goal: str  # Markdown: the learning goal
    answer: str  # the name of the function the student writes
    parts: tuple[Part, ...]
    make: Callable[[int], dict]
    problem: Callable[[dict], str]
    check: Callable[..., list[PartResult]]
    template: str  # the answer cell as handed out: imports, signature, `raise NotImplementedError()`
    intro: str = ""  # Markdown before the solution cell: what to know, where the real code is
    uses_model: bool = False  # its checks run Machine (slower; needs the QEMU/Linux model)
    # What an answer may not run (the sandbox watches): the library's own implementation of the function to
    # write, as (module, attribute); `pure`: no vmio-edu code at all may run inside the student's function.
    originals: tuple[tuple[str, str], ...] = ()
    pure: bool = False
    # kind -> capture(student_fn, data) -> plain data: run in the sandbox, judged by `check` in the grader
    captures: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def part(self, name: str) -> Part:
        for p in self.parts:
            if p.name == name:
                return p
        raise KeyError(f"exercise {self.name} has no part {name!r} (parts: {', '.join(self.part_names)})")

    @property
    def part_names(self) -> list[str]:
        return [p.name for p in self.parts]

    @property
    def max_points(self) -> float:
        return sum(p.points for p in self.parts)


def capture(answer: Any, kind: str, data: Any, captures: dict) -> Any:
    """Run capture `kind` on the student's function: in the sandbox when `answer` is remote, else here
    (the self-check), through the same plain-data encoding so both see the same values."""
    if hasattr(answer, "capture"):
        return answer.capture(kind, data)
    from . import wire
    try:
        out = captures[kind](answer, wire.decode(wire.encode(data)))
    except BaseException as e:  # noqa: BLE001
        raise StudentError(describe_exception(e)) from None
    return wire.decode(wire.encode(out))


# -- seeds -----------------------------------------------------------------------------------------------
def seed_for_user(user: str | None = None) -> int:
    """A stable seed from the user name (JupyterHub's user, else the login name): each student gets their
    own numbers, and gets the same numbers every time they open the notebook."""
    if user is None:
        user = _autograded_student() or os.environ.get("JUPYTERHUB_USER") or os.environ.get("NB_USER") or _login()
    return int.from_bytes(hashlib.sha256(f"vmio-edu:{user}".encode()).digest()[:8], "big") % SEED_RANGE


def _autograded_student() -> str | None:
    """Under `nbgrader autograde` the kernel runs as the instructor, in autograded/<student>/<assignment>/:
    take the student's id from there, so the student's own numbers are graded."""
    if os.environ.get("NBGRADER_EXECUTION") != "autograde":
        return None
    parts = os.path.normpath(os.getcwd()).split(os.sep)
    return parts[-2] if len(parts) >= 3 and parts[-3] == "autograded" and parts[-2] else None


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return "student"


def rng(exercise: str, seed: int, purpose: str = "make") -> random.Random:
    """The random stream of one exercise and seed (str seeding is stable across Python runs)."""
    return random.Random(f"vmio-edu:{exercise}:{purpose}:{int(seed)}")


# -- calling student code ----------------------------------------------------------------------------------
class StudentError(Exception):
    """The student's function raised; `str()` is a one-line summary for feedback."""


def call(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """Call student code; turn any exception into StudentError naming it and the line it came from.
    A local function's result goes through the same plain-data encoding as the sandbox's answers."""
    if isinstance(fn, Exception):
        raise StudentError(str(fn))
    try:
        out = fn(*args, **kwargs)
    except StudentError:
        raise
    except BaseException as e:  # noqa: BLE001 - SystemExit and KeyboardInterrupt included: never fatal
        raise StudentError(describe_exception(e)) from None
    if hasattr(fn, "capture"):
        return out  # already plain data from the sandbox
    from . import wire
    try:
        return wire.decode(wire.encode(out))
    except wire.WireError as e:
        raise StudentError(f"your function returned something the grader cannot read ({e})") from None


def describe_exception(e: BaseException) -> str:
    tb = traceback.extract_tb(e.__traceback__)
    where = ""
    for fr in reversed(tb):
        if "vmio_edu" not in fr.filename.replace("\\", "/") or "<cell" in fr.filename:
            where = f" (at {fr.filename}, line {fr.lineno}: {(fr.line or '').strip()})"
            break
    if isinstance(e, NotImplementedError) and not str(e):
        return "NotImplementedError: the function is still the empty template (replace `raise NotImplementedError()`)"
    return f"{type(e).__name__}: {e}{where}"


def not_callable(answer: Any, name: str) -> str | None:
    """Feedback if `answer` is not a usable student function, else None."""
    if answer is None:
        return f"`{name}` is not defined: run the cell that defines it (did it raise an error?)"
    if not callable(answer):
        return f"`{name}` should be a function, but it is a {type(answer).__name__}"
    return None


def fail_all(ex: Exercise, parts: list[str] | None, message: str) -> list[PartResult]:
    return [PartResult(p.name, 0, p.points, message) for p in ex.parts if parts is None or p.name in parts]


def verdict(part: Part, failures: list[str], total: int, ok_text: str = "") -> PartResult:
    """All or nothing: full points when every case passed, else zero with the first failures named. No case
    at all is zero too: a check never passes vacuously."""
    if not failures and total <= 0:
        return PartResult(part.name, 0, part.points, "no case checked this part (the graded run adds hidden "
                          "cases for it)")
    if not failures:
        return PartResult(part.name, part.points, part.points, f"correct on all {total} cases" +
                          (f": {ok_text}" if ok_text else ""))
    raised = [f.split("your function raised ", 1)[1] for f in failures if "your function raised " in f]
    if len(raised) == len(failures) == total and len(set(raised)) == 1:
        return PartResult(part.name, 0, part.points, f"on every case ({total}) your function raised {raised[0]}")
    shown = failures[:3]
    more = f"\n(and {len(failures) - 3} more wrong cases)" if len(failures) > 3 else ""
    head = f"wrong on {len(failures)} of {total} cases:\n" if total > 1 else ""
    return PartResult(part.name, 0, part.points, head + "\n".join(f"- {f}" for f in shown) + more)


def hexs(v: Any) -> str:
    """A value for feedback: ints in hex, anything else by repr, and never a screenful."""
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:#x}" if v.bit_length() <= 128 else f"<a {v.bit_length()}-bit number>"
    if isinstance(v, (list, tuple)):
        inner = ", ".join(hexs(x) for x in v[:6])
        return ("[" if isinstance(v, list) else "(") + inner + (", ..." if len(v) > 6 else "") + \
            ("]" if isinstance(v, list) else ")")
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."
