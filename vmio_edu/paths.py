"""`vmio-edu paths`: the same disk workload on IDE PIO and on virtio-blk (ioeventfd off and on), side by side.

Why a learner wants it: after stepping through IDE PIO the first question is why one sector costs 256 exits
to QEMU, and what real VMs do instead. Each path is run on a fresh machine with the same guest request
(op, lba, sectors, data seed), and four things are counted while it runs:

* the stages entered: trace point entries, per layer and per model thread (vcpu0, main, worker-N);
* the exits to userspace: every return of KVM_RUN to QEMU (`Machine.exits`), by reason and port;
* the exits handled in the kernel: VM exits that KVM finished without returning to QEMU (the in-kernel PIC's
  ports, a HLT with the in-kernel irqchip, an ioeventfd notify). The emulated engine sees them as Linux's
  `kvm_exit` trace event not followed by `kvm_userspace_exit` (Linux 3.7 arch/x86/kvm/trace.h); on the real
  engine they are inside one opaque KVM_RUN, so they come from the machine's own count where the build has
  one (`Machine.kernel_exits`) and are `null` otherwise;
* the time: self time per layer (`vmio_edu.trace.timing.LayerTimer`, what `vmio-edu compare` uses) and the
  wall time of the run.

The result is plain data with a stable schema (`SCHEMA`), rendered as text by `format_text`.
"""
from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Iterable

from .cpu import vmcs as V
from .errors import VmioError
from .trace.timing import LayerTimer
from .trace.tracepoint import LAYERS, ThreadContext, TracePoint

SCHEMA = "vmio-edu/paths/1"


@dataclass(frozen=True)
class Path:
    """One way the request reaches the disk: a `Machine` configuration and the column's title."""

    id: str
    title: str
    machine_kw: tuple  # (("disk", "virtio"), ("ioeventfd", True))

    def kwargs(self) -> dict:
        return dict(self.machine_kw)


PATHS: tuple[Path, ...] = (
    Path("ide", "IDE PIO", (("disk", "ide"),)),
    Path("virtio", "virtio ioeventfd=off", (("disk", "virtio"), ("ioeventfd", False))),
    Path("virtio-ioeventfd", "virtio ioeventfd=on", (("disk", "virtio"), ("ioeventfd", True))),
)
PATH_IDS = tuple(p.id for p in PATHS)
ENGINES = ("unicorn", "kvm")


def get_path(path_id: str) -> Path:
    for p in PATHS:
        if p.id == path_id:
            return p
    raise VmioError(f"unknown path {path_id!r}: choose from {', '.join(PATH_IDS)}")


# ==========================================================================================================
# What is counted while a path runs
# ==========================================================================================================
def exit_key(reason: str, direction: str | None = None, port: int | None = None) -> str:
    """How one exit is named in the tables: 'IO out port=0x1f0', 'MMIO in', 'HLT' (as `vmio-edu trace`)."""
    if port is not None:
        return f"{reason} {direction} port={port:#x}"
    return f"{reason} {direction}" if direction else reason


def _vmx_exit_key(reason: int, qualification: int) -> str:
    """A VM exit, named like a userspace exit: IO exits by direction and port (EXIT_QUALIFICATION bits 3
    and 31:16, SDM table 27-5), the others by their VMX basic exit reason."""
    basic = reason & 0xFFFF
    if basic == V.EXIT_REASON_IO_INSTRUCTION:
        return exit_key("IO", "in" if qualification & 8 else "out", qualification >> 16 & 0xFFFF)
    name = V.EXIT_REASON_NAMES.get(basic, str(basic))
    return name[len("EXIT_REASON_"):] if name.startswith("EXIT_REASON_") else name


