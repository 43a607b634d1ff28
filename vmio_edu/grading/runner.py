"""Grade one submitted notebook: the student's code in a sandbox, the judging here.

For every part a fresh sandbox (`sandbox.py`) runs the notebook's code cells, then answers requests:
"call your function on these inputs", "run this capture". The grader holds the expected values, the hidden
cases and the points, from the instructor's exercise definition; what comes back is plain data, checked
(`wire.py`) and judged here. Nothing the sandbox writes is a score.

Limits: each cell and each call has a wall-clock deadline (the whole process group is killed when it
passes); the sandbox has an address-space limit, a CPU-time limit, a file-size limit and no core dumps;
run as root, the grader drops the sandbox to an unprivileged user (`nobody`, or $VMIO_EDU_GRADE_USER).
A cell that loops or kills the process is skipped (and named) in the next sandbox; a call that does is
that case's failure, and the cases after it are not run: that part scores zero, the others go on.
"""
from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from . import wire
from .base import PartResult, StudentError

DEFAULT_TIMEOUT = 5.0  # one call of the student's function
DEFAULT_RUN_TIMEOUT = 30.0  # one capture that runs the machine (0.1-2 s normally)
MACHINE_CAPTURES = ("model", "run")
DEFAULT_CELL_TIMEOUT = 15.0  # one notebook cell
DEFAULT_MEMORY_MB = 4096  # address space: the emulated engine maps ~3 GiB of guest-visible space
CPU_SECONDS = 300
FILE_MB = 256
LOG_TAIL = 400


class SandboxDied(StudentError):
    """The sandbox process is gone (a crash, an exit, a time limit): no more calls can run in it."""


def _unprivileged() -> tuple[int, int] | None:
    """(uid, gid) to run the sandbox as, when the grader runs as root; None to keep the grader's user."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("VMIO_EDU_GRADE_USER", "nobody")
    if name in ("", "root"):
        return None
    try:
        import pwd
        pw = pwd.getpwnam(name)
    except KeyError:
        return None
    return pw.pw_uid, pw.pw_gid


_CAN_DROP: dict[tuple[int, int], bool] = {}


def _can_drop(ids: tuple[int, int]) -> bool:
    """Whether the sandbox works as that user (it must be able to read the installed package)."""
    if ids not in _CAN_DROP:
        try:
            p = subprocess.run([sys.executable, "-I", "-c", "import vmio_edu.grading.sandbox"],
                               preexec_fn=_limits(0, ids), capture_output=True, timeout=60, cwd="/")
            _CAN_DROP[ids] = p.returncode == 0
        except (OSError, subprocess.SubprocessError):
            _CAN_DROP[ids] = False
    return _CAN_DROP[ids]


def _limits(memory_mb: int, ids: tuple[int, int] | None):
    def apply() -> None:
        import resource
        os.setsid()  # its own process group: a time-out kills every thread and child it made
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_MB << 20, FILE_MB << 20))
        if memory_mb:
            limit = memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        if ids is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (256, 256))  # no fork bomb (root ignores it)
            os.setgroups([])
            os.setgid(ids[1])
            os.setuid(ids[0])
    return apply


_SUBREAPER: list[bool] = []


def _become_subreaper() -> bool:
    """Make this process the subreaper of its descendants (Linux prctl PR_SET_CHILD_SUBREAPER): a process the
    student's code daemonizes (fork, setsid, fork) leaves the sandbox's process group, but is re-parented to
    the grader instead of init, so the grader can find it and end it."""
    if not _SUBREAPER:
        ok = False
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            ok = libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
        except (OSError, AttributeError):
            pass
        _SUBREAPER.append(ok)
    return _SUBREAPER[0]


def _children() -> set[int]:
    """This process's children (live or zombie), from /proc."""
    me, found = os.getpid(), set()
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == me:
            found.add(int(name))
    return found


def _end_strays(before: set[int]) -> int:
    """Kill and reap the processes that the sandbox left behind and that were re-parented to the grader.
    Returns how many there were."""
    ended: set[int] = set()
    for _round in range(50):  # killing one re-parents its own children to us: repeat until none is left
        strays = _children() - before
        if not strays:
            break
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for pid in strays:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        ended |= strays
    return len(ended)


