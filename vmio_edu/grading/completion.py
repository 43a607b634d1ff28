"""Exercise: find and fix a completion-order bug in the block layer's coroutine, `bdrv_co_do_rw`.

QEMU 1.6.1 block.c: `bdrv_co_do_rw` (the coroutine `bdrv_aio_writev` starts) does the request, *then*
schedules the bottom half `bdrv_co_em_bh`, which calls the device's callback (`ide_sector_write_cb`) from the
main loop (block.c:3874-3875, 3850). Each student gets one buggy ordering (seeded):

* early:  the bottom half is scheduled before the request runs: the device hears "done" (status 0x50,
          IRQ 14) before the pwrite has happened;
* direct: the callback is called straight from the coroutine instead of from a bottom half: when a request
          fails at once (a write past the end of the disk), the callback runs inside `bdrv_aio_writev` on
          the vCPU thread, before the IDE device has even stored its request pointer;
* double: the bottom half is scheduled and the callback is also called directly: every request
          completes twice, so the IDE device counts two sectors per write.

The oracle is the model: the student's function replaces `vmio_edu.qemu.block.bdrv_co_do_rw` and the
recorded trace, the image and the IDE state are checked.
"""
from __future__ import annotations

import inspect
from typing import Any

from .base import Exercise, Part, PartResult, fail_all, not_callable, rng
from .model import ModelUnavailable, image_problems, run_default_guest

NAME = "completion"
IMAGE_SECTORS = 2048  # Machine's default 1 MiB image

_HEAD = '''def bdrv_co_do_rw(acb):
    """The coroutine body of bdrv_aio_readv/writev."""
    bs = acb.bs
'''
_IO = '''    if not acb.is_write:
        acb.req.error = yield from bdrv_co_do_readv(bs, acb.req.sector, acb.req.nb_sectors, acb.req.qiov,
                                                    acb.req.flags)
    else:
        acb.req.error = yield from bdrv_co_do_writev(bs, acb.req.sector, acb.req.nb_sectors, acb.req.qiov,
                                                     acb.req.flags)
'''
_BH = '''    acb.bh = qemu_bh_new(bdrv_co_em_bh, acb)
    qemu_bh_schedule(acb.bh)
'''
_DIRECT = '''    acb.cb(acb.opaque, acb.req.error)
'''
BUGGY = {"early": _HEAD + _BH + _IO, "direct": _HEAD + _IO + _DIRECT, "double": _HEAD + _IO + _BH + _DIRECT}
SYMPTOM = {
    "early": "On a write, the guest sometimes gets IRQ 14 and status 0x50 for a sector whose pwrite has not "
             "happened yet. In the trace, `ide_sector_write_cb` comes before the worker's `handle_aiocb_rw`.",
    "direct": "Normal writes work. But a write that runs past the end of the disk leaves the IDE drive "
              "believing a request is still in flight (`pio_aiocb` stays set), and the trace shows "
              "`ide_sector_write_cb` running on vcpu0, inside `bdrv_aio_writev`.",
    "double": "A write of several sectors stops after the first: the guest's driver sees the command finish "
              "early and the image is missing sectors. The trace shows two `ide_sector_write_cb` per pwrite.",
}


def make(seed: int) -> dict:
    r = rng(NAME, seed)
    variant = r.choice(sorted(BUGGY))
    sectors = r.choice((2, 3))
    return {"seed": seed, "variant": variant,
            "write": {"lba": r.randrange(1, 1800), "sectors": sectors, "pattern": r.randrange(1 << 16)},
            "read": {"lba": r.randrange(1, 1800), "sectors": 2, "pattern": r.randrange(1 << 16)},
            # a write whose last sector falls off the end of the 1 MiB image: completes at once with -EIO
            "edge": {"lba": IMAGE_SECTORS - 1, "sectors": 2, "pattern": r.randrange(1 << 16)}}


def problem(p: dict) -> str:
    w = p["write"]
    return f"""**Your bug** (seed {p['seed']}). Someone reordered QEMU's `bdrv_co_do_rw` like this:

```python
{BUGGY[p['variant']].rstrip()}
```

Symptom: {SYMPTOM[p['variant']]}

Write the correct `bdrv_co_do_rw(acb)` in the answer cell. The checks plug it into the model and write
{w['sectors']} sectors at LBA {w['lba']}, write and read back 2 sectors at LBA {p['read']['lba']}, and
write 2 sectors at LBA {p['edge']['lba']}, the last sector of the disk, so the second one fails."""


