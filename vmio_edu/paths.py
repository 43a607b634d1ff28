"""`vmio-edu paths`: the same disk workload on IDE PIO and on virtio-blk (ioeventfd off and on), side by side.

Why a learner wants it: after stepping through IDE PIO the first question is why one sector costs 256 exits
to QEMU, and what real VMs do instead. Each path is run on a fresh machine with the same guest request
(op, lba, sectors, data seed), and four things are counted while it runs:

* the stages entered: trace point entries, per layer and per model thread (vcpu0, main, worker-N);
* the exits to userspace: every return of KVM_RUN to QEMU (`Machine.exits`), by reason and port;
* the exits handled in the kernel: VM exits that KVM finished without returning to QEMU (the in-kernel PIC's
  ports, a HLT with the in-kernel irqchip, an ioeventfd notify, the host timer's external interrupts):
  `Machine.kernel_exits` on the emulated engine; on the real engine they are inside one opaque KVM_RUN, so
  they are `null` (unknown) there, and the notify shows only by its effect (the main loop's
  `virtio_queue_host_notifier_read`);
* the time: self time per layer (`vmio_edu.trace.timing.LayerTimer`, what `vmio-edu compare` uses) and the
  wall time of the run.

The result is plain data with a stable schema (`SCHEMA`), rendered as text by `format_text`:

    {"schema": "vmio-edu/paths/1",
     "workload": {"op", "lba", "sectors", "seed", "per_request", "depth", "indirect"},
     "engines": ["unicorn", "kvm"], "paths": ["ide", "virtio", "virtio-ioeventfd"],
     "runs": [{"engine", "path", "title", "disk", "ioeventfd",
               "stages": {layer: {thread: entries}}, "functions": {layer: [function, ...]},
               "calls": {layer: {thread: {function: entries}}},
               "exits": {"IO out port=0x1f0": n, "HLT": 1, ...}, "exit_total",
               "exits_per_sector",                      # all exits / sectors moved (write + read for "both")
               "requests", "request_exits",             # ATA commands or virtio requests; the exits on the
               "request_exits_per_request",             #   ports that move them (not the driver's probe)
               "request_exits_per_sector", "port_names": {"0x1f0": "ATA data", ...},
               "kernel_exits": {"IO(pic) out port=0x20": n, "HLT": n, ...} | null (real engine),
               "kernel_exit_total": n | null,
               "time_ms": {layer: self time}, "time_ms_by_thread": {layer: {thread: self time}},
               "wall_ms", "image_ok", "problems": [...]}],
     "agree": {path: {"exits", "qemu_stages", "kvm_run_reentries"}}}   # with both engines only
"""
from __future__ import annotations

import textwrap
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Iterable

from .cpu import vmcs as V
from .errors import VmioError
from .trace.timing import LayerTimer
from .trace.tracepoint import LAYERS, ThreadContext, TracePoint

SCHEMA = "vmio-edu/paths/1"
WIDTH = 100  # the text fits 100 columns


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


# What each port is (for the tables' labels): the ATA task file (include/linux/ata.h), PCI configuration
# mechanism #1, the in-kernel PICs, and the legacy virtio-pci header at BAR 0 (Linux v3.7
# include/uapi/linux/virtio_pci.h). Setup ports are the probe's (PCI config, features, queue set-up, status,
# device config); the rest move the request itself (IDE: all of them; virtio: QUEUE_NOTIFY and ISR).
FIXED_PORTS = {
    0x1F0: "ATA data", 0x1F1: "ATA features/error", 0x1F2: "ATA sector count", 0x1F3: "ATA LBA low",
    0x1F4: "ATA LBA mid", 0x1F5: "ATA LBA high", 0x1F6: "ATA device", 0x1F7: "ATA command/status",
    0x3F6: "ATA control/altstatus", 0xCF8: "PCI CONFIG_ADDRESS", 0xCFC: "PCI CONFIG_DATA",
    0xCFD: "PCI CONFIG_DATA+1", 0xCFE: "PCI CONFIG_DATA+2", 0xCFF: "PCI CONFIG_DATA+3",
    0x20: "PIC1 cmd", 0x21: "PIC1 data", 0xA0: "PIC2 cmd", 0xA1: "PIC2 data",
    0x4D0: "ELCR master", 0x4D1: "ELCR slave",
}
VIRTIO_PCI_REGS = {0: "HOST_FEATURES", 4: "GUEST_FEATURES", 8: "QUEUE_PFN", 12: "QUEUE_NUM", 14: "QUEUE_SEL",
                   16: "QUEUE_NOTIFY", 18: "STATUS", 19: "ISR"}
