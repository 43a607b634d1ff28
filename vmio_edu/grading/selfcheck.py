"""The self-check, run in a forked copy of the learner's kernel with a time limit.

The learner's function is already defined in the kernel, so the check runs in `os.fork()`'s child: an
endless loop, a crash or `os._exit` there costs a message ("your function did not return within 60 s"),
never the kernel. The child watches what runs (`sandbox.Watch`), so a self-check also says when an answer
uses the library's own implementation. Where fork is missing (Windows), the check runs in-process.
"""
from __future__ import annotations

import io
import json
import os
import select
import signal
import sys
import time
from typing import Any

from .base import PartResult, fail_all

MEMORY_MB = 4096


def _in_child(name: str, answer: Any, seed: int, parts: list[str] | None) -> list[PartResult]:
    from . import exercise
    from .sandbox import Watch
    ex = exercise(name)
    params = ex.make(seed)
    watch = Watch(list(ex.originals), ex.pure)
    student = watch.wrap(answer) if callable(answer) else answer
    if callable(answer) and ex.name == "completion":
        import inspect
        student.is_generator = inspect.isgeneratorfunction(answer)
    watch.install()
    try:
        results = ex.check(student, params, parts=parts)
    finally:
        sys.setprofile(None)
    if watch.hits:
        results = [PartResult(r.name, 0, r.max_points, f"while your function ran, it used {watch.hits[0]}: an "
                              f"answer may not be, wrap or call the library's implementation of `{ex.answer}` or "
                              "the grader's code") for r in results]
    return results


def isolated_check(name: str, answer: Any, seed: int, parts: list[str] | None, timeout: float) -> list[PartResult]:
    from . import exercise
    ex = exercise(name)
    if not hasattr(os, "fork"):
        return _in_child(name, answer, seed, parts)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            os.close(r)
            os.setpgid(0, 0)
            import resource
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            resource.setrlimit(resource.RLIMIT_AS, (MEMORY_MB << 20, MEMORY_MB << 20))
            sys.stdout = sys.stderr = io.StringIO()  # the kernel's streams belong to the parent
            results = _in_child(name, answer, seed, parts)
            data = json.dumps([x.to_json() for x in results]).encode()
            with os.fdopen(w, "wb") as f:
                f.write(data)
        except BaseException:  # noqa: BLE001 - the child must reach os._exit
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    chunks, deadline = [], time.monotonic() + timeout
    timed_out = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([r], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(r, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(r)
        if timed_out:
            for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
                try:
                    target()
                except OSError:
                    pass
        _, status = os.waitpid(pid, 0)
    if timed_out:
        return fail_all(ex, parts, f"time limit: the self-check did not finish within {timeout:g} s: does your "
                                   f"function loop forever (or wait for something that never comes)?")
    try:
        return [PartResult(**d) for d in json.loads(b"".join(chunks))]
    except (ValueError, TypeError):
        if os.WIFSIGNALED(status):
            how = f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
        else:
            how = f"exited with status {os.WEXITSTATUS(status)}"
        return fail_all(ex, parts, f"the process checking your function {how} (a crash, os._exit, or out of "
                                   "memory in your code)")