class KernelExitCounter:
    """A point-event listener counting the VM exits KVM handled without returning to QEMU (emulated engine).

    Linux emits `kvm_exit` at every VM exit (vmx_vcpu_run) and the model emits `kvm_userspace_exit` when
    KVM_RUN returns. A VM exit still unclaimed when the next one comes (or when the run ends) was finished
    in the kernel. A userspace exit without a new VM exit (the next batch of a `rep insw` the emulator
    continued) claims nothing. Each is named with the device on the KVM PIO bus that took it
    (`kvm_io_bus_write` → picdev_write, ioeventfd_write, ...), else with its VMX exit handler."""

    _BUS = ("kvm_io_bus_write", "kvm_io_bus_read")

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.seen = False  # did any kvm_exit arrive (the emulated engine's kernel model ran)
        self._pending: str | None = None
        self._handler: str | None = None
        self._device: str | None = None
        self._bus_depth: int | None = None

    # listener (point events)
    def __call__(self, name: str, layer: str, fields: dict, ctx: Any) -> None:
        if name == "kvm_exit":
            self.seen = True
            self._flush()
            self._pending = _vmx_exit_key(fields.get("reason", 0), fields.get("qualification", 0) or 0)
        elif name == "kvm_vmx_exit_handlers" and self._pending is not None:
            self._handler = fields.get("handler")
        elif name == "kvm_userspace_exit":
            self._pending = self._handler = self._device = None

    # hooks (trace point entries): which device on the kernel's I/O bus handled the access
    def enter(self, tp: TracePoint, ctx: ThreadContext) -> None:
        if self._pending is None:
            return
        if tp.name in self._BUS:
            self._bus_depth = len(ctx.stack)
        elif self._bus_depth is not None and len(ctx.stack) == self._bus_depth + 1 and self._device is None:
            self._device = tp.name

    def _flush(self) -> None:
        if self._pending is not None:
            by = self._device or self._handler
            self.counts[f"{self._pending} ({by})" if by else self._pending] += 1
        self._pending = self._handler = self._device = None
        self._bus_depth = None

    def finish(self) -> Counter:
        """The counts, with a VM exit still unclaimed at the end of the run counted (the final HLT)."""
        self._flush()
        return self.counts


class StageCounter:
    """Trace hooks that count stage entries per (layer, thread) and time each layer (`LayerTimer`), and
    tell the kernel-exit counter which device function ran. Light: no trace is kept."""

    def __init__(self, kernel: KernelExitCounter) -> None:
        self.timer = LayerTimer()
        self.counts: Counter = Counter()
        self.functions: dict[str, list[str]] = defaultdict(list)
        self._kernel = kernel

    def attach(self, sched: Any) -> "StageCounter":
        sched.attach(hooks=self, listener=self._kernel)
        sched.switch_listeners.append(self.timer._switch)
        return self

    def enter(self, tp: TracePoint, args: tuple, ctx: ThreadContext) -> None:
        self.counts[(tp.layer, ctx.name)] += 1
        fns = self.functions[tp.layer]
        if tp.name not in fns:
            fns.append(tp.name)
        self._kernel.enter(tp, ctx)
        self.timer.enter(tp, args, ctx)

    def leave(self, tp: TracePoint, result: Any, ctx: ThreadContext) -> None:
        self.timer.leave(tp, result, ctx)

    def event(self, name: str, layer: str, fields: dict, ctx: ThreadContext) -> None:
        self.timer.event(name, layer, fields, ctx)


# ==========================================================================================================
# Running one path
# ==========================================================================================================
def _machine_takes(name: str) -> bool:
    import inspect

    from .machine import Machine
    return name in inspect.signature(Machine.__init__).parameters


def run_path(path: Path | str, engine: str = "unicorn", *, op: str = "write", lba: int = 0, sectors: int = 1,
             seed: int = 0) -> dict:
    """Run the default guest's request on one path and engine; return its counts (one `runs` entry of the
    JSON document). Raises EngineUnavailable when engine="kvm" cannot open /dev/kvm."""
    from .cli import image_check
    from .machine import Machine

    if isinstance(path, str):
        path = get_path(path)
    kw = path.kwargs()
    if kw.get("disk", "ide") != "ide" and not _machine_takes("disk"):
        raise VmioError(f"path {path.id!r} needs the virtio-blk device, which this build of vmio-edu lacks "
                        "(Machine has no disk= parameter)")
    if kw.get("disk") == "ide" and not _machine_takes("disk"):
        kw.pop("disk")
    kernel = KernelExitCounter()
    counter = StageCounter(kernel)
    with Machine(engine=engine, op=op, lba=lba, sectors=sectors, seed=seed, **kw) as m:
        counter.attach(m.sched)
        t0 = time.perf_counter()
        m.run()
        wall = time.perf_counter() - t0
        kernel_counts = _kernel_exits(m, kernel)
        exits = Counter(exit_key(x.reason, x.direction, x.port) for x in m.exits)
        check = image_check(m)
        engine_used = m.engine
    n = sectors or 256
    stages: dict[str, dict[str, int]] = {}
    for (layer, thread), c in sorted(counter.counts.items(),
                                     key=lambda kv: (_layer_rank(kv[0][0]), _thread_rank(kv[0][1]))):
        stages.setdefault(layer, {})[thread] = c
    time_ms = {layer: round(ns / 1e6, 3) for layer, ns in
               sorted(counter.timer.ns.items(), key=lambda kv: _layer_rank(kv[0]))}
    total = sum(exits.values())
    return {
        "engine": engine_used, "path": path.id, "title": path.title,
        "disk": kw.get("disk", "ide"), "ioeventfd": kw.get("ioeventfd"),
        "stages": stages,
        "functions": {layer: counter.functions[layer] for layer in stages},
        "exits": dict(sorted(exits.items())), "exit_total": total,
        "exits_per_sector": round(total / n, 2),
        "kernel_exits": None if kernel_counts is None else dict(sorted(kernel_counts.items())),
        "kernel_exit_total": None if kernel_counts is None else sum(kernel_counts.values()),
        "time_ms": time_ms, "wall_ms": round(wall * 1e3, 3),
        "image_ok": check["ok"], "problems": check["problems"],
    }