VIRTIO_PCI_CONFIG = 20  # device-specific config (struct virtio_blk_config) from here, without MSI-X
# struct virtio_blk_config (Linux v3.7 include/uapi/linux/virtio_blk.h): field, offset, size
BLK_CONFIG = (("capacity", 0, 8), ("size_max", 8, 4), ("seg_max", 12, 4), ("cylinders", 16, 2), ("heads", 18, 1),
              ("sectors", 19, 1), ("blk_size", 20, 4), ("physical_block_exp", 24, 1), ("alignment_offset", 25, 1),
              ("min_io_size", 26, 2), ("opt_io_size", 28, 4), ("wce", 32, 1))
REQUEST_VIRTIO_REGS = {"QUEUE_NOTIFY", "ISR"}


def port_names(virtio_base: int | None, bar_size: int = 0x40) -> dict[int, tuple[str, bool]]:
    """port → (name, moves the request?) for a machine whose virtio BAR 0 sits at `virtio_base`."""
    names = {p: (n, p < 0x200 or p == 0x3F6) for p, n in FIXED_PORTS.items()}
    if virtio_base is None:
        return names
    for off in range(bar_size):
        names[virtio_base + off] = (VIRTIO_PCI_REGS.get(off, f"virtio+{off}"),
                                    VIRTIO_PCI_REGS.get(off) in REQUEST_VIRTIO_REGS)
    for field, at, size in BLK_CONFIG:
        for i in range(size):
            names[virtio_base + VIRTIO_PCI_CONFIG + at + i] = (f"blk {field}" + (f"+{i}" if size > 1 else ""), False)
    return names


def virtio_bar(m: Any) -> tuple[int | None, int]:
    """Where the guest mapped the virtio device's BAR 0 (I/O space), and its size."""
    proxy = getattr(m, "virtio", None)
    if proxy is None:
        return None, 0
    bar = proxy.pci_dev.io_regions[0]
    return (bar.addr, bar.size) if bar.size and 0 <= bar.addr < 0x10000 else (None, 0)


class LayerThreadTimer(LayerTimer):
    """`LayerTimer` (the timer of `vmio-edu compare`), also adding each interval to the thread it ran on:
    `by_thread[(layer, thread)]` in ns. The per-layer sums stay LayerTimer's."""

    def __init__(self) -> None:
        super().__init__()
        self.by_thread: dict[tuple[str, str | None], int] = defaultdict(int)
        self._thread: str | None = None
        self._next_thread: str | None = None

    def _tick(self, next_layer: str | None, minus: int = 0) -> None:
        now = time.perf_counter_ns()
        if self._layer is not None:
            spent = max(0, now - self._last - minus)
            self.ns[self._layer] += spent
            self.by_thread[(self._layer, self._thread)] += spent
        self._last, self._layer, self._thread = now, next_layer, self._next_thread

    def enter(self, tp: TracePoint, args: tuple, ctx: ThreadContext) -> None:
        self._next_thread = ctx.name
        super().enter(tp, args, ctx)

    def leave(self, tp: TracePoint, result: Any, ctx: ThreadContext) -> None:
        self._next_thread = ctx.name
        super().leave(tp, result, ctx)

    def event(self, name: str, layer: str, fields: dict, ctx: ThreadContext) -> None:
        if name == "KVM_RUN" and "ns" in fields:
            self.by_thread[("kvm (real)", ctx.name)] += fields["ns"]
        self._next_thread = self._thread
        super().event(name, layer, fields, ctx)

    def _switch(self, thread: Any) -> None:
        self._next_thread = None if thread is None else thread.name
        super()._switch(thread)


