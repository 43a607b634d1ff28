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
  The three cases run `rounds` times in turn (2 in full mode), with a sample of the engine's limit before
  each round and after the last; every measure keeps its fastest sample (as timeit does: the least
  disturbed by other processes), and all samples are kept in `seconds_samples`.
* Debugger latency: `step()` p50/p95 and `back()` p50/p95 at trace index 10,000 and 100,000.
* Memory: bytes per recorded event (tracemalloc), and the peak RSS of a process holding a recording of at
  least 1,000,000 events next to one that ran the same guest unrecorded.

Speed is never asserted by the tests: these are benchmarks. The targets carry `met` for the reader.
"""
from __future__ import annotations

import ctypes
import datetime
import json
import mmap
import os
import platform
import subprocess
import sys
import time
from typing import Any, Callable

SECTOR_WORDS = 256
FULL = {"sectors": 64, "rounds": 2, "limit_reps": 4, "steps": 2000, "back": ((10_000, 20), (100_000, 10)),
        "back_sectors": 64, "tracemalloc_sectors": 8, "rss_events": 1_000_000}
QUICK = {"sectors": 4, "rounds": 1, "limit_reps": 2, "steps": 200, "back": ((10_000, 3),),
         "back_sectors": 4, "tracemalloc_sectors": 1, "rss_events": None}
CASES = ("nothing", "recording", "debugger")
OPS = ("write", "read")
ENGINES = ("unicorn", "kvm")
LIMIT_PORT = 0x1F0
LIMIT_BUF = 0x10000  # guest-physical address of the words the limit guest sends

# The limit guests (x86-64, flat long mode, loaded at 0x1000). `reps` times 64 sectors of words.
_LIMIT_SRC = {
    "rep_outsw": """
        mov r8, {reps}
    outer:
        mov rsi, {buf}
        mov rcx, {words}
        mov dx, {port}
        rep outsw
        dec r8
        jnz outer
        hlt
    """,
    "out_loop": """
        mov r8, {reps}
    outer:
        mov rcx, {words}
        mov dx, {port}
    inner:
        out dx, ax
        dec rcx
        jnz inner
        dec r8
        jnz outer
        hlt
    """,
}

Progress = Callable[[str], None]


# ==========================================================================================================
# Small helpers
# ==========================================================================================================
def _pct(xs: list[float], p: float) -> float:
    """The p-th percentile (0..100) of xs, linearly interpolated between the closest ranks."""
    s = sorted(xs)
    if not s:
        raise ValueError("no samples")
    k = (len(s) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def _latency(samples_s: list[float]) -> dict:
    ms = [x * 1e3 for x in samples_s]
    return {"n": len(ms), "p50_ms": _pct(ms, 50), "p95_ms": _pct(ms, 95), "max_ms": max(ms),
            "mean_ms": sum(ms) / len(ms)}


def _rate(count: int, seconds: float) -> dict:
    return {"count": count, "seconds": seconds, "per_s": count / seconds}


def skipped(reason: str) -> dict:
    """A measure that was not taken, and why."""
    return {"status": "skipped", "reason": reason}


def machine_info() -> dict:
    """The machine and software the figures come from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from importlib.metadata import version
        uc_version = version("unicorn")
    except Exception:  # noqa: BLE001 - reported, not needed
        uc_version = "unavailable"
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return {"cpu": cpu, "nproc": usable, "python": platform.python_version(), "unicorn": uc_version,
            "kernel": platform.release(),
            "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "commit": _git_commit()}


def _git_commit() -> str | None:
    """The checkout's commit, with "+dirty" when the tree has uncommitted changes; None outside git."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0 or not head.stdout.strip():
        return None
    return head.stdout.strip() + ("+dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def kvm_status() -> str | None:
    """None if /dev/kvm can be opened and speaks API 12, else the reason it cannot be used."""
    from .errors import EngineUnavailable
    try:
        from .kvm.device import open_real_kvm
        open_real_kvm(None).close()
    except EngineUnavailable as e:
        return str(e)
    except Exception as e:  # noqa: BLE001 - any other failure is also a reason to skip
        return f"{type(e).__name__}: {e}"
    return None


# ==========================================================================================================
# The limits
# ==========================================================================================================
def limit_code(kind: str, reps: int) -> bytes:
    """The limit guest `kind` ("rep_outsw" or "out_loop"): `reps` x 64*256 word OUTs, then HLT."""
    from .guest import assemble
    src = _LIMIT_SRC[kind].format(reps=reps, buf=LIMIT_BUF, words=64 * SECTOR_WORDS, port=LIMIT_PORT)
    return assemble(src, 64, 0x1000)


def unicorn_limit(kind: str = "rep_outsw", reps: int = 8, exit_each: bool = False) -> dict:
    """Run a limit guest on a bare Unicorn with a do-nothing OUT hook (raw ctypes callback, the way the
    CPU model installs its hooks). exit_each: the hook also calls uc_emu_stop and Python restarts the
    engine at the next instruction, as a VM exit to the hypervisor has to."""
    from unicorn import UC_HOOK_INSN, UC_MODE_64, UC_PROT_ALL
    from unicorn import x86_const as X
    from unicorn.unicorn_py3.arch.intel import HOOK_INSN_OUT_CFUNC

    from .cpu.ucapi import new_uc, uc_hook_h, uclib

    code = limit_code(kind, reps)
    uc = new_uc(UC_MODE_64)  # Unicorn's 64-bit mode starts in flat long mode: no tables needed
    uc.mem_map(0, 2 << 20, UC_PROT_ALL)
    uc.mem_write(0x1000, code)
    uc.reg_write(X.UC_X86_REG_RSP, 0x8000)
    h = uc._uch
    seen = [0]
    stop = uclib.uc_emu_stop
    if exit_each:
        def on_out(handle, port, size, value, _ud):
            seen[0] += 1
            stop(handle)
    else:
        def on_out(handle, port, size, value, _ud):
            seen[0] += 1
    cb = HOOK_INSN_OUT_CFUNC(on_out)
    hh = uc_hook_h()
    err = uclib.uc_hook_add(h, ctypes.byref(hh), UC_HOOK_INSN, ctypes.cast(cb, ctypes.c_void_p), None,
                            ctypes.c_uint64(1), ctypes.c_uint64(0), ctypes.c_int(X.UC_X86_INS_OUT))
    if err:
        raise RuntimeError(f"uc_hook_add(UC_HOOK_INSN, OUT) failed: error {err}")
    hlt = 0x1000 + len(code) - 1
    rip = ctypes.c_uint64()
    pc, starts = 0x1000, 0
    t0 = time.perf_counter()
    while pc != hlt:
        starts += 1
        err = uclib.uc_emu_start(h, pc, hlt, 0, 0)
        if err:
            raise RuntimeError(f"uc_emu_start failed: error {err}")
        uclib.uc_reg_read(h, X.UC_X86_REG_RIP, ctypes.byref(rip))
        pc = rip.value
    dt = time.perf_counter() - t0
    want = reps * 64 * SECTOR_WORDS
    if seen[0] != want:
        raise RuntimeError(f"the {kind} limit guest made {seen[0]} OUTs, not {want}")
    out = _rate(seen[0], dt)
    out["emu_starts"] = starts
    return out


def kvm_limit(reps: int = 8) -> dict:
    """The rep-outsw limit guest on real /dev/kvm with the barest userspace loop: ioctl(KVM_RUN) through
    ctypes, read exit_reason, go again on KVM_EXIT_IO, stop at KVM_EXIT_HLT (no in-kernel irqchip, so HLT
    exits). No scheduler, no watchdog, no model: the most the real engine can do from Python."""
    from .guest import boot_state
    from .kvm import libc
    from .kvm.device import open_real_kvm
    from .linux.include.uapi.linux import kvm as K

    code = limit_code("rep_outsw", reps)
    ram_size = 2 << 20
    kvm = open_real_kvm(None)
    ram = mmap.mmap(-1, ram_size)
    try:
        vm = kvm.ioctl(K.KVM_CREATE_VM, 0)
        anchor = ctypes.c_char.from_buffer(ram)
        addr = ctypes.addressof(anchor)
        del anchor
        vm.ioctl(K.KVM_SET_USER_MEMORY_REGION, K.kvm_userspace_memory_region(
            slot=0, flags=0, guest_phys_addr=0, memory_size=ram_size, userspace_addr=addr))
        vcpu = vm.ioctl(K.KVM_CREATE_VCPU, 0)
        ram[0x1000:0x1000 + len(code)] = code
        boot = boot_state(ram, 64, 0x1000)
        vcpu.ioctl(K.KVM_SET_SREGS, boot.sregs)
        vcpu.ioctl(K.KVM_SET_REGS, boot.regs)
        run = vcpu.kvm_run
        fd, ioctl, KVM_RUN, IO = vcpu.fd, libc._ioctl, K.KVM_RUN, K.KVM_EXIT_IO
        n = 0
        t0 = time.perf_counter()
        while True:
            if ioctl(fd, KVM_RUN, None) < 0:
                raise OSError(ctypes.get_errno(), "KVM_RUN failed")
            if run.exit_reason != IO:
                break
            n += 1
        dt = time.perf_counter() - t0
        reason = K.EXIT_NAMES.get(run.exit_reason, str(run.exit_reason))
        run = None
        if reason != "HLT" or n != reps * 64 * SECTOR_WORDS:
            raise RuntimeError(f"the bare KVM_RUN loop ended with {reason} after {n} IO exits")
        return _rate(n, dt)
    finally:
        kvm.close()
        try:
            ram.close()
        except BufferError:
            pass


# ==========================================================================================================
# The chain
# ==========================================================================================================
def _one_chain_run(engine: str, op: str, sectors: int, case: str) -> dict:
    from .machine import Machine

    with Machine(engine=engine, op=op, lba=0, sectors=sectors, record=(case == "recording")) as m:
        if case == "debugger":
            dbg = m.debugger()
            never = lambda stop: False  # noqa: E731 - evaluated at every hit, never true
            dbg.break_at("ide_sector_write" if op == "write" else "ide_sector_read", condition=never)
            t0 = time.perf_counter()
            stop = dbg.cont()
            dt = time.perf_counter() - t0
            if stop.reason != "halted":
                raise RuntimeError(f"the debugger run stopped with {stop.reason!r}, not at the halt")
        else:
            t0 = time.perf_counter()
            m.run()
            dt = time.perf_counter() - t0
        err = m.guest_result().get("error")
        if err:
            raise RuntimeError(f"the guest's {op} failed (error register {err:#x})")
        return {"exits": len(m.exits), "seconds": dt,
                "events": len(m.trace.events) if m.trace is not None else None}


def _chain_case(engine: str, sectors: int, case: str) -> dict:
    """One case on one engine: a write then a read of `sectors` sectors (only the run is timed, not
    building the machine)."""
    per_op = {op: _one_chain_run(engine, op, sectors, case) for op in OPS}
    exits = sum(r["exits"] for r in per_op.values())
    seconds = sum(r["seconds"] for r in per_op.values())
    out = {"exits": exits, "seconds": seconds, "per_op": per_op}
    if case == "recording":
        out["events"] = sum(r["events"] for r in per_op.values())
    return out


def _best(samples: list[dict]) -> dict:
    """The fastest of several samples of the same measure (the one least disturbed by other processes, as
    timeit takes the minimum), with every sample's seconds kept in `seconds_samples`."""
    best = dict(min(samples, key=lambda x: x["seconds"]))
    best["seconds_samples"] = [x["seconds"] for x in samples]
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
    base = cases["nothing"]["seconds"]
    for c in cases.values():
        c["time_vs_nothing"] = c["seconds"] / base
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


# ==========================================================================================================
# Debugger latency
# ==========================================================================================================
def step_latency(n: int, engine: str = "unicorn") -> dict:
    """`n` dbg.step() calls from the start of the default machine (write and read of one sector)."""
    from .machine import Machine

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
    from .machine import Machine

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


# ==========================================================================================================
# Memory
# ==========================================================================================================
def _deep_size(v: Any, seen: set) -> int:
    """sys.getsizeof of a recorded value, tuples followed; shared objects (small ints, interned names,
    None) are not counted, each other object once."""
    if v is None or isinstance(v, bool) or (isinstance(v, int) and -5 <= v <= 256) or id(v) in seen:
        return 0
    if isinstance(v, str) and sys.intern(v) is v:
        return 0
    seen.add(id(v))
    n = sys.getsizeof(v)
    if isinstance(v, tuple):
        n += sum(_deep_size(x, seen) for x in v)
    return n


def bytes_per_event(sectors: int, engine: str = "unicorn") -> dict:
    """tracemalloc: the bytes freed when a recorded trace's event list is emptied, per event (the list's
    slots, the event tuples and everything only they hold). Also a sys.getsizeof estimate."""
    import tracemalloc

    from .machine import Machine

    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        with Machine(engine=engine, op="write", sectors=sectors, record=True) as m:
            m.run()
            events = m.trace.events
            n = len(events)
            seen: set = set()
            estimate = sys.getsizeof(events) + sum(_deep_size(e, seen) for e in events)
            del seen
            before = tracemalloc.get_traced_memory()[0]
            events.clear()
            after = tracemalloc.get_traced_memory()[0]
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return {"engine": engine, "machine": f"op=write, {sectors} sectors, record=True", "events": n,
            "bytes_per_event": (before - after) / n, "getsizeof_bytes_per_event": estimate / n}


_RSS_CHILD = r"""
import json, resource, sys
from vmio_edu.machine import Machine
record, engine = sys.argv[1] == "1", sys.argv[5]
target, sectors, runs = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
keep, events, exits = [], 0, 0
while True:
    m = Machine(engine=engine, op="write", sectors=sectors, record=record)
    m.run()
    keep.append(m)  # the recording stays alive to the end
    exits += len(m.exits)
    events += len(m.trace.events) if record else 0
    if (record and events >= target) or (not record and len(keep) >= runs):
        break
# VmHWM: this process's own peak. ru_maxrss is not: Linux carries it over exec from the parent, which
# may be bigger than the child ever gets.
hwm = None
try:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
except OSError:
    pass
print(json.dumps({"peak_kb": hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "source": "VmHWM" if hwm is not None else "ru_maxrss", "events": events, "exits": exits,
                  "runs": len(keep)}))
"""


def _rss_child(record: bool, target: int, sectors: int, runs: int, engine: str) -> dict:
    p = subprocess.run([sys.executable, "-c", _RSS_CHILD, "1" if record else "0", str(target), str(sectors),
                        str(runs), engine], capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise RuntimeError(f"the RSS subprocess failed: {p.stderr.strip()[-500:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def rss_recording(min_events: int, sectors: int = 64, engine: str = "unicorn") -> dict:
    """Peak RSS (VmHWM, else ru_maxrss) of a fresh process that records >= `min_events` events (64-sector
    writes, kept alive), and of one that runs the same writes unrecorded (the baseline)."""
    rec = _rss_child(True, min_events, sectors, 0, engine)
    base = _rss_child(False, 0, sectors, rec["runs"], engine)
    diff = (rec["peak_kb"] - base["peak_kb"]) * 1024
    return {"engine": engine, "machine": f"{rec['runs']} x op=write, {sectors} sectors",
            "events": rec["events"],
            "source": rec["source"], "recorded_peak_mb": rec["peak_kb"] / 1024,
            "baseline_peak_mb": base["peak_kb"] / 1024, "difference_mb": diff / 2**20,
            "rss_bytes_per_event": diff / rec["events"]}


# ==========================================================================================================
# Targets
# ==========================================================================================================
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
    """The issue's targets, from the measures in `r`."""
    ch, lim = r["chain"], r["limits"]
    t: dict[str, dict] = {}
    if "unicorn" in ch:
        t["unicorn_chain_vs_hook"] = target(
            _get(ch, "unicorn", "cases", "nothing", "vs_limit", "unicorn_hook"), 0.1, ">=",
            "emulated engine, nothing attached: chain exits/s / raw Unicorn OUT-hook callbacks/s "
            "(rep outsw, hook returns at once)", _get(ch, "unicorn", "reason"))
        t["unicorn_recording_time"] = target(
            _get(ch, "unicorn", "cases", "recording", "time_vs_nothing"), 2.0, "<=",
            "emulated engine: recording time / nothing-attached time", _get(ch, "unicorn", "reason"))
    if "kvm" in ch:
        why = _get(ch, "kvm", "reason") or _get(lim, "kvm", "reason")
        t["kvm_chain_vs_bare"] = target(
            _get(ch, "kvm", "cases", "nothing", "vs_limit", "kvm_bare_run"), 0.5, ">=",
            "real engine, nothing attached: chain exits/s / bare KVM_RUN loop exits/s", why)
        t["kvm_recording_time"] = target(
            _get(ch, "kvm", "cases", "recording", "time_vs_nothing"), 2.0, "<=",
            "real engine: recording time / nothing-attached time", why)
    t["step_p95_ms"] = target(_get(r, "step", "p95_ms"), 5.0, "<=", "dbg.step() latency, p95 (ms)")
    t["back_p95_ms_at_100000"] = target(
        _get(r, "back", "at", "100000", "p95_ms"), 50.0, "<=", "dbg.back() latency at trace index 100,000, "
        "p95 (ms)", _get(r, "back", "at", "100000", "reason") or "quick: only index 10,000 is measured")
    t["bytes_per_event"] = target(_get(r, "memory", "bytes_per_event", "bytes_per_event"), 150.0, "<=",
                                  "bytes per recorded stage event (tracemalloc)")
    return t


# ==========================================================================================================
# The whole run
# ==========================================================================================================
def run_bench(quick: bool = False, engines: tuple[str, ...] = ENGINES,
              progress: Progress | None = None) -> dict:
    """Measure everything (see the module docstring) and return it as plain data. `quick` uses 4 sectors,
    fewer steps and back() calls, and skips the 1,000,000-event RSS run (about 10 s here, full: 2-3 min)."""
    engines = tuple(engines)
    bad = [e for e in engines if e not in ENGINES]
    if bad or not engines:
        from .errors import VmioError
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


# ==========================================================================================================
# Rendering
# ==========================================================================================================
def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def rows(r: dict) -> list[tuple[str, str, str]]:
    """(measure, value, notes) rows shared by the text and markdown renderers."""
    out: list[tuple[str, str, str]] = []
    lim = r["limits"]
    lu = lim.get("unicorn")
    if lu:
        out.append(("Unicorn OUT hook, rep outsw (limit)", f"{_fmt(lu['hook_rep_outsw']['per_s'])} /s",
                    f"{_fmt(lu['hook_rep_outsw']['count'])} callbacks; the target's limit"))
        out.append(("Unicorn OUT hook, out loop", f"{_fmt(lu['hook_out_loop']['per_s'])} /s", "context"))
        out.append(("Unicorn, every OUT leaves uc_emu_start", f"{_fmt(lu['exit_each_out']['per_s'])} /s",
                    "context: an exit must return to the hypervisor"))
    lk = lim.get("kvm")
    if lk:
        if lk["status"] == "measured":
            out.append(("bare KVM_RUN loop (limit)", f"{_fmt(lk['bare_run']['per_s'])} /s",
                        f"{_fmt(lk['bare_run']['count'])} KVM_EXIT_IO"))
        else:
            out.append(("bare KVM_RUN loop (limit)", "skipped", lk["reason"]))
    for engine, c in r["chain"].items():
        if c["status"] != "measured":
            out.append((f"chain, {engine}", "skipped", c["reason"]))
            continue
        for case, x in c["cases"].items():
            ratios = ", ".join(f"{_fmt(v)} of {k}" for k, v in x["vs_limit"].items())
            extra = ""
            if case == "recording":
                extra = (f"; {_fmt(x['events'])} events ({_fmt(x['events_per_exit'])} per exit), "
                         f"+{_fmt(x['extra_ns_per_event'])} ns per event")
            out.append((f"chain, {engine}, {case}", f"{_fmt(x['exits_per_s'])} exits/s",
                        f"{_fmt(x['exits'])} exits in {_fmt(x['seconds'])} s "
                        f"({_fmt(x['us_per_exit'])} us each); "
                        f"x{_fmt(x['time_vs_nothing'])} the time of nothing attached; {ratios}{extra}"))
    s = r["step"]
    out.append(("dbg.step()", f"p50 {_fmt(s['p50_ms'])} ms, p95 {_fmt(s['p95_ms'])} ms",
                f"{s['n']} steps, max {_fmt(s['max_ms'])} ms, {s['engine']}"))
    for idx, b in r["back"]["at"].items():
        if b.get("status") == "skipped":
            out.append((f"dbg.back() at {int(idx):,}", "skipped", b["reason"]))
        else:
            out.append((f"dbg.back() at {int(idx):,}",
                        f"p50 {_fmt(b['p50_ms'])} ms, p95 {_fmt(b['p95_ms'])} ms",
                        f"{b['n']} calls, max {_fmt(b['max_ms'])} ms; goto({int(idx):,}) took "
                        f"{_fmt(b['goto_seconds'])} s"))
    be = r["memory"]["bytes_per_event"]
    out.append(("bytes per recorded event", f"{_fmt(be['bytes_per_event'])} B",
                f"tracemalloc over {_fmt(be['events'])} events; getsizeof estimate "
                f"{_fmt(be['getsizeof_bytes_per_event'])} B"))
    rss = r["memory"]["rss"]
    if rss.get("status") == "skipped":
        out.append(("peak RSS, 1,000,000-event recording", "skipped", rss["reason"]))
    else:
        out.append(("peak RSS, 1,000,000-event recording", f"{_fmt(rss['recorded_peak_mb'])} MB",
                    f"{_fmt(rss['events'])} events; unrecorded baseline {_fmt(rss['baseline_peak_mb'])} MB; "
                    f"+{_fmt(rss['difference_mb'])} MB = {_fmt(rss['rss_bytes_per_event'])} B/event"))
    return out


def target_rows(r: dict) -> list[tuple[str, str, str, str]]:
    """(target, goal, value, met) rows."""
    out = []
    for name, t in r["targets"].items():
        met = "skipped: " + t["skipped"] if t["met"] is None else ("met" if t["met"] else "MISSED")
        out.append((f"{name}: {t['what']}", f"{t['op']} {_fmt(t['target'])}", _fmt(t["value"]), met))
    return out


def _header(r: dict) -> str:
    m = r["machine"]
    load = ""
    if m.get("loadavg") and m.get("loadavg_end"):
        load = f"; load average {m['loadavg'][0]:.1f} at the start, {m['loadavg_end'][0]:.1f} at the end"
    return (f"vmio-edu bench{' --quick' if r['quick'] else ''}, {r['date']}, commit {m['commit'] or '?'}: "
            f"{m['cpu']}, {m['nproc']} CPUs, Linux {m['kernel']}, Python {m['python']}, "
            f"unicorn {m['unicorn']}; workload: write then read {r['workload']['sectors']} sectors, "
            + (f"best of {r['workload']['rounds']} interleaved rounds; " if r['workload']['rounds'] > 1
               else "one round; ") +
            f"{r['seconds_total']:.0f} s in all{load}")


def format_text(r: dict) -> str:
    """A plain-text report (what `vmio-edu bench` prints)."""
    out = [_header(r), ""]
    w = max(len(a) for a, _, _ in rows(r))
    for a, b, c in rows(r):
        out.append(f"{a:<{w}}  {b:<28} {c}")
    out += ["", "Targets (each a ratio or a count from this run):"]
    for a, b, c, d in target_rows(r):
        out.append(f"  [{d}] {a}: {c} (target {b})")
    return "\n".join(out)


def format_markdown(r: dict) -> str:
    """The same report as markdown tables, to paste into docs/performance.md."""
    out = [f"_{_header(r)}_", "", "| Measure | Value | Notes |", "|---|---|---|"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in rows(r)]
    out += ["", "| Target | Goal | Value | Result |", "|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {'**MISSED**' if d == 'MISSED' else d} |" for a, b, c, d in target_rows(r)]
    return "\n".join(out)


def plot(r: dict, path: str) -> None:
    """A bar chart (log scale) of exits/s: each engine's limit(s) and its three chain cases."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        from .errors import VmioError
        raise VmioError(f"--plot needs matplotlib (pip install matplotlib): {e}") from None
    labels, values, colors = [], [], []
    goals: list[tuple[int, int, float, str]] = []  # (first bar, last bar, exits/s, label) of each target
    lu, lk = r["limits"].get("unicorn"), r["limits"].get("kvm")
    if lu:
        labels += ["Unicorn\nOUT hook", "Unicorn\nexit per OUT"]
        values += [lu["hook_rep_outsw"]["per_s"], lu["exit_each_out"]["per_s"]]
        colors += ["#888888", "#bbbbbb"]
    for engine, c in r["chain"].items():
        if engine == "kvm" and lk and lk["status"] == "measured":
            labels.append("bare\nKVM_RUN")
            values.append(lk["bare_run"]["per_s"])
            colors.append("#888888")
        if c["status"] != "measured":
            continue
        first = len(labels)
        for case, color in zip(CASES, ("#1f77b4", "#ff7f0e", "#2ca02c")):
            labels.append(f"{engine}\n{case}")
            values.append(c["cases"][case]["exits_per_s"])
            colors.append(color)
        if engine == "unicorn" and lu:
            goals.append((first, first, lu["hook_rep_outsw"]["per_s"] / 10, "target: 1/10 of the hook"))
        elif engine == "kvm" and lk and lk["status"] == "measured":
            goals.append((first, first, lk["bare_run"]["per_s"] / 2, "target: 1/2 of bare KVM_RUN"))
    if not values:
        from .errors import VmioError
        raise VmioError("nothing to plot: no limit or chain was measured in this run")
    fig, ax = plt.subplots(figsize=(max(6.0, 1.05 * len(labels)), 4.2))
    bars = ax.bar(range(len(labels)), values, color=colors)
    ax.set_yscale("log")
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel("exits (or OUT callbacks) per second, log scale")
    ax.set_title(f"vmio-edu bench, {r['date']} ({r['machine']['nproc']}-CPU {r['machine']['cpu'][:40]})",
                 fontsize=9)
    for b, v in zip(bars, values):
        ax.text(b.get_x() + b.get_width() / 2, v * 1.1, f"{v:,.0f}", ha="center", fontsize=7)
    for x0, x1, goal, text in goals:
        ax.hlines(goal, x0 - 0.45, x1 + 0.45, colors="#d62728", linestyles="dashed")
        ax.text(x0 - 0.45, goal * 1.15, text, color="#d62728", fontsize=7)
    ax.grid(axis="y", which="major", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