@dataclass
class Limits:
    call: float = DEFAULT_TIMEOUT
    run: float = DEFAULT_RUN_TIMEOUT
    cell: float = DEFAULT_CELL_TIMEOUT
    memory_mb: int = DEFAULT_MEMORY_MB


class Sandbox:
    """One sandbox process running a notebook's cells, then serving calls of the student's function."""

    def __init__(self, exercise: str, cells: list[tuple[int, str]], limits: Limits, skip: set[int] = frozenset()):
        self.exercise, self.limits = exercise, limits
        self.dead: str | None = None
        self.forbidden: list[str] = []
        self.forged: str | None = None  # a message the grader did not ask for: the channel was written to
        self.threads: list[str] = []
        self.tmp = tempfile.mkdtemp(prefix="vmio-sandbox-")
        self.log = os.path.join(self.tmp, "log")
        ids = _unprivileged()
        if ids is not None and not _can_drop(ids):
            ids = None
        self.user = "an unprivileged user" if ids else "the grader's user"
        if ids is not None:
            os.chown(self.tmp, ids[0], ids[1])
        self.reaper = _become_subreaper()
        self.before = _children()
        self.strays = 0
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.tmp, "TMPDIR": self.tmp,
               "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg"}
        for k in ("VMIO_EDU_GRADING_ENGINE",):
            if k in os.environ:
                env[k] = os.environ[k]
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-m", "vmio_edu.grading.sandbox", str(to_child_r), str(from_child_w), self.log],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(to_child_r, from_child_w), preexec_fn=_limits(limits.memory_mb, ids), env=env, cwd=self.tmp)
        os.close(to_child_r)
        os.close(from_child_w)
        self._w = os.fdopen(to_child_w, "w", encoding="utf-8")
        self._r = from_child_r
        self._buf = b""
        self.start = time.monotonic()
        self.ready: dict = {}
        self.cell_problem: tuple[int, str] | None = None
        self._send({"exercise": exercise, "cells": [list(c) for c in cells], "skip": sorted(skip)})
        self._run_cells()

    # -- messages ------------------------------------------------------------------------------------
    def _send(self, msg: dict) -> None:
        try:
            self._w.write(wire.dumps(msg))
            self._w.flush()
        except (BrokenPipeError, OSError):
            pass  # the reply loop sees the process gone

    def _recv(self, deadline: float) -> dict | None:
        """The next message, or None at the deadline or when the sandbox is gone (self.dead says which). The
        profiler's verdicts, sent the moment they happen, are collected on the way."""
        while True:
            msg = self._recv_any(deadline)
            if msg is None or set(msg) != {"hit"}:
                return msg
            if len(self.forbidden) < 10:
                self.forbidden.append(str(msg["hit"])[:200])

    def _recv_any(self, deadline: float) -> dict | None:
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                self.dead = "timeout"
                return None
            ready, _, _ = select.select([self._r], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._r, 1 << 16)
            if not chunk:
                self.dead = self._how_it_died()
                return None
            self._buf += chunk
            if len(self._buf) > wire.MAX_LINE:
                self.kill()
                self.dead = "sent a message too large"
                return None
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            return wire.loads(line.decode("utf-8", "replace"))
        except wire.WireError as e:
            self.kill()
            self.dead = f"sent something that is not a grader message ({e})"
            return None

    def _how_it_died(self) -> str:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            return "closed its channel to the grader"
        self.kill()
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            hint = {"SIGSEGV": " (a crash: a segfault)", "SIGXCPU": " (CPU time limit)",
                    "SIGKILL": " (killed: out of memory?)", "SIGXFSZ": " (it wrote too large a file)"}.get(name, "")
            return f"was killed by {name}{hint}"
        tail = self.tail()
        if "MemoryError" in tail:
            return f"exited with status {code} (out of memory)"
        return f"exited with status {code} (something called exit, e.g. os._exit or sys.exit in a thread)"

    def tail(self) -> str:
        try:
            with open(self.log, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - LOG_TAIL))
                return f.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""

    # -- cells -----------------------------------------------------------------------------------------
    def _run_cells(self) -> None:
        current = None
        deadline = time.monotonic() + self.limits.cell + 10  # + interpreter start-up
        while True:
            msg = self._recv(deadline)
            if msg is None:
                how = (f"did not finish within {self.limits.cell:g} s (an endless loop?)" if self.dead == "timeout"
                       else f"stopped the process: it {self.dead}")
                self.cell_problem = (current, how) if current is not None else None
                self.ready = {"defined": False, "errors": [f"the sandbox {self.dead} before running any cell"]
                              if current is None else []}
                return
            if "cell" in msg:
                current = msg["cell"] if isinstance(msg["cell"], int) else current
                deadline = time.monotonic() + self.limits.cell
            elif msg.get("ready"):
                self.ready = msg
                return
            else:
                self.forged = self.forged or "sent messages the grader did not ask for (a forged reply?)"


    # -- calls -----------------------------------------------------------------------------------------
    def request(self, kind: str, payload: Any, timeout: float) -> Any:
        """Run one request; the decoded value, or StudentError saying what went wrong."""
        if self.dead:
            raise SandboxDied(f"not run: the process running your code {self.dead} on an earlier case")
        rid = int(time.monotonic() * 1e6)
        msg = {"id": rid, "kind": kind}
        msg["args" if kind == "call" else "input"] = wire.encode(payload)
        self._send(msg)
        deadline = time.monotonic() + timeout + 2
        started = False
        while True:
            reply = self._recv(deadline)
            if reply is None:
                if self.dead == "timeout":
                    self.dead = f"hit the time limit ({timeout:g} s)"
                    raise SandboxDied(f"time limit: your function did not return within {timeout:g} s "
                                      "(an endless loop? a wait that never ends?)")
                raise SandboxDied(f"the process running your function {self.dead}"
                                  + ("" if started else " before the call started"))
            if reply.get("start") == rid and not started:
                started = True
                deadline = time.monotonic() + timeout
                continue
            if reply.get("id") != rid or not started:
                # The sandbox sends exactly one start and one reply per request, and a time-out ends it:
                # anything else was written by the student's code (a forged reply, or the real one after it).
                self.forged = self.forged or "sent messages the grader did not ask for (a forged reply?)"
                continue
            break
        hits = reply.get("forbidden", [])
        if isinstance(hits, list):
            self.forbidden += [str(h)[:200] for h in hits[:3]]
        if isinstance(reply.get("threads"), list) and reply["threads"]:
            self.threads = [str(t)[:40] for t in reply["threads"][:3]]
        if reply.get("ok") is True:
            try:
                return wire.decode(reply.get("value"))
            except wire.WireError as e:
                raise StudentError(f"your function returned something the grader cannot read ({e})") from None
        err = reply.get("error")
        raise StudentError(str(err)[:600] if isinstance(err, str) else "your function failed")

    def finish(self) -> None:
        """The closing handshake after the last case: the sandbox reports what its profiler and guard saw over
        the whole part. Every real reply precedes it, so a reply the student's code forged shows up as a
        duplicate; a sandbox that cannot answer it (it exited, its channel was redirected) is not trusted."""
        if self.dead:
            return
        rid = int(time.monotonic() * 1e6)
        self._send({"id": rid, "kind": "end"})
        deadline = time.monotonic() + self.limits.call + 2
        while True:
            msg = self._recv(deadline)
            if msg is None:
                self.forged = self.forged or f"stopped answering after the last case (it {self.dead})"
                return
            if msg.get("id") == rid and msg.get("end") is True:
                break
            self.forged = self.forged or "sent messages the grader did not ask for (a forged reply?)"
        hits = msg.get("forbidden")
        if isinstance(hits, list):
            self.forbidden += [str(h)[:200] for h in hits[:3]]
        if msg.get("tampered"):
            self.forbidden.append(f"a change to the grader's or the library's code ({str(msg['tampered'])[:120]} "
                                  "was replaced)")
        if msg.get("intact") is not True:
            self.forbidden.append("the grader's profiler (your code changed or removed it)")

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        self.kill()
        if self.reaper:
            self.strays = _end_strays(self.before)
        try:
            self._w.close()
        except OSError:
            pass
        try:
            os.close(self._r)
        except OSError:
            pass
        shutil.rmtree(self.tmp, ignore_errors=True)