class StageCounter:
    """Trace hooks that count stage entries per (layer, thread) and time each layer and thread
    (`LayerThreadTimer`). Light: no trace is kept."""

    def __init__(self) -> None:
        self.timer = LayerThreadTimer()
        self.counts: Counter = Counter()
        self.per_function: Counter = Counter()  # (layer, thread, function) -> entries
        self.functions: dict[str, list[str]] = defaultdict(list)

    def attach(self, sched: Any) -> "StageCounter":
        sched.attach(hooks=self)
        sched.switch_listeners.append(self.timer._switch)
        return self

    def enter(self, tp: TracePoint, args: tuple, ctx: ThreadContext) -> None:
        self.counts[(tp.layer, ctx.name)] += 1
        self.per_function[(tp.layer, ctx.name, tp.name)] += 1
        fns = self.functions[tp.layer]
        if tp.name not in fns:
            fns.append(tp.name)
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
             seed: int = 0, per_request: int = 0, depth: int = 0, indirect: bool = False) -> dict:
    """Run the default guest's request on one path and engine; return its counts (one `runs` entry of the
    JSON document). `per_request`/`depth` shape the virtio guest's requests (sectors per request, requests
    per kick; 0: one request for all, as many per kick as fit) and `indirect` puts each request's
    descriptors in a table of its own; IDE moves all sectors with one command.
    Raises EngineUnavailable when engine="kvm" cannot open /dev/kvm."""
    from .imagecheck import image_check
    from .machine import Machine

    if isinstance(path, str):
        path = get_path(path)
    kw = path.kwargs()
    if kw.get("disk", "ide") != "ide" and not _machine_takes("disk"):
        raise VmioError(f"path {path.id!r} needs the virtio-blk device, which this build of vmio-edu lacks "
                        "(Machine has no disk= parameter)")
    if kw.get("disk") == "ide" and not _machine_takes("disk"):
        kw.pop("disk")
    if kw.get("disk") == "virtio":
        kw.update(per_request=per_request, depth=depth)
        if indirect:
            kw["indirect"] = True
    counter = StageCounter()
    with Machine(engine=engine, op=op, lba=lba, sectors=sectors, seed=seed, **kw) as m:
        counter.attach(m.sched)
        t0 = time.perf_counter()
        m.run()
        wall = time.perf_counter() - t0
        kernel_counts = _kernel_exits(m)
        exits = Counter(exit_key(x.reason, x.direction, x.port) for x in m.exits)
        names = port_names(*virtio_bar(m))
        request_exits = sum(1 for x in m.exits if x.port is not None and names.get(x.port, ("", True))[1])
        requests = _requests(m)
        check = image_check(m)
        engine_used = m.engine
        used_ports = {int(k.split("port=")[1].split()[0], 16)
                      for k in list(exits) + list(kernel_counts or {}) if "port=" in k}
    n = (sectors or 256) * (2 if op == "both" else 1)  # sectors moved: a write and a read back for "both"
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
        "requests": requests,
        "request_exits": request_exits,
        "request_exits_per_sector": round(request_exits / n, 2),
        "request_exits_per_request": round(request_exits / max(1, requests), 2),
        "port_names": {f"{p:#x}": names[p][0] for p in sorted(used_ports) if p in names},
        "kernel_exits": None if kernel_counts is None else dict(sorted(kernel_counts.items())),
        "kernel_exit_total": None if kernel_counts is None else sum(kernel_counts.values()),
        "time_ms": time_ms, "time_ms_by_thread": _time_by_thread(counter.timer.by_thread),
        "wall_ms": round(wall * 1e3, 3),
        "image_ok": check["ok"], "problems": check["problems"],
        "calls": _nested(counter.per_function),
    }


def _requests(m: Any) -> int:
    """How many requests the guest made: virtio-blk requests (the guest counts them), or ATA commands."""
    if getattr(m, "virtio", None) is not None:
        return int(m.guest_result().get("requests", 0))
    return sum(1 for x in m.exits if x.port == 0x1F7 and x.direction == "out")


def _kernel_exits(m: Any) -> Counter | None:
    """The exits KVM handled itself (`Machine.kernel_exits`, vmio_edu.trace.kernel_exits), by reason and
    port: the emulated engine's kernel model records them; on the real engine they happen inside one
    opaque KVM_RUN, so None (unknown), not zero."""
    if m.engine != "unicorn":
        return None
    return Counter(exit_key(x.reason, x.direction, x.port) for x in m.kernel_exits)


def _time_by_thread(by_thread: dict) -> dict:
    """(layer, thread) -> ns as {layer: {thread: ms}}, in path order (time outside any thread dropped)."""
    out: dict = {}
    for (layer, thread), ns in sorted(by_thread.items(), key=lambda kv: (_layer_rank(kv[0][0]),
                                                                        _thread_rank(kv[0][1] or ""))):
        if thread is not None and ns:
            out.setdefault(layer, {})[thread] = round(ns / 1e6, 3)
    return out