INTRO = """The completion path of a PIO write (QEMU 1.6.1: `bdrv_co_do_rw` [block.c:3861](https://github.com/qemu/qemu/blob/v1.6.1/block.c#L3861), `bdrv_co_em_bh` [block.c:3846](https://github.com/qemu/qemu/blob/v1.6.1/block.c#L3846), the thread pool's `event_notifier_ready` [thread-pool.c:170](https://github.com/qemu/qemu/blob/v1.6.1/thread-pool.c#L170)):

1. **vcpu0**: `ide_sector_write` → `bdrv_aio_writev` creates a coroutine on `bdrv_co_do_rw` and enters
   it. The coroutine runs down to `bdrv_co_io_em`, which hands the request to the thread pool and
   *yields*: control goes back to the vCPU, which re-enters the guest.
2. **worker-1**: `aio_worker` → `pwrite` on the raw image, then it signals the pool's event notifier.
3. **main**: `event_notifier_ready` → `bdrv_co_io_em_complete` re-enters the coroutine, which returns from
   the `yield from` with the result; `bdrv_co_do_rw` stores it in `acb.req.error` and schedules the bottom
   half `bdrv_co_em_bh`. On the next `aio_bh_poll`, `bdrv_co_em_bh` calls `acb.cb(acb.opaque, ret)`,
   that is `ide_sector_write_cb`: BSY off, count the sector, next window or done, IRQ 14.

Why a bottom half and not a direct call? A request can also finish *without ever yielding* (it fails its
checks at once). Then the coroutine runs to its end inside `bdrv_aio_writev`, and a direct callback would
run inside the device's own submit call, before the device has stored the returned AIOCB. The bottom half
always defers the callback to the main loop.

`bdrv_co_do_rw` is a *coroutine_fn*: in vmio-edu a Python generator. A nested coroutine call is
`yield from f(...)`; its value is the callee's return value."""

SOLUTION = '''from vmio_edu.qemu.async_ import qemu_bh_schedule
from vmio_edu.qemu.block import bdrv_co_do_readv, bdrv_co_do_writev, bdrv_co_em_bh
from vmio_edu.qemu.main_loop import qemu_bh_new


def bdrv_co_do_rw(acb):
    """The coroutine body of bdrv_aio_readv/writev (block.c): do the request, then complete it."""
    bs = acb.bs
    ### BEGIN SOLUTION
    if not acb.is_write:
        acb.req.error = yield from bdrv_co_do_readv(bs, acb.req.sector, acb.req.nb_sectors, acb.req.qiov,
                                                    acb.req.flags)
    else:
        acb.req.error = yield from bdrv_co_do_writev(bs, acb.req.sector, acb.req.nb_sectors, acb.req.qiov,
                                                     acb.req.flags)
    acb.bh = qemu_bh_new(bdrv_co_em_bh, acb)
    qemu_bh_schedule(acb.bh)
    ### END SOLUTION
'''

PARTS = (
    Part("after_io", 2, "each completion callback runs after its request's pwrite"),
    Part("bottom_half", 1, "callbacks come from the bottom half on the main loop, even for a request that "
                           "fails at once"),
    Part("once", 1, "each request completes exactly once: every sector reaches the image"),
    Part("reads", 1, "a write + read back still works"),
)
WATCH = ("handle_aiocb_rw", "ide_sector_write_cb", "ide_sector_read_cb", "bdrv_co_em_bh", "bdrv_aio_writev")


def _run(answer: Any, w: dict, op: str):
    import vmio_edu.qemu.block as block

    def ide_state(m: Any) -> dict:
        s = m.ide.bus[0].ifs[0]
        return {"pio_aiocb": s.pio_aiocb is not None, "status": s.status, "error": s.error}

    return run_default_guest(op, w["lba"], w["sectors"], seed=w["pattern"], watch=WATCH, inspect=ide_state,
                             patches=[(block, "bdrv_co_do_rw", answer)])


def _gen_problem(answer: Any) -> str | None:
    fn = getattr(answer, "__wrapped__", answer)
    if not inspect.isgeneratorfunction(fn):
        return ("`bdrv_co_do_rw` must be a coroutine_fn, a generator function: it needs `yield from` for the "
                "request (as it is, the coroutine cannot wait for the thread pool)")
    return None


def _after_io(part: Part, answer: Any, p: dict) -> PartResult:
    w = p["write"]
    run = _run(answer, w, "write")
    if not run.ok:
        return PartResult(part.name, 0, part.points, f"the write did not finish: {run.error}")
    submitted = written = completed = 0
    for _i, thread, stack in run.extra["calls"]:
        fn = stack[-1] if stack else ""
        if fn == "bdrv_aio_writev":
            submitted += 1
        elif fn == "handle_aiocb_rw":
            written += 1
        elif fn == "ide_sector_write_cb":
            completed += 1
            # a completion beyond the requests submitted is a double completion: part "once" says so
            if completed <= submitted and completed > written:
                return PartResult(part.name, 0, part.points,
                                  f"ide_sector_write_cb for request {completed} ran (on {thread}) before its "
                                  "pwrite: the device was told the sector was written while the data was still "
                                  "only in its io_buffer (the guest may already be overwriting it with the next "
                                  "sector). Schedule the bottom half after the request's `yield from` returns.")
    cbs = sum(1 for c in run.extra["calls"] if c[2] and c[2][-1] == "ide_sector_write_cb")
    return PartResult(part.name, part.points, part.points,
                      f"{cbs} completion callback(s), each after its pwrite (LBA {w['lba']}, {w['sectors']} sectors)")