class Remote:
    """The student's function as the checks see it: a call runs in the sandbox and returns plain data."""

    def __init__(self, box: Sandbox, name: str):
        self.box, self.__name__ = box, name
        self.is_generator = bool(box.ready.get("generator"))

    def __call__(self, *args: Any) -> Any:
        return self.box.request("call", list(args), self.box.limits.call)

    def capture(self, kind: str, data: Any) -> Any:
        limit = self.box.limits.run if kind in MACHINE_CAPTURES else self.box.limits.call
        return self.box.request(kind, data, limit)


# -- grading a notebook ---------------------------------------------------------------------------------
@dataclass
class GradeReport:
    notebook: str
    exercise: str
    student: str
    seed: int
    seed_source: str
    parts: list[PartResult]
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(p.points for p in self.parts)

    @property
    def max_total(self) -> float:
        return sum(p.max_points for p in self.parts)

    def to_json(self) -> dict:
        return {"notebook": self.notebook, "exercise": self.exercise, "student": self.student, "seed": self.seed,
                "seed_source": self.seed_source, "parts": [p.to_json() for p in self.parts],
                "total": self.total, "max_total": self.max_total, "notes": self.notes}

    def text(self) -> str:
        out = [f"vmio-edu grade: {self.notebook}",
               f"exercise {self.exercise}, student {self.student!r}, seed {self.seed} ({self.seed_source})", ""]
        for p in self.parts:
            out.append(f"  {p.name:<14} {p.points:g}/{p.max_points:g}")
            out += [f"      {ln}" for ln in p.feedback.splitlines()]
        out += ["", f"total {self.total:g}/{self.max_total:g}"]
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)


