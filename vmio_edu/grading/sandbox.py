"""The sandbox: the child process that runs a student's notebook code and reports what it did.

    python -I -m vmio_edu.grading.sandbox IN_FD OUT_FD LOG

The grader (`runner.py`) starts it with resource limits, without the instructor material on its path or in
its environment, and talks to it in JSON lines (`wire.py`): first the notebook's code cells, then one
request per case: call the student's function on these inputs (or run this capture: a window of IDE
words, a machine run), answer with what it returned and what it did. The sandbox never sees expected
values and never computes a score; the grader judges what comes back.

While the student's function runs, a profiler watches which code executes, on every thread: code of the
library's own implementation of the function to write (by code object, and by file and name for a
re-executed copy), or of the grader, is reported and the part scores zero. The library's own
implementation is also swapped for a trap before the notebook runs, so a reference to it taken in any
way (`__wrapped__`, a module attribute, the garbage collector) raises instead of answering.
"""
from __future__ import annotations

import importlib
import inspect
import os
import sys
import threading
import types
from typing import Any, Callable

from . import wire

GRADING_DIR = os.path.dirname(os.path.abspath(__file__))
PACKAGE_DIR = os.path.dirname(GRADING_DIR)
# Grader files a student's code may run through: this sandbox, the stand-ins handed to the function, and
# the model runner (its trace callback runs inside every call of a plugged function).
ALLOWED_GRADING_FILES = frozenset(os.path.join(GRADING_DIR, f) for f in
                                  ("sandbox.py", "wire.py", "standins.py", "model.py", "base.py"))


class ForbiddenCall(Exception):
    """Raised by the trap that replaced the library's own implementation of the function to write."""


MIN_PRINT = 24  # bytes of bytecode: shorter functions are too generic to fingerprint


def fingerprint(code: Any) -> tuple:
    """What a copy of a function keeps whatever it is renamed to and wherever it is compiled: its bytecode and
    the global and attribute names it uses (not its name, file, line numbers or local variable names)."""
    return code.co_code, code.co_names


