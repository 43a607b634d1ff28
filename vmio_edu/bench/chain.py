"""The chain: the default guest writing then reading through the whole model, on one engine, with
nothing attached, recording the trace, and a debugger whose breakpoint never fires."""
from __future__ import annotations

import time
from typing import Callable

from .common import CASES, OPS, Progress


def _one_chain_run(engine: str, op: str, sectors: int, case: str) -> dict:
    from ..machine import Machine

    with Machine(engine=engine, op=op, lba=0, sectors=sectors, record=(case == "recording")) as m:
        if case == "debugger":
            dbg = m.debugger()
            never = lambda stop: False  # noqa: E731 - evaluated at every hit, never true
            dbg.break_at("ide_sector_write" if op == "write" else "ide_sector_read", condition=never)
            t0, c0 = time.perf_counter(), time.process_time()
            stop = dbg.cont()
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            if stop.reason != "halted":
                raise RuntimeError(f"the debugger run stopped with {stop.reason!r}, not at the halt")
        else:
            t0, c0 = time.perf_counter(), time.process_time()
            m.run()
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        err = m.guest_result().get("error")
        if err:
            raise RuntimeError(f"the guest's {op} failed (error register {err:#x})")
        return {"exits": len(m.exits), "seconds": dt, "cpu_seconds": cpu,
                "events": len(m.trace.events) if m.trace is not None else None}


def _chain_case(engine: str, sectors: int, case: str) -> dict:
    """One case on one engine: a write then a read of `sectors` sectors (only the run is timed, not
    building the machine)."""
    per_op = {op: _one_chain_run(engine, op, sectors, case) for op in OPS}
    exits = sum(r["exits"] for r in per_op.values())
    seconds = sum(r["seconds"] for r in per_op.values())
    cpu = sum(r["cpu_seconds"] for r in per_op.values())
    out = {"exits": exits, "seconds": seconds, "cpu_seconds": cpu, "per_op": per_op}
    if case == "recording":
        out["events"] = sum(r["events"] for r in per_op.values())
    return out


def _best(samples: list[dict]) -> dict:
    """The fastest of several samples of the same measure (the one least disturbed by other processes, as
    timeit takes the minimum), with every sample's seconds kept in `seconds_samples`. CPU time (all the
    process's threads) is kept the same way, its least sample in `cpu_seconds`."""
    best = dict(min(samples, key=lambda x: x["seconds"]))
    best["seconds_samples"] = [x["seconds"] for x in samples]
    if all("cpu_seconds" in x for x in samples):
        best["cpu_seconds_samples"] = [x["cpu_seconds"] for x in samples]
        best["cpu_seconds"] = min(best["cpu_seconds_samples"])
    return best


def chain(engine: str, sectors: int, rounds: int = 1, progress: Progress | None = None,
          limit: Callable[[], None] | None = None) -> dict:
    """The three cases on one engine, `rounds` times in turn; each case keeps its fastest round.
    `limit()`, if given, is called before each round and after the last, so the engine's limit is sampled
    across the same stretch of time as the chain (what keeps the ratios honest on a shared machine)."""
    runs: dict[str, list[dict]] = {case: [] for case in CASES}
    for rnd in range(rounds):
        if limit:
            limit()
        for case in CASES:
            if progress:
                progress(f"chain {engine} {case} (round {rnd + 1}/{rounds})")
            runs[case].append(_chain_case(engine, sectors, case))
    if limit:
        limit()
    cases = {case: _best(samples) for case, samples in runs.items()}
    for c in cases.values():
        c["exits_per_s"] = c["exits"] / c["seconds"]
        c["us_per_exit"] = 1e6 * c["seconds"] / c["exits"]
    base, base_cpu = cases["nothing"]["seconds"], cases["nothing"]["cpu_seconds"]
    for c in cases.values():
        c["time_vs_nothing"] = c["seconds"] / base
        # CPU time is the cost itself: less moved by other processes than the wall clock (targets use it)
        c["cpu_vs_nothing"] = c["cpu_seconds"] / base_cpu
    rec = cases["recording"]
    rec["events_per_exit"] = rec["events"] / rec["exits"]
    # what recording adds, spread over the events it recorded (noise can make it negative)
    rec["extra_ns_per_event"] = 1e9 * (rec["seconds"] - base) / rec["events"]
    counts = {x["exits"] for samples in runs.values() for x in samples}
    if len(counts) != 1:
        raise RuntimeError(f"the runs made different exit counts on {engine}: {sorted(counts)}")
    return {"status": "measured", "sectors": sectors, "ops": list(OPS), "rounds": rounds, "cases": cases}


def _add_ratios(chain_r: dict, limits: dict[str, float]) -> None:
    """For each case: exits/s divided by each limit rate given (name -> per_s)."""
    for c in chain_r["cases"].values():
        c["vs_limit"] = {name: c["exits_per_s"] / per_s for name, per_s in limits.items()}
