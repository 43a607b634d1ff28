"""`vmio-edu bench`: how fast the model runs, measured in one process and one run (issue 6).

On a noisy shared machine absolute numbers move from run to run, so every target is a *ratio* (or a
count) taken in the same run: the chain against the most an engine could do on this machine, recording
against not recording, and so on.

    from vmio_edu.bench import run_bench, format_text
    r = run_bench(quick=True)          # a dict of plain data (what `vmio-edu bench --format json` prints)
    print(format_text(r))

What is measured:
* The limits. Unicorn: a bare engine running `rep outsw` of 64*256 words to port 0x1f0 with an OUT hook
  (UC_HOOK_INSN) that does nothing: callbacks/s, the most an emulated engine in Python can do. For context
  also a plain `out` loop, and the rate when every OUT must *leave* Unicorn (the hook calls uc_emu_stop and
  Python calls uc_emu_start again), as a VM exit that returns to the hypervisor has to. Real KVM: the same
  guest with a bare KVM_RUN loop through ctypes that does nothing on each KVM_EXIT_IO (skipped, with the
  reason, without a usable /dev/kvm).
* The chain: `Machine` with the default guest writing and then reading the sectors, on each engine, with
  nothing attached, recording the trace, and a debugger attached whose breakpoint never fires.
  The three cases run `rounds` times in turn (3 in full mode), with a sample of the engine's limit before
  each round and after the last; every measure keeps its fastest sample (as timeit does: the least
  disturbed by other processes), and all samples are kept in `seconds_samples`. CPU time (every
  thread of the process) is measured too: the recording targets compare CPU times, the cost itself,
  which other processes on a shared machine move far less than the wall clock.
* Debugger latency: `step()` p50/p95 and `back()` p50/p95 at trace index 10,000 and 100,000 (and at
  100,000 on the real engine, `kvm_back`, full mode only).
* Memory: bytes per recorded event (tracemalloc), and the peak RSS of a process holding a recording of at
  least 1,000,000 events next to one that ran the same guest unrecorded.

Speed is never asserted by the tests: these are benchmarks. The targets carry `met` for the reader.
"""
from __future__ import annotations

import datetime
import os
import time
from typing import Any

from .chain import _add_ratios, _best, chain
from .common import _pct  # noqa: F401 - the tests check the percentile helper
from .common import (ENGINES, FULL, LIMIT_PORT, OPS, QUICK, SECTOR_WORDS, Progress, kvm_status,
                     machine_info, skipped)
from .latency import back_latency, step_latency
from .limits import kvm_limit, unicorn_limit
from .memory import bytes_per_event, rss_recording
from .report import format_markdown, format_text, plot, rows, target_rows
from .targets import compute_targets, target

__all__ = ["run_bench", "compute_targets", "target", "format_text", "format_markdown", "plot", "rows",
           "target_rows", "chain", "unicorn_limit", "kvm_limit", "step_latency", "back_latency",
           "bytes_per_event", "rss_recording", "machine_info", "kvm_status", "QUICK", "FULL", "_pct"]


