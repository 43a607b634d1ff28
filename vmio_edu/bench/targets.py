"""The issue's targets, each a ratio or a count from the same run, with `met` for the reader."""
from __future__ import annotations


from typing import Any


def target(value: float | None, goal: float, op: str, what: str, why_missing: str | None = None) -> dict:
    """One target: `met` is value >= goal (op ">=") or value <= goal (op "<="); None when not measured."""
    if op not in (">=", "<="):
        raise ValueError(f"op must be '>=' or '<=', not {op!r}")
    met = None if value is None else (value >= goal if op == ">=" else value <= goal)
    t = {"target": goal, "op": op, "value": value, "met": met, "what": what}
    if value is None:
        t["skipped"] = why_missing or "not measured"
    return t


def _get(d: dict, *path: str) -> Any:
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def compute_targets(r: dict) -> dict:
    """The targets (issue 6, and issue 13's for the debugger at engine speed), from the measures in `r`."""
    ch, lim = r["chain"], r["limits"]
    t: dict[str, dict] = {}
    if "unicorn" in ch:
        why = _get(ch, "unicorn", "reason")
        t["unicorn_chain_vs_hook"] = target(
            _get(ch, "unicorn", "cases", "nothing", "vs_limit", "unicorn_hook"), 0.1, ">=",
            "emulated engine, nothing attached: chain exits/s / raw Unicorn OUT-hook callbacks/s "
            "(rep outsw, hook returns at once)", why)
        t["unicorn_chain_vs_exit_each"] = target(
            _get(ch, "unicorn", "cases", "nothing", "vs_limit", "unicorn_exit_each_out"), 1 / 20, ">=",
            "emulated engine, nothing attached: chain exits/s / Unicorn's rate when every OUT leaves "
            "uc_emu_start", why)
        t["unicorn_recording_time"] = target(
            _get(ch, "unicorn", "cases", "recording", "cpu_vs_nothing"), 1.5, "<=",
            "emulated engine: recording CPU time / nothing-attached CPU time", why)
        t["unicorn_debugger_overhead"] = target(
            _get(ch, "unicorn", "cases", "debugger", "cpu_vs_nothing"), 1.5, "<=",
            "emulated engine: CPU time with a debugger whose breakpoint never hits / nothing attached", why)
    if "kvm" in ch:
        why = _get(ch, "kvm", "reason") or _get(lim, "kvm", "reason")
        t["kvm_chain_vs_bare"] = target(
            _get(ch, "kvm", "cases", "nothing", "vs_limit", "kvm_bare_run"), 0.25, ">=",
            "real engine, nothing attached: chain exits/s / bare KVM_RUN loop exits/s", why)
        t["kvm_recording_time"] = target(
            _get(ch, "kvm", "cases", "recording", "cpu_vs_nothing"), 1.5, "<=",
            "real engine: recording CPU time / nothing-attached CPU time", why)
        t["kvm_debugger_overhead"] = target(
            _get(ch, "kvm", "cases", "debugger", "cpu_vs_nothing"), 1.5, "<=",
            "real engine: CPU time with a debugger whose breakpoint never hits / nothing attached", why)
        t["kvm_back_p95_ms_at_100000"] = target(
            _get(r, "kvm_back", "at", "100000", "p95_ms"), 100.0, "<=",
            "real engine: dbg.back() latency at trace index 100,000, p95 (ms)",
            _get(r, "kvm_back", "at", "100000", "reason") or _get(r, "kvm_back", "reason")
            or "not measured in this run")
    t["step_p95_ms"] = target(_get(r, "step", "p95_ms"), 5.0, "<=", "dbg.step() latency, p95 (ms)")
    t["back_p95_ms_at_100000"] = target(
        _get(r, "back", "at", "100000", "p95_ms"), 50.0, "<=", "dbg.back() latency at trace index 100,000, "
        "p95 (ms)", _get(r, "back", "at", "100000", "reason") or "quick: only index 10,000 is measured")
    t["bytes_per_event"] = target(_get(r, "memory", "bytes_per_event", "bytes_per_event"), 16.0, "<=",
                                  "bytes per recorded event (tracemalloc)")
    return t