class Watch:
    """What runs while the student's function is active (any thread)."""

    def __init__(self, originals: list[tuple[str, str]], whole_package: bool):
        self.active = 0
        self.hits: list[str] = []
        self.whole_package = whole_package
        self.codes: dict[Any, str] = {}
        self.names: dict[tuple[str, str], str] = {}
        self.prints: dict[tuple, str] = {}
        self.reported: set[str] = set()
        self.real: dict[str, Callable] = {}
        self._verdict: dict[Any, str | None] = {}
        for modname, attr in originals:
            mod = importlib.import_module(modname)
            fn = getattr(mod, attr)
            inner = getattr(fn, "__wrapped__", fn)
            label = f"the library's own {attr} ({modname})"
            self.codes[inner.__code__] = label
            self.names[(os.path.abspath(inner.__code__.co_filename), inner.__code__.co_name)] = label
            self.prints[fingerprint(inner.__code__)] = label
            self._trap(mod, inner, attr, label)

    def fingerprint_module(self, mod: Any) -> None:
        """Fingerprint the functions of a grader module (the exercise's simulator, encoder, expected values):
        a copy compiled from their source under another name and file is still theirs."""
        for attr, v in list(vars(mod).items()):
            code = getattr(v, "__code__", None)
            if isinstance(v, types.FunctionType) and v.__module__ == mod.__name__ and \
                    len(code.co_code) >= MIN_PRINT:
                where = os.path.basename(code.co_filename)
                self.prints.setdefault(fingerprint(code), f"the grader's own code ({where}: {code.co_name})")

    # -- the trap ------------------------------------------------------------------------------------
    def _trap(self, mod: Any, inner: Callable, attr: str, label: str) -> None:
        """Swap `inner`'s code for a trap: the grader's own runs (no student code active) still get the
        real function, a student's call raises ForbiddenCall."""
        real = types.FunctionType(inner.__code__, inner.__globals__, inner.__name__, inner.__defaults__,
                                  inner.__closure__)
        real.__kwdefaults__ = inner.__kwdefaults__
        self.real[attr] = real
        if inner.__closure__:
            return  # a closure cannot take another code object: the profiler still sees it run
        gen = inspect.isgeneratorfunction(inner)
        body = ("    return (yield from __vmio_edu_trap__(%r, a, k))\n" if gen else
                "    return __vmio_edu_trap__(%r, a, k)\n") % attr
        ns: dict = {}
        exec(compile(f"def {attr}(*a, **k):\n" + body, f"<vmio-edu grader trap for {attr}>", "exec"), ns)
        watch = self

        def trap(name: str, a: tuple, k: dict) -> Any:
            if watch.active or watch.student_on_stack(sys._getframe(1)):
                watch.hit(label)
                raise ForbiddenCall(f"{label} may not be used in your answer: write your own")
            return watch.real[name](*a, **k)

        inner.__globals__["__vmio_edu_trap__"] = trap
        inner.__code__ = ns[attr].__code__
        inner.__defaults__ = None
        inner.__kwdefaults__ = None

    report: Callable[[str], None] | None = None  # sends a verdict to the grader at once (set by main)

    def hit(self, label: str) -> None:
        """Record what the student's code used, and tell the grader at once: what is on the wire cannot be
        taken back by code that later clears `hits` or forges the case's reply."""
        self.hits.append(label)
        if self.report is not None and label not in self.reported:
            self.reported.add(label)
            self.report(label)

    # -- the profiler ----------------------------------------------------------------------------------
    def _judge(self, code: Any) -> str | None:
        label = self.codes.get(code)
        if label:
            return label
        path = os.path.abspath(code.co_filename)
        label = self.names.get((path, code.co_name))
        if label:
            return label
        label = self.prints.get(fingerprint(code))
        if label:
            return label
        if path.startswith(GRADING_DIR + os.sep) and path not in ALLOWED_GRADING_FILES:
            return f"the grader's own code ({os.path.basename(path)}: {code.co_name})"
        if self.whole_package and path.startswith(PACKAGE_DIR + os.sep) and path not in ALLOWED_GRADING_FILES:
            rel = os.path.relpath(path, os.path.dirname(PACKAGE_DIR))
            return f"vmio-edu's own code ({rel}: {code.co_name}); this answer must not call into the library"
        return None

    student_codes: set = set()  # the code of the wrappers below: a student's call is on the stack

    def student_on_stack(self, frame: Any) -> bool:
        """Whether the student's function is among `frame`'s callers (the counter can be tampered with;
        the stack of this thread cannot be rewritten from Python)."""
        while frame is not None:
            if frame.f_code in self.student_codes:
                return True
            frame = frame.f_back
        return False

    def profile(self, frame: Any, event: str, arg: Any) -> None:
        if event != "call":
            return
        code = frame.f_code
        try:
            label = self._verdict[code]
        except KeyError:
            label = self._verdict[code] = self._judge(code)
        if label and (self.active or self.student_on_stack(frame)) and (not self.hits or self.hits[-1] != label):
            self.hit(label)

    def install(self) -> None:
        sys.setprofile(self.profile)
        threading.setprofile(self.profile)

    def intact(self) -> bool:
        return sys.getprofile() == self.profile

    # -- running the student's function --------------------------------------------------------------
    def wrap(self, fn: Callable) -> Callable:
        """`fn`, counted as student code while it runs (for a generator function: while it is resumed)."""
        watch = self
        if inspect.isgeneratorfunction(fn):
            def student_generator(*a: Any, **k: Any) -> Any:
                watch.active += 1
                try:
                    g = fn(*a, **k)
                finally:
                    watch.active -= 1
                value: Any = None
                while True:
                    watch.active += 1
                    try:
                        try:
                            y = g.send(value)
                        except StopIteration as stop:
                            return stop.value
                    finally:
                        watch.active -= 1
                    value = yield y
            Watch.student_codes.add(student_generator.__code__)
            student_generator.__name__ = getattr(fn, "__name__", "answer")
            student_generator.__wrapped_student__ = fn
            return student_generator

        def student_function(*a: Any, **k: Any) -> Any:
            watch.active += 1
            try:
                return fn(*a, **k)
            finally:
                watch.active -= 1
        Watch.student_codes.add(student_function.__code__)
        student_function.__name__ = getattr(fn, "__name__", "answer")
        student_function.__wrapped_student__ = fn
        return student_function


GUARDED_STDLIB = ("builtins", "json", "os", "sys", "select", "struct", "threading", "types", "inspect")


class Guard:
    """What the grader's code in this process relies on: every function and class bound in vmio-edu's
    modules (and their classes) and in the few standard modules the sandbox uses. Taken after the trap is
    set and before the notebook runs; `changed()` names what a student's code rebound since (a
    monkeypatched capture, model method or `json.dumps` would otherwise shape the data sent back)."""

    def __init__(self) -> None:
        self.snap = self._take()

    @staticmethod
    def _take() -> dict:
        snap: dict = {}
        for name, mod in list(sys.modules.items()):
            if mod is None or not (name == "vmio_edu" or name.startswith("vmio_edu.") or name in GUARDED_STDLIB):
                continue
            snap[(name, None)] = id(mod)
            for attr, v in list(vars(mod).items()):
                if callable(v) or isinstance(v, (types.ModuleType, dict)) and attr in ("captures",):
                    snap[(name, attr)] = id(v)
                if isinstance(v, type) and getattr(v, "__module__", "") == name:
                    for k, m in list(vars(v).items()):
                        if callable(m) or isinstance(m, (staticmethod, classmethod, property)):
                            snap[(name, f"{attr}.{k}")] = id(m)
            ex = vars(mod).get("EXERCISE")
            if ex is not None and isinstance(getattr(ex, "captures", None), dict):
                snap[(name, "EXERCISE.captures")] = tuple((k, id(f)) for k, f in sorted(ex.captures.items()))
                snap[(name, "EXERCISE.check")] = id(ex.check)
        return snap

    def changed(self) -> str | None:
        now = self._take()
        for key, v in self.snap.items():
            if now.get(key) != v:
                mod, attr = key
                return f"{mod}.{attr}" if attr else f"the module {mod}"
        return None