def _bottom_half(part: Part, answer: Any, p: dict) -> PartResult:
    problems = []
    for label, w in (("a normal write", p["write"]), ("a write past the end of the disk", p["edge"])):
        run = _run(answer, w, "write")
        if not run.ok:
            problems.append(f"{label} did not finish: {run.error}")
            continue
        bad = [(thread, stack) for _i, thread, stack in run.extra["calls"]
               if stack and stack[-1] == "ide_sector_write_cb" and ("bdrv_co_em_bh" not in stack or thread != "main")]
        bad.sort(key=lambda b: b[0] == "main")  # the worst first: a callback on another thread
        if bad:
            thread, stack = bad[0]
            caller = " → ".join(stack[-3:-1]) or "?"
            if thread != "main":
                where = (f"on {thread}, inside the submitting call: bdrv_aio_writev entered the coroutine, the "
                         f"request failed at once, and {caller} called the callback before bdrv_aio_writev had "
                         "even returned")
            else:
                where = f"on main but called from {caller} instead of the bottom half bdrv_co_em_bh"
            problems.append(f"{label}: ide_sector_write_cb ran {where}")
        if run.extra.get("pio_aiocb"):
            problems.append(f"{label}: afterwards the IDE drive still has a request in flight (pio_aiocb is set): "
                            "its callback cleared pio_aiocb before ide_sector_write stored the returned AIOCB")
    if problems:
        return PartResult(part.name, 0, part.points, "\n".join(problems[:3]))
    return PartResult(part.name, part.points, part.points, "every callback came from bdrv_co_em_bh on the main loop, "
                      "also when the request failed at once")


def _once(part: Part, answer: Any, p: dict) -> PartResult:
    w = p["write"]
    run = _run(answer, w, "write")
    problems = []
    if not run.ok:
        problems.append(f"the write did not finish: {run.error}")
    else:
        pw = sum(1 for c in run.extra["calls"] if c[2] and c[2][-1] == "handle_aiocb_rw")
        cbs = sum(1 for c in run.extra["calls"] if c[2] and c[2][-1] == "ide_sector_write_cb")
        if cbs != pw:
            problems.append(f"{pw} pwrite(s) but {cbs} completion callbacks: each request must complete exactly once")
        problems += image_problems(run, w["lba"], w["sectors"])
        if run.guest.get("sectors_done") != w["sectors"] or run.guest.get("error"):
            problems.append(f"the guest's driver finished {run.guest.get('sectors_done')} of {w['sectors']} "
                            f"sectors (status {run.guest.get('status', 0):#x})")
    if problems:
        return PartResult(part.name, 0, part.points, "\n".join(problems[:3]))
    return PartResult(part.name, part.points, part.points,
                      f"{w['sectors']} requests, {w['sectors']} completions, the image holds every sector")


def _reads(part: Part, answer: Any, p: dict) -> PartResult:
    w = p["read"]
    run = _run(answer, w, "both")
    problems = []
    if not run.ok:
        problems.append(f"the write + read back did not finish: {run.error}")
    else:
        back = run.guest.get("read_back", b"")
        want = b"".join(run.image.get(w["lba"] + i, b"") for i in range(w["sectors"]))
        if back[:len(want)] != want or not want:
            problems.append("the guest read back different bytes than the image holds")
        rcb = sum(1 for c in run.extra["calls"] if c[2] and c[2][-1] == "ide_sector_read_cb")
        if rcb != w["sectors"]:
            problems.append(f"{rcb} read completions for {w['sectors']} sectors")
    if problems:
        return PartResult(part.name, 0, part.points, "\n".join(problems))
    return PartResult(part.name, part.points, part.points, f"read back {w['sectors']} sectors at LBA {w['lba']}")


def check(answer: Any, params: dict, parts: list[str] | None = None, hidden: bool = False) -> list[PartResult]:
    problem_ = not_callable(answer, EXERCISE.answer) or _gen_problem(answer)
    if problem_:
        return fail_all(EXERCISE, parts, problem_)
    out = []
    for part in PARTS:
        if parts is not None and part.name not in parts:
            continue
        fn = {"after_io": _after_io, "bottom_half": _bottom_half, "once": _once, "reads": _reads}[part.name]
        try:
            out.append(fn(part, answer, params))
        except ModelUnavailable as e:
            out.append(PartResult(part.name, 0, part.points, f"not graded: the model cannot run here ({e})"))
    return out


EXERCISE = Exercise(
    name=NAME, title="Fix a completion-order bug",
    goal="See why QEMU completes block requests from a bottom half, after the I/O, and never from inside "
         "the submitting call: find the misordered completion in a buggy `bdrv_co_do_rw` and fix it, checked "
         "on the model's recorded trace.",
    answer="bdrv_co_do_rw", parts=PARTS, make=make, problem=problem, check=check, solution=SOLUTION,
    intro=INTRO, uses_model=True)
