"""Exercise: find and fix a completion-order bug in the block layer's coroutine, `bdrv_co_do_rw`.

QEMU 1.6.1 block.c: `bdrv_co_do_rw` (the coroutine `bdrv_aio_writev` starts) does the request, *then*
schedules the bottom half `bdrv_co_em_bh`, which calls the device's callback (`ide_sector_write_cb`) from the
main loop (block.c:3874-3875, 3850; semantics.md (g)). Each student gets one buggy ordering (seeded):

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

from .base import Exercise, Part, PartResult, StudentError, capture, fail_all, not_callable, rng
from .model import from_summary, image_problems, probe, run_default_guest, summarize

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


INTRO = """The completion path of a PIO write (semantics.md (g)):

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

TEMPLATE = '''from vmio_edu.qemu.async_ import qemu_bh_schedule
from vmio_edu.qemu.block import bdrv_co_do_readv, bdrv_co_do_writev, bdrv_co_em_bh
from vmio_edu.qemu.main_loop import qemu_bh_new


def bdrv_co_do_rw(acb):
    """The coroutine body of bdrv_aio_readv/writev (block.c): do the request, then complete it."""
    bs = acb.bs
    # YOUR CODE HERE
    raise NotImplementedError()
'''

PARTS = (
    Part("after_io", 2, "each completion callback runs after its request's pwrite"),
    Part("bottom_half", 1, "callbacks come from the bottom half on the main loop, even for a request that "
                           "fails at once"),
    Part("once", 1, "each request completes exactly once: every sector reaches the image"),
    Part("reads", 1, "a write + read back still works"),
)
WATCH = ("sys_pwrite64", "sys_pread64", "ide_sector_write_cb", "ide_sector_read_cb", "bdrv_co_em_bh", "bdrv_aio_writev",
         "bdrv_aio_readv")
QEMU_AIO_READ, QEMU_AIO_WRITE = 1, 2
EIO = 5


def capture_run(student: Any, w: dict) -> dict:
    """Sandbox side: one run of the default guest with the student's bdrv_co_do_rw plugged in."""
    import vmio_edu.qemu.block as block

    def ide_state(m: Any) -> dict:
        s = m.ide.bus[0].ifs[0]
        return {"pio_aiocb": s.pio_aiocb is not None, "status": s.status, "error": s.error}

    run = run_default_guest(w["op"], w["lba"], w["sectors"], seed=w["pattern"], watch=WATCH, inspect=ide_state,
                            patches=[(block, "bdrv_co_do_rw", student)])
    return summarize(run)


def _run(answer: Any, w: dict, op: str) -> Any:
    try:
        d = capture(answer, "run", dict(w, op=op), CAPTURES)
    except StudentError as e:
        return from_summary({"ok": False, "error": str(e)}, op, w["lba"], w["sectors"], w["pattern"])
    run = from_summary(d, op, w["lba"], w["sectors"], w["pattern"])
    calls = []
    for c in run.extra.get("calls", []) if isinstance(run.extra.get("calls"), list) else []:
        if isinstance(c, list) and len(c) == 4 and isinstance(c[2], list):
            calls.append((c[1], [str(x) for x in c[2]], c[3]))
    run.extra["calls"] = calls  # (thread, stack of function names, info)
    return run


def _named(run: Any, fn: str) -> list:
    return [c for c in run.extra["calls"] if c[1] and c[1][-1] == fn]


def _gen_problem(answer: Any) -> str | None:
    is_gen = getattr(answer, "is_generator", None)
    if is_gen is None:
        fn = getattr(answer, "__wrapped_student__", answer)
        is_gen = inspect.isgeneratorfunction(fn)
    if not is_gen:
        return ("`bdrv_co_do_rw` must be a coroutine_fn, a generator function: it needs `yield from` for the "
                "request (as it is, the coroutine cannot wait for the thread pool)")
    return None