def _nested(per_function: Counter) -> dict:
    """(layer, thread, function) -> n as {layer: {thread: {function: n}}}, in path order."""
    out: dict = {}
    for (layer, thread, fn), n in sorted(per_function.items(),
                                         key=lambda kv: (_layer_rank(kv[0][0]), _thread_rank(kv[0][1]))):
        out.setdefault(layer, {}).setdefault(thread, {})[fn] = n
    return out


def _flat(calls: dict) -> dict:
    return {(layer, t, fn): n for layer, ths in calls.items() for t, fns in ths.items() for fn, n in fns.items()}


def _layer_rank(layer: str) -> int:
    return LAYERS.index(layer) if layer in LAYERS else len(LAYERS)


def _thread_rank(thread: str) -> tuple:
    order = {"vcpu0": 0, "main": 1}
    return (order.get(thread, 2), thread)


# ==========================================================================================================
# All paths, all engines
# ==========================================================================================================
def run_paths(*, op: str = "write", lba: int = 0, sectors: int = 1, engines: Iterable[str] = ("unicorn",),
              paths: Iterable[str] = PATH_IDS, seed: int = 0, per_request: int = 0, depth: int = 0,
              indirect: bool = False, progress: Any = None) -> dict:
    """Every path on every engine: the `vmio-edu paths --format json` document (schema `SCHEMA`)."""
    engines, paths = tuple(engines), tuple(paths)
    for e in engines:
        if e not in ENGINES:
            raise VmioError(f"unknown engine {e!r}: choose from {', '.join(ENGINES)}")
    chosen = [get_path(p) for p in paths]
    if not chosen:
        raise VmioError("no path chosen")
    twice = sorted({p.id for p in chosen if [q.id for q in chosen].count(p.id) > 1})
    if twice:  # it would run, and print, the same column twice
        raise VmioError(f"--path {twice[0]} is given twice: give each path once")
    for what, v in (("per_request", per_request), ("depth", depth)):
        if not 0 <= v <= 256:  # before the first run starts, not after it (the virtio guest says the same)
            raise VmioError(f"{what} must be 0..256, not {v}")
    if op not in ("write", "read", "both"):
        raise VmioError(f"unknown op {op!r}: choose write, read or both")
    if not 0 <= sectors <= 256:
        raise VmioError(f"--sectors {sectors}: the default guest moves 1 to 256 sectors (0 means 256)")
    runs = []
    for engine in engines:
        for p in chosen:
            if progress:
                progress(f"{p.id} on {engine}")
            runs.append(run_path(p, engine, op=op, lba=lba, sectors=sectors, seed=seed, per_request=per_request,
                                 depth=depth, indirect=indirect))
    agree = engines_agree(runs) if len(engines) > 1 else None
    doc = {"schema": SCHEMA, "workload": {"op": op, "lba": lba, "sectors": sectors or 256, "seed": seed,
                                          "per_request": per_request, "depth": depth, "indirect": indirect},
           "engines": list(engines), "paths": [p.id for p in chosen], "runs": runs}
    if agree is not None:
        doc["agree"] = agree
    return doc


# The vCPU loop's own calls: on the real engine a signal can bring the vCPU back from KVM_RUN without an exit
# (the halted vCPU's kick, vmio_edu.kvm.kick): KVM_RUN returns EINTR, QEMU 1.6.1's kvm_cpu_exec returns
# EXCP_INTERRUPT and qemu_kvm_cpu_thread_fn enters it again. Those re-entries are the host's timing, not the
# path's cost, so the engines are compared without them (and the count of them is reported).
VCPU_LOOP = {("qemu-cpu", "vcpu0", "kvm_cpu_exec"), ("qemu-cpu", "vcpu0", "kvm_vcpu_ioctl")}


def _userspace_side(layer: str, thread: str) -> bool:
    """Stages both engines run: QEMU's, and the host's system calls off the vCPU thread (a pool worker's
    pwrite). On the vCPU thread the host layer runs inside a KVM ioctl (ioeventfd_write's eventfd_signal),
    which the real engine's kernel does out of sight."""
    return layer.startswith("qemu") or (layer == "host" and thread != "vcpu0")


