"""Then and now at one stop: where the stop's function sits on the other stack's path, and the other
stack's backtrace at the matching stop (the debugger panel's "Then and now" page).

    from vmio_edu.trace.thenandnow import then_and_now
    d = then_and_now(dbg, dbg.stop)      # plain data; the panel renders it

For a stop in `ide_sector_write` on QEMU 10.2 it gives the aligned row of `vmio-edu diff-paths` for that
function (SAME / RENAMED / ADDED / REMOVED / MOVED, with both stages), and QEMU 1.6.1's backtrace when it
makes the same call: the same occurrence (the 3rd `ide_data_writew` beside the 3rd) when both stacks call the
function equally often, else the first. A function only one stack has (10.2's `bdrv_aligned_pwritev`) is
matched at its nearest caller that both have, and the answer says so.

The comparison runs the same default guest (op, lba, sectors, seed, engine) on both stacks in separate
machines (`diff_paths`, `break_frames`, cached per configuration): the machine being debugged is only read
(its configuration, the stop, the recorded trace), never run or changed.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from .events import ENTER
from .tracepoint import REGISTRY

_READ_FIRST = ("ide_sector_read", "cmd_read_pio")  # the guest's read phase has begun (op "both")
_WRITE_FIRST = ("ide_sector_write", "cmd_write_pio")


def other_stack(stack: str) -> str:
    return "1.6.1" if stack == "10.2" else "10.2"


@lru_cache(maxsize=4)  # a DiffResult keeps both recorded runs: a few only
def _diff(op: str, lba: int, sectors: int, seed: int, engine: str) -> Any:
    from .diffreport import diff_paths
    return diff_paths(op=op, lba=lba, sectors=sectors, seed=seed, engine=engine, brk=None, host=False)


@lru_cache(maxsize=64)
def _frames_at(stack: str, function: str, occurrence: int, op: str, lba: int, sectors: int, seed: int,
               engine: str) -> dict:
    """The backtrace at the `occurrence`-th call (1-based) of `function` on `stack` (as break_frames)."""
    from ..machine import Machine
    with Machine(op=op, lba=lba, sectors=sectors, engine=engine, seed=seed, stack=stack) as m:
        dbg = m.debugger()
        dbg.break_at(function)
        for _ in range(occurrence):
            stop = dbg.cont()
            if stop.reason != "breakpoint":
                return {"error": f"{function} was not reached {occurrence} time(s) on {stack}: the guest halted"}
        return {"thread": stop.thread, "index": stop.index, "frames": [f.to_json() for f in stop.backtrace]}


def _calls_before(events: Any, index: int, names: tuple[str, ...], stack: str) -> list[tuple[int, str]]:
    """(index, name) of each entry into one of `names` (trace points of `stack`) up to `index`."""
    ids = {i: tp.name for i, tp in enumerate(REGISTRY) if tp.name in names and tp.stack == stack}
    return [(i, ids[e.what]) for i, e in enumerate(events[:max(index, -1) + 1])
            if e.kind == ENTER and e.what in ids]


def _phase(events: Any, index: int, stack: str) -> str:
    """The guest's direction at `index` for op "both" (the default guest writes, then reads back)."""
    calls = _calls_before(events, index, _READ_FIRST + _WRITE_FIRST, stack)
    return "read" if calls and calls[-1][1] in _READ_FIRST else "write"


def _side_rows(rows: list, side: str, name: str) -> list:
    return [r for r in rows if getattr(r, side) is not None and getattr(r, side).name == name]