def _order(run: Any, label: str) -> str | None:
    """The first completion that ran before its request's pwrite/pread, or None."""
    done = {QEMU_AIO_READ: 0, QEMU_AIO_WRITE: 0}
    completed = {QEMU_AIO_READ: 0, QEMU_AIO_WRITE: 0}
    for thread, stack, info in run.extra["calls"]:
        fn = stack[-1]
        if fn in ("sys_pwrite64", "sys_pread64"):
            done[QEMU_AIO_WRITE if fn == "sys_pwrite64" else QEMU_AIO_READ] += 1
        elif fn in ("ide_sector_write_cb", "ide_sector_read_cb"):
            kind = QEMU_AIO_WRITE if fn == "ide_sector_write_cb" else QEMU_AIO_READ
            completed[kind] += 1
            if completed[kind] > done[kind]:
                io = "pwrite" if kind == QEMU_AIO_WRITE else "pread"
                return (f"{label}: {fn} for request {completed[kind]} ran (on {thread}) before its {io}: the device "
                        f"was told the sector was {'written' if io == 'pwrite' else 'read'} while the data was not "
                        "there yet. Schedule the bottom half after the request's `yield from` returns.")
    return None


def _counts(run: Any, w: dict, op: str) -> list[str]:
    """Every request submitted completes: no check passes on a run where nothing completed."""
    out = []
    n = w["sectors"]
    wcb, rcb = len(_named(run, "ide_sector_write_cb")), len(_named(run, "ide_sector_read_cb"))
    if op in ("write", "both") and wcb == 0:
        out.append(f"no write completed ({n} sector(s) submitted): ide_sector_write_cb never ran")
    if op == "both" and rcb == 0:
        out.append(f"no read completed ({n} sector(s) submitted): ide_sector_read_cb never ran")
    return out


def _after_io(part: Part, answer: Any, p: dict) -> PartResult:
    problems = []
    for label, w, op in (("a write", p["write"], "write"), ("a write + read back", p["read"], "both")):
        run = _run(answer, w, op)
        if not run.ok:
            problems.append(f"{label} did not finish: {run.error}")
            continue
        problems += [f"{label}: {x}" for x in _counts(run, w, op)]
        bad = _order(run, label)
        if bad:
            problems.append(bad)
    if problems:
        return PartResult(part.name, 0, part.points, "\n".join(problems[:3]))
    return PartResult(part.name, part.points, part.points, "every completion callback ran after its pwrite/pread")


def _bottom_half(part: Part, answer: Any, p: dict) -> PartResult:
    problems = []
    for label, w in (("a normal write", p["write"]), ("a write past the end of the disk", p["edge"])):
        run = _run(answer, w, "write")
        if not run.ok:
            problems.append(f"{label} did not finish: {run.error}")
            continue
        problems += [f"{label}: {x}" for x in _counts(run, w, "write")]
        bad = [(thread, stack) for thread, stack, _info in _named(run, "ide_sector_write_cb")
               if "bdrv_co_em_bh" not in stack or thread != "main"]
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
    problems = []
    w = p["write"]
    run = _run(answer, w, "write")
    if not run.ok:
        problems.append(f"the write did not finish: {run.error}")
    else:
        pw = len(_named(run, "sys_pwrite64"))
        cbs = _named(run, "ide_sector_write_cb")
        if len(cbs) != pw or pw != w["sectors"]:
            problems.append(f"{w['sectors']} request(s), {pw} pwrite(s), {len(cbs)} completion callbacks: each "
                            "request must be done once and complete exactly once")
        if any(info != 0 for _t, _s, info in cbs):
            problems.append(f"a successful write completed with ret = {next(i for _t, _s, i in cbs if i != 0)!r}; "
                            "it should pass on the request's result (0)")
        problems += image_problems(run, w["lba"], w["sectors"])
        if run.guest.get("sectors_done") != w["sectors"] or run.guest.get("error"):
            problems.append(f"the guest's driver finished {run.guest.get('sectors_done')} of {w['sectors']} "
                            f"sectors (status {run.guest.get('status') or 0:#x})")
    e = p["edge"]
    run = _run(answer, e, "write")
    if not run.ok:
        problems.append(f"the write past the end of the disk did not finish: {run.error}")
    else:
        rets = [info for _t, _s, info in _named(run, "ide_sector_write_cb")]
        if len(rets) != 2 or rets[0] != 0 or rets[1] != -EIO:
            problems.append(f"a write of 2 sectors at LBA {e['lba']} (the last sector of the disk, then one past "
                            f"it) completed with ret values {rets}; expected [0, {-EIO}]: the second request "
                            "fails with -EIO, and the completion must pass that result on as it is (store "
                            "what `yield from` returns, negative errno included)")
        elif not (run.guest.get("status", 0) & 1):
            problems.append("the guest never saw the error of the write past the end (status ERR clear)")
    if problems:
        return PartResult(part.name, 0, part.points, "\n".join(problems[:3]))
    return PartResult(part.name, part.points, part.points,
                      f"{w['sectors']} requests, {w['sectors']} completions, the image holds every sector, and a "
                      "failing request reports -EIO")