def engines_agree(runs: list[dict]) -> dict:
    """Per path: do the engines give the same exits to userspace, and did QEMU and the host run the same
    functions as often (besides the vCPU loop's re-entries after a kick)? The kernel's own stages and
    exits are visible on the emulated engine only."""
    by_path: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        by_path[r["path"]].append(r)
    out = {}
    for pid, rs in by_path.items():
        ref = rs[0]
        exits = all(r["exits"] == ref["exits"] for r in rs)
        same, reentries = True, 0
        for r in rs[1:]:
            a, b = _flat(ref["calls"]), _flat(r["calls"])
            for key in set(a) | set(b):
                if key in VCPU_LOOP or not _userspace_side(key[0], key[1]):
                    continue
                same = same and a.get(key, 0) == b.get(key, 0)
            reentries = max(reentries, abs(b.get(("qemu-cpu", "vcpu0", "kvm_cpu_exec"), 0)
                                           - a.get(("qemu-cpu", "vcpu0", "kvm_cpu_exec"), 0)))
        out[pid] = {"exits": exits, "qemu_stages": same, "kvm_run_reentries": reentries}
    return out


def qemu_stages(run: dict) -> dict:
    """The stages QEMU and the host's system calls ran (the same code on both engines), per layer and thread."""
    out: dict = {}
    for layer, threads in run["stages"].items():
        kept = {t: n for t, n in threads.items() if _userspace_side(layer, t)}
        if kept:
            out[layer] = kept
    return out


# ==========================================================================================================
# Text (fits 100 columns)
# ==========================================================================================================
LABEL = 40
CELL = 20


def _row(label: str, cells: list[str]) -> str:
    return f"{label[:LABEL]:<{LABEL}}" + "".join(f"{c:>{CELL}}" for c in cells)


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:,}" if isinstance(v, int) else f"{v:,.1f}"


def format_text(doc: dict) -> str:
    """The side-by-side tables, one per engine, each at most 100 columns wide."""
    w = doc["workload"]
    shape = (f" per_request={w['per_request']} depth={w['depth']}" if w.get("per_request") or w.get("depth")
             else "") + (" indirect" if w.get("indirect") else "")
    out = [f"vmio-edu paths: op={w['op']} lba={w['lba']} sectors={w['sectors']}{shape} "
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
                       f"QEMU stages: {'same' if a['qemu_stages'] else 'differ'}"
                       + (f"; the real vCPU re-entered KVM_RUN {a['kvm_run_reentries']}x after a kick"
                          if a["kvm_run_reentries"] else "") + ")")
    bad = [f"{r['path']} on {r['engine']}: {'; '.join(r['problems'])}" for r in doc["runs"] if not r["image_ok"]]
    out.append("")
    from .machine import DEFAULT_IMAGE_SIZE, SECTOR
    end = DEFAULT_IMAGE_SIZE // SECTOR  # the fresh image each run gets
    if w["lba"] + w["sectors"] > end:
        out.append(f"note: the request runs past the end of the {end}-sector image (sectors {max(w['lba'], end)}.."
                   f"{w['lba'] + w['sectors'] - 1}): each path answers with its own error (IDE aborts at the "
                   "first sector past the end; virtio-blk fails the whole request with VIRTIO_BLK_S_IOERR)")
    out += [f"IMAGE CHECK FAILED: {b}" for b in bad] or ["Image check: OK on every path (the image holds the "
                                                        "bytes the guest wrote)"]
    return "\n".join(textwrap.fill(line, WIDTH, subsequent_indent="  ") if len(line) > WIDTH else line
                     for line in out)