def run_bench(quick: bool = False, engines: tuple[str, ...] = ENGINES,
              progress: Progress | None = None) -> dict:
    """Measure everything (see the module docstring) and return it as plain data. `quick` uses 4 sectors,
    fewer steps and back() calls, and skips the 1,000,000-event RSS run (about 10 s here, full: 2-3 min)."""
    engines = tuple(engines)
    bad = [e for e in engines if e not in ENGINES]
    if bad or not engines:
        from ..errors import VmioError
        raise VmioError(f"engines must be among {', '.join(ENGINES)}, not {engines!r}")
    cfg = QUICK if quick else FULL
    say = progress or (lambda _msg: None)
    t_start = time.perf_counter()
    kvm_reason = kvm_status() if "kvm" in engines else None
    r: dict[str, Any] = {
        "schema": 1, "quick": quick, "engines": list(engines),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "workload": {"sectors": cfg["sectors"], "ops": list(OPS), "rounds": cfg["rounds"],
                     "limit_guest": f"{cfg['limit_reps']} x rep outsw of {64 * SECTOR_WORDS} words to port "
                                    f"{LIMIT_PORT:#x}"},
        "limits": {}, "chain": {},
    }

    # -- limits and chain, interleaved: limit samples before each round of the three cases and after
    unicorn_samples: dict[str, list[dict]] = {"hook_rep_outsw": [], "hook_out_loop": [], "exit_each_out": []}
    kvm_samples: list[dict] = []
    reps = cfg["limit_reps"]

    def sample_unicorn() -> None:
        say("limit: unicorn OUT hook")
        unicorn_samples["hook_rep_outsw"].append(unicorn_limit("rep_outsw", reps))
        unicorn_samples["hook_out_loop"].append(unicorn_limit("out_loop", reps))
        unicorn_samples["exit_each_out"].append(unicorn_limit("rep_outsw", reps, exit_each=True))

    def sample_kvm() -> None:
        say("limit: bare KVM_RUN loop")
        kvm_samples.append(kvm_limit(reps))

    if "kvm" in engines and not kvm_reason:
        try:  # /dev/kvm opens; can it run a guest? (a broken nested setup fails here, not mid-chain)
            kvm_limit(1)
        except (OSError, RuntimeError) as e:
            kvm_reason = f"/dev/kvm opens but cannot run the limit guest: {e}"
    for engine in engines:
        if engine == "kvm" and kvm_reason:
            r["limits"]["kvm"] = r["chain"]["kvm"] = skipped(kvm_reason)
            continue
        c = chain(engine, cfg["sectors"], cfg["rounds"], say,
                  sample_unicorn if engine == "unicorn" else sample_kvm)
        if engine == "unicorn":
            lu = r["limits"]["unicorn"] = {"status": "measured",
                                           **{k: _best(v) for k, v in unicorn_samples.items()}}
            _add_ratios(c, {"unicorn_hook": lu["hook_rep_outsw"]["per_s"],
                            "unicorn_exit_each_out": lu["exit_each_out"]["per_s"]})
        else:
            lk = r["limits"]["kvm"] = {"status": "measured", "bare_run": _best(kvm_samples)}
            _add_ratios(c, {"kvm_bare_run": lk["bare_run"]["per_s"]})
        r["chain"][engine] = c

    # -- debugger latency and memory (on the emulated engine unless only kvm was asked for)
    tool_engine = "unicorn" if "unicorn" in engines or kvm_reason else "kvm"
    say("step latency")
    r["step"] = step_latency(cfg["steps"], tool_engine)
    r["back"] = back_latency(cfg["back"], cfg["back_sectors"], tool_engine, say)
    if "100000" not in r["back"]["at"]:
        r["back"]["at"]["100000"] = skipped("quick")
    # back() on the real engine, deep in the trace (a few calls: without checkpoints each one replays)
    if "kvm" not in engines or kvm_reason:
        r["kvm_back"] = skipped(kvm_reason or "kvm not asked for")
    elif quick:
        r["kvm_back"] = skipped("quick")
    else:
        say("back() at 100000 on the real engine")
        r["kvm_back"] = back_latency(((100_000, cfg["kvm_back_calls"]),), cfg["back_sectors"], "kvm", say)
    say("bytes per event (tracemalloc)")
    r["memory"] = {"bytes_per_event": bytes_per_event(cfg["tracemalloc_sectors"], tool_engine)}
    if cfg["rss_events"]:
        say("peak RSS of a 1,000,000-event recording (subprocesses)")
        r["memory"]["rss"] = rss_recording(cfg["rss_events"], 64, tool_engine)
    else:
        r["memory"]["rss"] = skipped("quick")

    r["targets"] = compute_targets(r)
    r["seconds_total"] = time.perf_counter() - t_start
    r["machine"]["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return r