def _describe(e: BaseException) -> str:
    from .base import describe_exception
    return describe_exception(e)


def main(argv: list[str]) -> int:
    in_fd, out_fd, log = int(argv[0]), int(argv[1]), argv[2]
    rd = os.fdopen(in_fd, "r", encoding="utf-8")
    wr = os.fdopen(out_fd, "w", encoding="utf-8")
    # The student's prints (Python and C level) go to the log, never into the replies.
    log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    sys.stdin = open(os.devnull)

    def send(msg: dict) -> None:
        wr.write(wire.dumps(msg))
        wr.flush()

    job = wire.loads(rd.readline())
    ex = importlib.import_module(f"vmio_edu.grading.{job['exercise']}")
    spec = ex.EXERCISE
    watch = Watch(list(spec.originals), spec.pure)

    def report(label: str) -> None:
        try:  # one write of one short line: atomic on a pipe, never mixed with a reply (flushed after each)
            os.write(out_fd, wire.dumps({"hit": label[:200]}).encode())
        except OSError:
            pass
    watch.report = report
    watch.fingerprint_module(ex)
    captures = dict(spec.captures)
    guard = Guard()
    ns: dict = {"__name__": "__main__", "__builtins__": __builtins__}
    errors: list[str] = []
    defined_in = None
    skip = set(job.get("skip", []))
    threads_before = set(threading.enumerate())
    for index, source in job["cells"]:
        if index in skip:
            continue
        send({"cell": index})
        before = ns.get(spec.answer)
        try:
            exec(compile(source, f"<cell {index}>", "exec"), ns)  # noqa: S102 - running the submission
        except BaseException as e:  # noqa: BLE001 - SystemExit included
            errors.append(f"cell {index} raised {_describe(e)}")
        if ns.get(spec.answer) is not before:
            defined_in = index
    stray = [t.name for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    tampered = guard.changed()
    answer = ns.get(spec.answer)
    send({"ready": True, "defined": answer is not None, "callable": callable(answer), "defined_in": defined_in,
          "errors": errors[:5], "threads": stray[:5],
          "generator": bool(answer is not None and inspect.isgeneratorfunction(answer)), "tampered": tampered})
    if not callable(answer):
        return 0
    student = watch.wrap(answer)
    watch.install()
    while True:
        line = rd.readline()
        if not line:
            return 0
        req = wire.loads(line)
        if req.get("kind") == "end":
            # The grader's last word: everything the profiler and the guard saw over the whole part. A reply
            # forged by the student's code for some case cannot hide what is reported here, and the real
            # replies it tried to suppress arrive before this one (the grader counts them).
            send({"id": req["id"], "end": True, "forbidden": list(dict.fromkeys(watch.hits))[:3],
                  "tampered": guard.changed(), "intact": watch.intact()})
            continue
        hits_before = len(watch.hits)
        threads_before = set(threading.enumerate())
        send({"start": req["id"]})
        reply: dict = {"id": req["id"]}
        try:
            if req["kind"] == "call":
                args = wire.decode(req["args"])
                value = student(*args)
            else:
                value = captures[req["kind"]](student, wire.decode(req["input"]))
            reply["value"] = wire.encode(value)
            reply["ok"] = True
        except BaseException as e:  # noqa: BLE001 - whatever the student's code raises is a result
            reply["ok"] = False
            reply["error"] = _describe(e)[:600]
        if not watch.intact() or watch.active != 0 or type(watch.hits) is not list or watch.report is not report \
                or len(watch.hits) < hits_before:
            watch.active = 0
            watch.hits = [*list(watch.hits)[:hits_before], "the grader's profiler (your code changed or removed it)"]
            watch.report = report
            watch.install()
        reply["forbidden"] = list(dict.fromkeys(watch.hits[hits_before:]))[:3]
        tampered = guard.changed()
        if tampered:
            reply["forbidden"].append(f"a change to the grader's or the library's code ({tampered} was replaced)")
        if req["kind"] == "call":
            left = [t.name for t in threading.enumerate() if t not in threads_before and t.is_alive()]
            if left:
                reply["threads"] = left[:3]
        send(reply)


if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    finally:
        sys.stdout.flush()
    os._exit(code)  # don't wait for threads the student (or a stuck model run) left behind