def _reads(part: Part, answer: Any, p: dict) -> PartResult:
    w = p["read"]
    run = _run(answer, w, "both")
    problems = []
    if not run.ok:
        problems.append(f"the write + read back did not finish: {run.error}")
    else:
        back = run.guest.get("read_back", b"")
        want = b"".join(run.expected.get(w["lba"] + i, b"") for i in range(w["sectors"]))
        if not isinstance(back, bytes) or back[:len(want)] != want:
            problems.append(f"the guest read back different bytes than it wrote at LBA {w['lba']} (a read must "
                            "call bdrv_co_do_readv: it fills the guest's buffer from the image)")
        problems += image_problems(run, w["lba"], w["sectors"])
        reads = len(_named(run, "sys_pread64"))
        if reads != w["sectors"]:
            problems.append(f"{reads} pread(s) for {w['sectors']} sectors read back: a read request must read")
        rcb = len(_named(run, "ide_sector_read_cb"))
        if rcb != w["sectors"]:
            problems.append(f"{rcb} read completions for {w['sectors']} sectors")
    if problems:
        return PartResult(part.name, 0, part.points, "\n".join(problems[:3]))
    return PartResult(part.name, part.points, part.points, f"read back {w['sectors']} sectors at LBA {w['lba']}")


def check(answer: Any, params: dict, parts: list[str] | None = None, hidden: list | None = None) -> list[PartResult]:
    problem_ = not_callable(answer, EXERCISE.answer) or _gen_problem(answer)
    if problem_:
        return fail_all(EXERCISE, parts, problem_)
    why = probe()
    if why is not None:
        return fail_all(EXERCISE, parts, f"not graded: the model cannot run here ({why})")
    # hidden: other LBAs and sector counts for the same runs, from the instructor material
    p = dict(params)
    for h in hidden or []:
        p.update(h)
    out = []
    for part in PARTS:
        if parts is not None and part.name not in parts:
            continue
        fn = {"after_io": _after_io, "bottom_half": _bottom_half, "once": _once, "reads": _reads}[part.name]
        out.append(fn(part, answer, p))
    return out


CAPTURES = {"run": capture_run}

EXERCISE = Exercise(
    name=NAME, title="Fix a completion-order bug",
    goal="See why QEMU completes block requests from a bottom half, after the I/O, and never from inside "
         "the submitting call: find the misordered completion in a buggy `bdrv_co_do_rw` and fix it, checked "
         "on the model's recorded trace.",
    answer="bdrv_co_do_rw", parts=PARTS, make=make, problem=problem, check=check, template=TEMPLATE,
    intro=INTRO, uses_model=True, originals=(("vmio_edu.qemu.block", "bdrv_co_do_rw"),), captures=CAPTURES)