def grade_part(ex: Any, part: str, cells: list[tuple[int, str]], params: dict, hidden: list | None,
               limits: Limits, skip: set[int], notes: list[str]) -> PartResult:
    """One part in its own sandbox. Cells that loop or kill the process are added to `skip` and retried."""
    from .base import fail_all
    p = ex.part(part)
    for _attempt in range(len(cells) + 1):
        box = Sandbox(ex.name, cells, limits, skip)
        try:
            if box.cell_problem is not None:
                index, how = box.cell_problem
                if index is None:
                    return PartResult(part, 0, p.points, f"the sandbox could not start: {box.dead}")
                skip.add(index)
                notes.append(f"cell {index} {how}; it was skipped when grading")
                continue
            ready = box.ready
            notes += [f"while running the notebook, {str(e)[:300]}" for e in ready.get("errors", [])[:3]]
            if ready.get("threads"):
                notes.append(f"the notebook's cells left threads running ({', '.join(map(str, ready['threads']))});"
                             " the grader ignores them")
            if not ready.get("defined") or not ready.get("callable"):
                why = (f"`{ex.answer}` is not defined after running your notebook" if not ready.get("defined")
                       else f"`{ex.answer}` should be a function")
                errs = [str(e) for e in ready.get("errors", [])][:2]
                if errs:
                    why += "; " + "; ".join(errs)
                return PartResult(part, 0, p.points, why)
            if ready.get("tampered"):
                box.forbidden.append(f"a change to the grader's or the library's code "
                                     f"({str(ready['tampered'])[:120]} was replaced by your notebook)")
            remote = Remote(box, ex.answer)
            try:
                (r,) = ex.check(remote, params, parts=[part], hidden=hidden)
            except Exception as e:  # noqa: BLE001 - a check that breaks on odd data still reports
                from .base import describe_exception
                (r,) = fail_all(ex, [part], f"the check could not use your function's results: "
                                            f"{describe_exception(e)}")
            where = f" (your `{ex.answer}` is defined in cell {ready.get('defined_in')})" \
                if ready.get("defined_in") is not None else ""
            box.finish()
            if box.forged:
                r = PartResult(part, 0, p.points, f"scored 0: the process running your code {box.forged}. "
                               f"Only the grader's sandbox may write to the grader{where}.")
            elif box.forbidden:
                r = PartResult(part, 0, p.points, f"scored 0: while your function ran, it used "
                               f"{box.forbidden[0]}. An answer may not be, wrap or call the library's "
                               f"implementation of `{ex.answer}` or the grader's code{where}.")
            elif box.threads and not ex.uses_model:
                r = PartResult(part, 0, p.points, f"your code left threads running ({', '.join(box.threads)}): "
                               "an answer must return only when its work is done" + where +
                               ("" if r.full else "\n" + r.feedback))
            elif box.dead and not r.full:
                r = PartResult(part, r.points, r.max_points, r.feedback + where)
            return PartResult(part, float(min(max(r.points, 0), p.points)), p.points, r.feedback)
        finally:
            box.close()
            if box.strays:
                notes.append(f"your code left {box.strays} process(es) running after the sandbox ended (a daemon?); "
                             "the grader killed them")
    return PartResult(part, 0, p.points, "every cell of the notebook failed to run")