def then_and_now(dbg: Any, stop: Any = None) -> dict:
    """Plain data for `stop` (default: the debugger's current stop) of `dbg`'s machine:

        {"stack", "other_stack", "op", "function", "rows": [diff-paths rows for it, JSON], "row": the one
         on this stop's chain of callers (JSON) or None, "matched_at": the function the other stack is
         stopped at's counterpart here (the stop's function, or its nearest caller both stacks have),
         "other_function", "occurrence", "other_occurrence", "other_backtrace": {"thread", "index",
         "frames"} or {"error"}, "note"}

    or {"error": why} where there is nothing to compare (not in a modelled function, a guest of one's own,
    a virtio disk)."""
    stop = dbg.stop if stop is None else stop
    m = dbg.machine
    cfg = getattr(dbg, "_config", None) or dict(m._config)
    stack = m.stack.name
    if cfg.get("guest") is not None:
        return {"error": "then and now compares the default guest on both stacks; this machine runs a guest "
                         "of its own"}
    if cfg.get("disk", "ide") != "ide":
        return {"error": "then and now compares the IDE path (vmio-edu diff-paths); QEMU 10.2's virtio-blk is "
                         "not modelled"}
    if not stop.function or stop.kind not in ("enter", "leave") or not stop.backtrace:
        return {"error": "stop inside a modelled function (Step or Continue) to see it beside the other stack"}
    op = cfg.get("op", "both")
    phase = _phase(dbg.events, stop.index, stack) if op == "both" else op
    if phase not in ("write", "read"):
        return {"error": f"then and now compares a write or a read, not op={op!r}"}
    lba, sectors, seed, engine = cfg.get("lba", 0), cfg.get("sectors", 1), cfg.get("seed", 0), m.engine
    result = _diff(phase, lba, sectors, seed, engine)
    side, other_side = ("new", "old") if stack == "10.2" else ("old", "new")
    other = other_stack(stack)
    frames = [f for f in stop.backtrace if f.layer != "guest"]
    rows = _side_rows(result.rows, side, stop.function)
    row = _on_chain(rows, side, frames)
    # the nearest frame (the stop's own first) whose row has a stage on the other side
    matched_at, other_fn, pick = None, None, None
    for i, f in enumerate(frames):
        cand = _on_chain(_side_rows(result.rows, side, f.function), side, frames[i:])
        if cand is not None and getattr(cand, other_side) is not None:
            matched_at, other_fn, pick = f.function, getattr(cand, other_side).name, cand
            break
    out = {"stack": stack, "other_stack": other, "op": phase, "function": stop.function,
           "rows": [r.to_json() for r in rows], "row": row.to_json() if row is not None else None,
           "row_index": next((i for i, r in enumerate(rows) if r is row), None),
           "matched_at": matched_at, "other_function": other_fn, "occurrence": None, "other_occurrence": None,
           "other_backtrace": None, "note": "", "qemu": {"old": result.old.qemu, "new": result.new.qemu},
           "linux": {"old": result.old.linux, "new": result.new.linux}}
    if other_fn is None:
        out["note"] = (f"{stop.function} and every caller on this stack are only on {stack}'s path: nothing to "
                       f"stop at on {other}")
        return out
    here = len(_calls_before(dbg.events, stop.index, (matched_at,), stack)) if op != "both" else 0
    total_here = sum(getattr(r, side).count for r in _side_rows(result.rows, side, matched_at))
    total_there = sum(getattr(r, other_side).count for r in _side_rows(result.rows, other_side, other_fn))
    n = here if op != "both" and here and total_here == total_there else 1
    out["occurrence"], out["other_occurrence"] = here or None, n
    out["other_backtrace"] = _frames_at(other, other_fn, n, phase, lba, sectors, seed, engine)
    why = []
    if matched_at != stop.function:
        why.append(f"{stop.function} is only on {stack}'s path ({(row.kind if row else 'not on the path')}); "
                   f"{other} is shown at its nearest caller both stacks have, {matched_at} ({other_fn} there)")
    elif other_fn != stop.function:
        why.append(f"{stop.function} is {other_fn} on {other} ({pick.kind})")
    if n == here and here:
        why.append(f"call {n} of {other_fn} on {other}, as this is call {here} of {matched_at} here")
    elif op == "both":
        why.append(f"the first call of {other_fn} in a {phase} alone (this machine writes, then reads back)")
    else:
        why.append(f"the first call of {other_fn} on {other} ({matched_at} runs {total_here} time(s) here, "
                   f"{other_fn} {total_there} there)")
    out["note"] = "; ".join(why)
    return out


def _on_chain(rows: list, side: str, frames: list) -> Any:
    """Of `rows` (one function's stages on `side`), the one reached through this backtrace's callers:
    its stage's caller is frame #1's function, its thread the stop's; else the first on the thread, else
    the first."""
    if not rows:
        return None
    caller = frames[1].function if len(frames) > 1 else ""
    thread = frames[0].thread if frames else None

    def role(t: str) -> str:
        return "worker" if t.startswith("worker") else t
    for r in rows:
        s = getattr(r, side)
        if s.caller == caller and role(s.thread) == role(thread or ""):
            return r
    for r in rows:
        if role(getattr(r, side).thread) == role(thread or ""):
            return r
    return rows[0]


__all__ = ["other_stack", "then_and_now"]