def _kernel_exits(m: Any, kernel: KernelExitCounter) -> Counter | None:
    """The exits KVM handled itself: counted from the kernel model's events (emulated engine), or the
    machine's own count where it has one (the real engine's are inside KVM_RUN); None if unknown."""
    if kernel.seen:
        return kernel.finish()
    own = getattr(m, "kernel_exits", None)
    if own is None:
        return None
    if isinstance(own, dict):
        return Counter({str(k): int(v) for k, v in own.items()})
    return Counter(_record_key(x) for x in own)


def _record_key(x: Any) -> str:
    """A kernel-exit record of the machine's own list, named like the others."""
    if isinstance(x, str):
        return x
    reason = getattr(x, "reason", None) or (x.get("reason") if isinstance(x, dict) else str(x))
    get = (lambda k: x.get(k)) if isinstance(x, dict) else (lambda k: getattr(x, k, None))
    return exit_key(str(reason), get("direction"), get("port"))


def _layer_rank(layer: str) -> int:
    return LAYERS.index(layer) if layer in LAYERS else len(LAYERS)


def _thread_rank(thread: str) -> tuple:
    order = {"vcpu0": 0, "main": 1}
    return (order.get(thread, 2), thread)


# ==========================================================================================================
# All paths, all engines
# ==========================================================================================================
def run_paths(*, op: str = "write", lba: int = 0, sectors: int = 1, engines: Iterable[str] = ("unicorn",),
              paths: Iterable[str] = PATH_IDS, seed: int = 0, progress: Any = None) -> dict:
    """Every path on every engine: the `vmio-edu paths --format json` document (schema `SCHEMA`)."""
    engines, paths = tuple(engines), tuple(paths)
    for e in engines:
        if e not in ENGINES:
            raise VmioError(f"unknown engine {e!r}: choose from {', '.join(ENGINES)}")
    chosen = [get_path(p) for p in paths]
    if not chosen:
        raise VmioError("no path chosen")
    if op not in ("write", "read", "both"):
        raise VmioError(f"unknown op {op!r}: choose write, read or both")
    if not 0 <= sectors <= 256:
        raise VmioError(f"--sectors {sectors}: the default guest moves 1 to 256 sectors (0 means 256)")
    runs = []
    for engine in engines:
        for p in chosen:
            if progress:
                progress(f"{p.id} on {engine}")
            runs.append(run_path(p, engine, op=op, lba=lba, sectors=sectors, seed=seed))
    doc = {"schema": SCHEMA, "workload": {"op": op, "lba": lba, "sectors": sectors or 256, "seed": seed},
           "engines": list(engines), "paths": [p.id for p in chosen], "runs": runs}
    if len(engines) > 1:
        doc["agree"] = engines_agree(runs)
    return doc


def engines_agree(runs: list[dict]) -> dict:
    """Per path: do the engines give the same exits to userspace and the same QEMU-side stage counts? (The
    kernel's own stages and exits are visible on the emulated engine only.)"""
    by_path: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        by_path[r["path"]].append(r)
    out = {}
    for pid, rs in by_path.items():
        exits = all(r["exits"] == rs[0]["exits"] for r in rs)
        qemu = all(qemu_stages(r) == qemu_stages(rs[0]) for r in rs)
        out[pid] = {"exits": exits, "qemu_stages": qemu}
    return out