def grade_notebook(path: str, student: str | None = None, exercise_name: str | None = None,
                   limits: Limits | None = None, parts: list[str] | None = None,
                   instructor: str | None = None, seed: int | None = None) -> GradeReport:
    """Grade a submitted exercise notebook. Raises NotebookError / CourseError for what it cannot grade."""
    from . import EXERCISE_MODULES, exercise
    from .course import Course, student_from_path
    from .notebook import NotebookError, exercise_name as nb_exercise, load_notebook, student_code

    limits = limits or Limits()
    course = Course.load(instructor)
    nb = load_notebook(path)
    notes: list[str] = []
    assignment = os.path.basename(os.path.dirname(os.path.abspath(path)))
    name = exercise_name or (assignment if assignment in EXERCISE_MODULES else None)
    claimed = nb_exercise(nb)
    if name is None:
        name = claimed
        if name is not None:
            notes.append("the exercise was taken from the notebook's metadata (give --exercise to be sure)")
    elif claimed is not None and claimed != name:
        notes.append(f"the notebook says it is {claimed!r}; it was graded as {name!r}")
    if name is None:
        raise NotebookError(f"{path!r} is not a vmio-edu exercise (give --exercise NAME)")
    if name not in EXERCISE_MODULES:
        raise NotebookError(f"{path!r} is exercise {name!r}, which this vmio-edu does not know "
                            f"(known: {', '.join(EXERCISE_MODULES)})")
    ex = exercise(name)
    student = student or student_from_path(path)
    if not student:
        raise NotebookError(f"no student id for {path!r}: give --student ID (or grade inside an nbgrader course "
                            "directory: submitted/<student>/<assignment>/)")
    if seed is None:
        seed, source = course.visible_seed(student), f"from the student id {student!r}"
    else:
        source = "given by the instructor"
    params = ex.make(int(seed))
    hidden = course.hidden_cases(name, student, params)
    wanted = ex.part_names if parts is None else parts
    for p in wanted:
        ex.part(p)  # KeyError for an unknown part
    cells = student_code(nb)
    if not cells:
        notes.append("the notebook has no code cell: every part scores zero")
    skip: set[int] = set()
    results = [grade_part(ex, p, cells, params, hidden, limits, skip, notes) for p in wanted]
    from .course import instructor_dir
    try:
        if os.stat(instructor_dir(instructor)).st_mode & 0o007:
            notes.append("the instructor material is readable by other users (chmod -R go-rwx it, and the "
                         "source notebooks): a sandbox running as another user could read the solutions")
    except OSError:
        pass
    ids = _unprivileged()
    if ids is None or not _can_drop(ids):
        notes.append("the sandbox ran as the grader's own user: it could read what that user can read. Grade as "
                     "root with a Python every user can run (the sandbox then drops to nobody), or in a container")
    return GradeReport(path, name, student, int(seed), source, results, list(dict.fromkeys(notes)))
