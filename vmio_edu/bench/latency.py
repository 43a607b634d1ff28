"""Debugger latency: `step()` from the start, `back()` deep into a long trace."""
from __future__ import annotations


import time
from .common import Progress, _latency, skipped


def step_latency(n: int, engine: str = "unicorn") -> dict:
    """`n` dbg.step() calls from the start of the default machine (write and read of one sector)."""
    from ..machine import Machine

    samples = []
    with Machine(engine=engine) as m:
        dbg = m.debugger()
        for _ in range(n):
            t0 = time.perf_counter()
            stop = dbg.step()
            samples.append(time.perf_counter() - t0)
            if stop.reason != "step":
                break
    out = _latency(samples)
    out.update(engine=engine, machine="Machine() default: op=both, 1 sector")
    return out


def back_latency(points: tuple, sectors: int, engine: str = "unicorn",
                 progress: Progress | None = None) -> dict:
    """At each (index, calls): dbg.goto(index), then `calls` dbg.back() in a row, each timed."""
    from ..machine import Machine

    out: dict[str, dict] = {}
    with Machine(engine=engine, op="write", sectors=sectors) as m:
        dbg = m.debugger()
        for index, calls in points:
            if progress:
                progress(f"back() at {index}")
            t0 = time.perf_counter()
            stop = dbg.goto(index)
            goto_s = time.perf_counter() - t0
            if stop.index != index:
                out[str(index)] = skipped(f"the trace ends before index {index} (at {stop.index})")
                continue
            samples = []
            for _ in range(calls):
                t0 = time.perf_counter()
                stop = dbg.back()
                samples.append(time.perf_counter() - t0)
            r = _latency(samples)
            r.update(index=index, goto_seconds=goto_s, landed_at=stop.index)
            out[str(index)] = r
    return {"engine": engine, "machine": f"op=write, {sectors} sectors", "at": out}