def qemu_stages(run: dict) -> dict:
    """The stages QEMU and the host ran (the same code on both engines), per layer and thread."""
    return {layer: threads for layer, threads in run["stages"].items() if layer.startswith("qemu") or layer == "host"}


# ==========================================================================================================
# Text (fits 100 columns)
# ==========================================================================================================
LABEL = 36
CELL = 21


def _row(label: str, cells: list[str]) -> str:
    return f"{label[:LABEL]:<{LABEL}}" + "".join(f"{c:>{CELL}}" for c in cells)


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:,}" if isinstance(v, int) else f"{v:,.1f}"


def format_text(doc: dict) -> str:
    """The side-by-side tables, one per engine, each at most 100 columns wide."""
    w = doc["workload"]
    out = [f"vmio-edu paths: op={w['op']} lba={w['lba']} sectors={w['sectors']} "
           f"(the same request on each path, each on a fresh machine)"]
    for engine in doc["engines"]:
        runs = [r for r in doc["runs"] if r["engine"] == engine]
        head = f"== engine: {engine} "
        out += ["", head + "=" * max(0, LABEL + CELL * len(runs) - len(head))]
        out += _table(runs)
    if "agree" in doc:
        out.append("")
        for pid, a in doc["agree"].items():
            verdict = "same" if a["exits"] and a["qemu_stages"] else "DIFFER"
            out.append(f"engines on {pid}: {verdict} (exits to userspace: {'same' if a['exits'] else 'differ'}; "
                       f"QEMU stages: {'same' if a['qemu_stages'] else 'differ'})")
    bad = [f"{r['path']} on {r['engine']}: {'; '.join(r['problems'])}" for r in doc["runs"] if not r["image_ok"]]
    out.append("")
    out += [f"IMAGE CHECK FAILED: {b}" for b in bad] or ["Image check: OK on every path (the image holds the "
                                                        "bytes the guest wrote)"]
    return "\n".join(out)


def _table(runs: list[dict]) -> list[str]:
    out = [_row("", [r["title"] for r in runs])]
    out.append("Stages entered (trace point calls)")
    layers = _union(r["stages"] for r in runs)
    for layer in sorted(layers, key=_layer_rank):
        threads = _union(r["stages"].get(layer, {}) for r in runs)
        for th in sorted(threads, key=_thread_rank):
            out.append(_row(f"  {layer:<16} {th}", [_num(r["stages"].get(layer, {}).get(th, 0)) for r in runs]))
    out.append("Exits to userspace (KVM_RUN returns to QEMU)")
    for k in sorted(_union(r["exits"] for r in runs), key=_exit_order):
        out.append(_row(f"  {k}", [_num(r["exits"].get(k, 0)) for r in runs]))
    out.append(_row("  total", [_num(r["exit_total"]) for r in runs]))
    out.append(_row("  per sector", [_num(float(r["exits_per_sector"])) for r in runs]))
    out.append("Exits handled in the kernel (no return to QEMU)")
    if all(r["kernel_exits"] is None for r in runs):
        out.append("  (inside the real KVM_RUN: not visible to userspace on this engine)")
    else:
        for k in sorted(_union(r["kernel_exits"] or {} for r in runs), key=_exit_order):
            out.append(_row(f"  {k}", [_num((r["kernel_exits"] or {}).get(k, 0) if r["kernel_exits"] is not None
                                            else None) for r in runs]))
        out.append(_row("  total", [_num(r["kernel_exit_total"]) for r in runs]))
    out.append("Time (ms of self time per layer)")
    for layer in sorted(_union(r["time_ms"] for r in runs), key=_layer_rank):
        out.append(_row(f"  {layer}", [_num(float(r["time_ms"].get(layer, 0.0))) for r in runs]))
    out.append(_row("  wall time of the run", [_num(float(r["wall_ms"])) for r in runs]))
    return out


def _union(dicts: Iterable[dict]) -> list:
    seen: dict = {}
    for d in dicts:
        for k in d:
            seen.setdefault(k, None)
    return list(seen)


def _exit_order(key: str) -> tuple:
    """IO exits first, by port, then the others by name."""
    parts = key.split()
    if parts[0] == "IO" and len(parts) >= 3 and parts[2].startswith("port="):
        return (0, int(parts[2][5:], 16), parts[1], key)
    return (1, 0, "", key)