def _table(runs: list[dict]) -> list[str]:
    out = [_row("", [r["title"].split(" ", 1)[0] if r["path"] != "ide" else r["title"] for r in runs]),
           _row("", [r["title"].split(" ", 1)[1] if r["path"] != "ide" else "" for r in runs])]
    out.append("Stages entered (trace point calls)")
    layers = _union(r["stages"] for r in runs)
    for layer in sorted(layers, key=_layer_rank):
        threads = _union(r["stages"].get(layer, {}) for r in runs)
        for th in sorted(threads, key=_thread_rank):
            out.append(_row(f"  {layer:<16} {th}", [_num(r["stages"].get(layer, {}).get(th, 0)) for r in runs]))
    out.append("Exits to userspace (KVM_RUN returns to QEMU)")
    names: dict[str, str] = {}
    for r in runs:
        names.update(r.get("port_names", {}))
    out += _exit_rows(runs, "exits", names)
    out.append(_row("  total", [_num(r["exit_total"]) for r in runs]))
    out.append(_row("  moving the request (not the probe)", [_num(r["request_exits"]) for r in runs]))
    out.append(_row("    requests (ATA commands / virtio)", [_num(r["requests"]) for r in runs]))
    out.append(_row("    per request", [_num(float(r["request_exits_per_request"])) for r in runs]))
    out.append(_row("    per sector moved", [_num(float(r["request_exits_per_sector"])) for r in runs]))
    out.append("Exits handled in the kernel (no return to QEMU)")
    if all(r["kernel_exits"] is None for r in runs):
        out.append("  (inside the real KVM_RUN: not visible to userspace on this engine)")
        wakes = [_calls_of(r, "virtio_queue_host_notifier_read") for r in runs]
        if any(wakes):
            out.append(_row("  main loop woken by the ioeventfd", [_num(w) for w in wakes]))
    else:
        for k in sorted(_union(r["kernel_exits"] or {} for r in runs), key=_exit_order):
            cells = [None if r["kernel_exits"] is None else r["kernel_exits"].get(k, 0) for r in runs]
            out.append(_row(f"  {_label(k, names)}", [_num(c) for c in cells]))
        out.append(_row("  total", [_num(r["kernel_exit_total"]) for r in runs]))
    out.append("Time (ms of self time per layer and thread)")
    for layer in sorted(_union(r["time_ms"] for r in runs), key=_layer_rank):
        threads = _union(r.get("time_ms_by_thread", {}).get(layer, {}) for r in runs)
        for th in sorted(threads, key=_thread_rank):
            out.append(_row(f"  {layer:<16} {th}", [_num(float(r.get("time_ms_by_thread", {}).get(layer, {})
                                                                  .get(th, 0.0))) for r in runs]))
    out.append(_row("  wall time of the run", [_num(float(r["wall_ms"])) for r in runs]))
    return out


def _exit_rows(runs: list[dict], field: str, names: dict[str, str]) -> list[str]:
    """One row per exit key; the byte-wide reads of one multi-byte config field (the driver reads
    virtio_blk_config a byte per exit) folded into one row per field, at its first port."""
    rows: dict[tuple, list] = {}  # group -> [label, values]
    for k in sorted(_union(r[field] or {} for r in runs), key=_exit_order):
        label = _label(k, names)
        parts = label.split()
        group: tuple = (label,)
        if len(parts) == 5 and parts[3] == "blk" and "+" in parts[4]:  # IO in 0xc014 blk capacity+0
            fname = parts[4].split("+")[0]
            group = (parts[0], parts[1], fname)
            label = f"{parts[0]} {parts[1]} {parts[2]}.. blk {fname}"
        vals = [(r[field] or {}).get(k, 0) for r in runs]
        if group in rows:
            rows[group][1] = [a + b for a, b in zip(rows[group][1], vals)]
        else:
            rows[group] = [label, vals]
    return [_row(f"  {label}", [_num(v) for v in vals]) for label, vals in rows.values()]


def _label(key: str, names: dict[str, str]) -> str:
    """'IO out port=0x1f0' → 'IO out 0x1f0 ATA data' (the JSON keeps the key; the text names the port)."""
    parts = key.split(" ", 3)
    if len(parts) >= 3 and parts[2].startswith("port="):
        port = parts[2][5:]
        rest = f" {parts[3]}" if len(parts) > 3 else ""
        return f"{parts[0]} {parts[1]} {port} {names.get(port, '')}".rstrip() + rest
    return key


def _calls_of(run: dict, function: str) -> int:
    """How many times `function` ran, on any thread."""
    return sum(fns.get(function, 0) for threads in run.get("calls", {}).values() for fns in threads.values())


def _union(dicts: Iterable[dict]) -> list:
    seen: dict = {}
    for d in dicts:
        for k in d:
            seen.setdefault(k, None)
    return list(seen)


def _exit_order(key: str) -> tuple:
    """IO exits first, by port, then the others by name."""
    parts = key.split()
    if parts[0].startswith("IO") and len(parts) >= 3 and parts[2].startswith("port="):
        return (0, int(parts[2][5:], 16), parts[1], key)
    return (1, 0, "", key)
