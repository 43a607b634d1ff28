"""`vmio-edu`: the command line. Other tools script against its output, so formats are stable.

    vmio-edu trace [--op write|read|both] [--lba N] [--sectors N] [--break FUNCTION] [--image PATH]
                   [--engine unicorn|kvm|auto] [--stack 1.6.1|10.2] [--format text|json] [--export FILE.json]
    vmio-edu exits GUEST.bin --mode 16|32|64 [--load ADDR] [--entry ADDR] [--engine ...] [--format json]
    vmio-edu bench [--format text|json|markdown] [--quick] [--engine unicorn|kvm|both] [--plot FILE.png]
    vmio-edu diff-paths [--op write|read] [--break FUNCTION] [--engine ...] [--sectors N] [--format text|json]
                        [--changes] [--stacks OLD,NEW]
    vmio-edu paths [--op write|read|both] [--lba N] [--sectors N] [--engine unicorn|kvm|both]
                   [--path ide|virtio|virtio-ioeventfd ...] [--per-request N] [--depth N] [--indirect]
                   [--format text|json]

Errors print `error: ...` on stderr and exit non-zero, never with a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from typing import Any

from .errors import VmioError
from .imagecheck import image_check
from .trace.tracepoint import LAYERS


def _int(text: str) -> int:
    """A number in decimal or with a 0x/0o/0b prefix (argparse's error names the option and the text)."""
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (write 16 or 0x10)") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vmio-edu", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("trace", help="run the default guest through the whole I/O path and summarize it")
    t.add_argument("--op", choices=("write", "read", "both"), default="both")
    t.add_argument("--lba", type=_int, default=0)
    t.add_argument("--sectors", type=_int, default=1)
    t.add_argument("--break", dest="brk", metavar="FUNCTION", help="stop at the first call of FUNCTION")
    t.add_argument("--image", help="raw disk image (default: a fresh temporary 1 MiB image)")
    t.add_argument("--readonly", action="store_true",
                   help="open the image read-only (-drive readonly=on): the guest's writes fail")
    t.add_argument("--engine", choices=("unicorn", "kvm", "auto"), default="unicorn")
    t.add_argument("--format", choices=("text", "json"), default="text")
    t.add_argument("--polling", action="store_true", help="guest polls BSY with nIEN set instead of IRQ 14")
    t.add_argument("--seed", type=_int, default=0, help="seed of the data pattern the guest writes")
    t.add_argument("--stack", choices=("1.6.1", "10.2"), default="1.6.1",
                     help="QEMU 1.6.1 on Linux 3.7 (default) or QEMU 10.2 on Linux 6.12")
    t.add_argument("--disk", choices=("ide", "virtio"), default="ide",
                   help="the disk the guest drives: PIIX IDE (default) or virtio-blk-pci (the virtio guest)")
    t.add_argument("--ioeventfd", choices=("on", "off"), default=None,
                   help="virtio only: the queue notify handled in the kernel (on, QEMU 1.6.1's default) "
                        "or as a KVM_EXIT_IO on the vCPU thread (off)")
    t.add_argument("--per-request", type=_int, default=0,
                   help="virtio only: sectors per request (0: one request for all)")
    t.add_argument("--depth", type=_int, default=0,
                   help="virtio only: requests published per kick (0: as many as the queue holds)")
    t.add_argument("--indirect", action="store_true",
                   help="virtio only: the driver takes indirect descriptors (one table per request)")
    t.add_argument("--export", metavar="FILE.json",
                   help="also write the recorded run as Chrome/Perfetto trace-event JSON (ui.perfetto.dev)")

    c = sub.add_parser("compare", help="run the default guest on both engines and compare, exit by exit")
    c.add_argument("--op", choices=("write", "read", "both"), default="both")
    c.add_argument("--lba", type=_int, default=0)
    c.add_argument("--sectors", type=_int, default=1)
    c.add_argument("--polling", action="store_true")
    c.add_argument("--format", choices=("text", "json"), default="text")
    c.add_argument("--stack", choices=("1.6.1", "10.2"), default="1.6.1",
                     help="QEMU 1.6.1 on Linux 3.7 (default) or QEMU 10.2 on Linux 6.12")
    c.add_argument("--disk", choices=("ide", "virtio"), default="ide",
                   help="the disk the guest drives: PIIX IDE (default) or virtio-blk-pci (the virtio guest)")
    c.add_argument("--ioeventfd", choices=("on", "off"), default=None,
                   help="virtio only: the queue notify handled in the kernel (on, QEMU 1.6.1's default) "
                        "or as a KVM_EXIT_IO on the vCPU thread (off)")
    c.add_argument("--per-request", type=_int, default=0,
                   help="virtio only: sectors per request (0: one request for all)")
    c.add_argument("--depth", type=_int, default=0,
                   help="virtio only: requests published per kick (0: as many as the queue holds)")
    c.add_argument("--indirect", action="store_true",
                   help="virtio only: the driver takes indirect descriptors (one table per request)")

    e = sub.add_parser("exits", help="run raw guest code until it halts and print every exit as JSON")
    e.add_argument("guest", help="a file of raw x86 machine code")
    e.add_argument("--mode", type=int, choices=(16, 32, 64), required=True)
    e.add_argument("--load", type=_int, default=0x1000)
    e.add_argument("--entry", type=_int)
    e.add_argument("--engine", choices=("unicorn", "kvm", "auto"), default="unicorn")
    e.add_argument("--format", choices=("json",), default="json")
    e.add_argument("--max-exits", type=_int, default=1_000_000)
    e.add_argument("--stack", choices=("1.6.1", "10.2"), default="1.6.1",
                     help="QEMU 1.6.1 on Linux 3.7 (default) or QEMU 10.2 on Linux 6.12")
    e.add_argument("--disk", choices=("ide", "virtio"), default="ide",
                   help="the disk the guest drives: PIIX IDE (default) or virtio-blk-pci (the virtio guest)")
    e.add_argument("--ioeventfd", choices=("on", "off"), default=None,
                   help="virtio only: the queue notify handled in the kernel (on, QEMU 1.6.1's default) "
                        "or as a KVM_EXIT_IO on the vCPU thread (off)")

    d = sub.add_parser("diff-paths", help="run the default guest on QEMU 1.6.1/Linux 3.7 and QEMU 10.2/Linux "
                                          "6.12 and print the two paths aligned, one stage per row")
    d.add_argument("--op", choices=("write", "read"), default="write")
    d.add_argument("--lba", type=_int, default=0)
    d.add_argument("--sectors", type=_int, default=1)
    d.add_argument("--break", dest="brk", metavar="FUNCTION", default="",
                   help="stop both stacks here and print both backtraces (either stack's name: "
                        "bdrv_aio_writev stops 10.2 at blk_aio_pwritev; default: the op's block-layer "
                        "entry; 'none' for no backtraces)")
    d.add_argument("--engine", choices=("unicorn", "kvm", "auto"), default="unicorn")
    d.add_argument("--format", choices=("text", "json"), default="text")
    d.add_argument("--seed", type=_int, default=0)
    d.add_argument("--changes", action="store_true",
                   help="text: only the rows that changed, each after the SAME row before it")
    d.add_argument("--stacks", default="1.6.1,10.2", metavar="OLD,NEW",
                   help="the two stacks to compare (default 1.6.1,10.2)")

    b = sub.add_parser("bench", help="measure the chain against the engines' limits (issue 6's benchmark)")
    b.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    b.add_argument("--quick", action="store_true",
                   help="4 sectors, fewer samples, no RSS run (seconds, not minutes)")
    b.add_argument("--engine", choices=("unicorn", "kvm", "both"), default="both")
    b.add_argument("--plot", metavar="FILE.png", help="also draw exits/s as a bar chart (needs matplotlib)")
    pa = sub.add_parser("paths", help="the same request on IDE PIO and virtio-blk (ioeventfd off/on), side by "
                                      "side: stages, exits to userspace and in the kernel, time per layer")
    pa.add_argument("--op", choices=("write", "read", "both"), default="write")
    pa.add_argument("--lba", type=_int, default=0)
    pa.add_argument("--sectors", type=_int, default=1)
    pa.add_argument("--engine", choices=("unicorn", "kvm", "both"), default="unicorn")
    pa.add_argument("--path", dest="paths", action="append", metavar="PATH",
                    help="run only this path (repeatable): ide, virtio, virtio-ioeventfd (default: all three)")
    pa.add_argument("--seed", type=_int, default=0, help="seed of the data pattern the guest writes")
    pa.add_argument("--per-request", type=_int, default=0,
                    help="virtio: sectors per request (default 0: one request for all)")
    pa.add_argument("--depth", type=_int, default=0,
                    help="virtio: requests published per kick (default 0: as many as the queue holds)")
    pa.add_argument("--indirect", action="store_true",
                    help="virtio: each request's descriptors in an indirect table of its own")
    pa.add_argument("--format", choices=("text", "json"), default="text")
    _add_grading_commands(sub)
    return p


def _add_grading_commands(sub: argparse._SubParsersAction) -> None:
    """`vmio-edu release` and `vmio-edu grade` (the course commands, vmio_edu/grading/cli.py)."""
    from .grading.cli import add_commands
    add_commands(sub)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"trace": cmd_trace, "exits": cmd_exits, "compare": cmd_compare, "bench": cmd_bench,
                "diff-paths": cmd_diff_paths, "paths": cmd_paths}.get(
            args.cmd, getattr(args, "func", None))(args)
    except VmioError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `vmio-edu trace ... | head`: the reader left; no traceback, and none at exit when Python flushes
        # stdout again (the machine was closed by its `with`)
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 141  # 128 + SIGPIPE, as a shell reports a pipeline member killed by it


# -- trace --------------------------------------------------------------------------------------------
def _device_kw(args: argparse.Namespace) -> dict:
    """--disk / --ioeventfd (and the virtio guest's --per-request / --depth) as Machine arguments."""
    if args.disk == "ide":
        if getattr(args, "per_request", 0) or getattr(args, "depth", 0) or getattr(args, "indirect", False) \
                or args.ioeventfd is not None:
            raise VmioError("--ioeventfd, --per-request, --depth and --indirect are for --disk virtio")
        return {}
    kw = {"disk": "virtio", "ioeventfd": args.ioeventfd != "off"}  # not given: on, 1.6.1's default
    if hasattr(args, "per_request"):
        kw.update(per_request=args.per_request, depth=args.depth, indirect=args.indirect)
    return kw


def cmd_trace(args: argparse.Namespace) -> int:
    from .machine import Machine

    m = Machine(image=args.image, engine=args.engine, op=args.op, lba=args.lba, sectors=args.sectors,
                polling=args.polling, seed=args.seed, record=True, stack=args.stack, readonly=args.readonly,
                **_device_kw(args))
    with m:
        if m.engine_note:
            print(f"note: {m.engine_note}", file=sys.stderr)
        if args.brk:
            if args.export:
                raise VmioError("--export writes the whole run: leave out --break")
            return _trace_break(m, args)
        m.run()
        report = trace_report(m)
        if args.export:
            from .trace.export import write_perfetto
            doc = write_perfetto(args.export, m.trace.events, m.exits,
                                 title=f"vmio-edu trace --op {args.op} --lba {args.lba} --sectors "
                                       f"{args.sectors} --engine {m.engine} --stack {m.stack.name}")
            print(f"wrote {len(doc['traceEvents'])} trace events to {args.export} (open it at "
                  "https://ui.perfetto.dev)", file=sys.stderr)
    if args.format == "json":
        print(json.dumps(report, indent=1))
    else:
        print(format_report(report))
    return 0 if report["check"]["ok"] else 1


def _trace_break(m: Any, args: argparse.Namespace) -> int:
    """`--break FUNCTION`: run under the debugger to the first call of FUNCTION, print where and the
    backtrace."""
    from .trace.argfmt import format_frame

    dbg = m.debugger()
    dbg.break_at(args.brk)  # VmioError naming the problem for an unknown function
    stop = dbg.cont()
    if stop.reason != "breakpoint":
        raise VmioError(f"{args.brk} was not reached: the guest halted first{_why_not_reached(m, args.brk)}")
    s = {"function": stop.function, "layer": stop.layer, "thread": stop.thread, "index": stop.index,
         "file": stop.file, "line": stop.line}
    if args.format == "json":
        print(json.dumps({"stop": s, "backtrace": [f.to_json() for f in stop.backtrace]}, indent=1))
    else:
        print(f"Stopped at {s['function']} ({s['layer']}, thread {s['thread']}), trace index {s['index']}")
        print("\n".join(format_frame(f) for f in stop.backtrace))  # port=0x1f0, type=KVM_RUN
    return 0


def _why_not_reached(m: Any, function: str) -> str:
    """The likely reason a breakpoint on a real function was never hit, or "": an IDE function on the
    virtio board (its PIIX IDE controller has no drive; the virtio guest never touches it)."""
    from .trace.sources import lookup
    ref = lookup("qemu", function, m.stack.name)
    if m.disk == "virtio" and ref is not None and ref.file.startswith("hw/ide/"):
        return (f" ({function} is in {ref.file}, and this machine's disk is virtio-blk: the IDE controller has "
                "no drive and the virtio guest never touches it; use --disk ide to stop there)")
    return ""


def trace_report(m: Any) -> dict:
    """The summary `vmio-edu trace` prints: stages by layer and thread, exits, sectors, the image check."""
    stages: dict[str, dict[str, int]] = {}
    for (layer, thread), n in sorted(m.trace.per_layer_thread().items(),
                                     key=lambda kv: (LAYERS.index(kv[0][0]), kv[0][1])):
        stages.setdefault(layer, {})[thread] = n
    functions: dict[str, list[str]] = {}
    for layer, _thread, fn in m.trace.stages():
        if fn not in functions.setdefault(layer, []):
            functions[layer].append(fn)
    exits = Counter()
    for x in m.exits:
        exits[f"{x.reason} {x.direction} port={x.port:#x}" if x.port is not None else x.reason] += 1
    # what each port is (the ATA task file, PCI config, the virtio-pci header and blk config), as paths names it
    from .paths import port_names, virtio_bar
    known = port_names(*virtio_bar(m))
    ports = {f"{x.port:#x}": known[x.port][0] for x in m.exits if x.port is not None and x.port in known}
    return {
        "engine": m.engine, "stack": m.stack.name, "op": m.op, "lba": m.lba, "sectors": m.sectors,
        "stages": stages, "functions": {k: functions[k] for k in LAYERS if k in functions},
        "exits": dict(sorted(exits.items())), "exit_total": len(m.exits), "disk": m.disk,
        "port_names": dict(sorted(ports.items())),
        "kernel_exits": _kernel_exit_counts(m),
        "trace_events": len(m.trace.events),
        "guest": {k: v.hex() if isinstance(v, (bytes, bytearray)) else v for k, v in m.guest_result().items()},
        "check": image_check(m),
    }


def _kernel_exit_counts(m: Any) -> dict:
    """Exits handled inside the (emulated) kernel, by reason; empty on the real engine (invisible there)."""
    from .trace.kernel_exits import count_kernel_exits
    return dict(sorted(count_kernel_exits(m.kernel_exits).items()))


def _runs(sectors: list[int]) -> str:
    """Sector numbers for people: runs as first..last, with the count ('0..255 (256)', '3, 7..9 (4)')."""
    if not sectors:
        return "none"
    parts, start = [], sectors[0]
    for prev, cur in zip(sectors, sectors[1:] + [None]):
        if cur != prev + 1 if cur is not None else True:
            parts.append(str(start) if start == prev else f"{start}..{prev}")
            start = cur
    return f"{', '.join(parts)} ({len(sectors)})"


def format_report(r: dict) -> str:
    out = [f"vmio-edu trace: op={r['op']} lba={r['lba']} sectors={r['sectors']} engine={r['engine']} "
           f"disk={r['disk']}", "",
           "Stages by layer and thread (trace point calls):"]
    for layer, threads in r["stages"].items():
        cells = ", ".join(f"{t}: {n}" for t, n in threads.items())
        out.append(f"  {layer:<16} {cells}")
        out.append(f"  {'':<16} {' → '.join(r['functions'].get(layer, [])[:12])}")
    out += ["", f"VM exits seen by QEMU: {r['exit_total']}"]
    names = r.get("port_names", {})
    out += [f"  {n:>6}  {k}" + (f"  ({names[k.rsplit('=', 1)[1]]})" if "port=" in k and k.rsplit("=", 1)[1] in names
                                else "") for k, n in r["exits"].items()]
    if r.get("kernel_exits"):
        out += ["VM exits handled in the kernel (the vCPU went straight back in):"]
        out += [f"  {n:>6}  {k}" for k, n in r["kernel_exits"].items()]
    c = r["check"]
    out += ["", f"Sectors written: {_runs(c['sectors_written'])}; sectors changed in the image: "
                f"{_runs(c['sectors_changed'])}"]
    out.append("Image check: OK, the image holds exactly the bytes the guest wrote" if c["ok"]
               else "Image check: FAILED\n  " + "\n  ".join(c["problems"]))
    out.append(f"({r['trace_events']} trace events recorded)")
    return "\n".join(out)


# -- compare ------------------------------------------------------------------------------------------
def run_engine(engine: str, **kw: Any) -> dict:
    """Run the default guest on one engine with layer timing; return its exits, image and costs."""
    import time

    from .machine import Machine
    from .trace.timing import LayerTimer

    timer = LayerTimer()
    with Machine(engine=engine, **kw) as m:
        timer.attach(m.sched)
        t0 = time.perf_counter()
        m.run()
        wall = time.perf_counter() - t0
        return {"engine": m.engine, "exits": list(m.exits), "image": m.image_bytes(0, 2048),
                "wall_s": wall, "shares": timer.shares(), "note": m.engine_note}


def first_divergence(a: list, b: list) -> int | None:
    """Index of the first exit where the two streams differ (or where one ends), else None."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x.key() != y.key():
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def cmd_compare(args: argparse.Namespace) -> int:
    from .errors import EngineUnavailable
    from .stacks import get_stack

    kw = dict(op=args.op, lba=args.lba, sectors=args.sectors, polling=args.polling, stack=args.stack,
              **_device_kw(args))
    emu = run_engine("unicorn", **kw)
    try:
        real = run_engine("kvm", **kw)
    except EngineUnavailable as e:
        raise VmioError(f"compare needs the real engine: {e}") from e
    i = first_divergence(emu["exits"], real["exits"])
    same_image = emu["image"] == real["image"]
    result = {"identical": i is None and same_image, "exits": len(emu["exits"]), "divergence": i,
              "image_identical": same_image, "engines": {}, "kernel": get_stack(args.stack).linux,
              "stack": get_stack(args.stack).name}
    for r in (emu, real):
        result["engines"][r["engine"]] = {
            "exits": len(r["exits"]), "wall_s": round(r["wall_s"], 4),
            "us_per_exit": round(1e6 * r["wall_s"] / max(1, len(r["exits"])), 1),
            "layer_share": {k: round(v, 3) for k, v in r["shares"].items()}}
    # RIP is not part of the exit key: where it differs, say how often and which host property explains it
    rips = sum(1 for x, y in zip(emu["exits"], real["exits"]) if x.rip != y.rip)
    if rips:
        result["rip_differs"] = rips
    if i is not None or rips:
        from .kvm.host_facts import host_properties
        result["host_properties"] = host_properties("kvm", args.stack)  # where this host's kernel is not the model's
    if i is not None:
        lo = max(0, i - 3)
        result["context"] = {e: [x.to_json() for x in r["exits"][lo:i + 2]]
                             for e, r in (("unicorn", emu), ("kvm", real))}
    if args.format == "json":
        print(json.dumps(result, indent=1))
    else:
        print(_format_compare(result))
    return 0 if result["identical"] else 1


def _format_compare(r: dict) -> str:
    if r["identical"]:
        out = [f"identical: {r['exits']} exits (reason, direction, size, port, count and data), "
               "and the disk images are byte-for-byte equal"]
    elif r["divergence"] is None:
        out = [f"exits identical ({r['exits']}), but the disk images differ"]
    else:
        out = [f"first divergence at exit {r['divergence']}:"]
        for engine, xs in r["context"].items():
            out.append(f"  {engine}:")
            out += [f"    {json.dumps(x)}" for x in xs]
    if r["divergence"] is not None or r.get("rip_differs"):
        if r.get("rip_differs"):
            out.append(f"RIP differs at {r['rip_differs']} of the exits:")
        from .kvm.host_facts import MODELS, WHAT
        model = MODELS.get(r.get("stack", "1.6.1"), MODELS["1.6.1"])
        for fact, what in r.get("host_properties", {}).items():
            ours = WHAT.get((fact, model.get(fact)), "")
            out.append(f"  this host's /dev/kvm ({fact}): {what}")
            out.append(f"    {r.get('kernel', 'Linux 3.7')}, which the emulated engine follows: {ours or 'it does not'}")
    for engine, e in r["engines"].items():
        out.append(f"\n{engine}: {e['exits']} exits in {e['wall_s']} s = {e['us_per_exit']} us per exit")
        out += [f"  {layer:<16} {share:6.1%}" for layer, share in e["layer_share"].items()]
    return "\n".join(out)


# -- exits --------------------------------------------------------------------------------------------
def cmd_exits(args: argparse.Namespace) -> int:
    from .machine import Machine

    try:
        with open(args.guest, "rb") as f:
            code = f.read()
    except OSError as e:
        raise VmioError(f"cannot read guest binary {args.guest!r}: {e.strerror}") from e
    if not code:
        raise VmioError(f"guest binary {args.guest!r} is empty")
    with Machine(code, mode=args.mode, load=args.load, entry=args.entry, engine=args.engine,
                 max_exits=args.max_exits, stack=args.stack, **_device_kw(args)) as m:
        if m.engine_note:
            print(f"note: {m.engine_note}", file=sys.stderr)
        try:
            m.run()
        finally:
            for x in m.exits:
                print(json.dumps(x.to_json()))
    return 0


# -- diff-paths ---------------------------------------------------------------------------------------
def cmd_diff_paths(args: argparse.Namespace) -> int:
    """The same guest on both stacks, aligned stage by stage (vmio_edu.trace.diffreport)."""
    from .stacks import get_stack
    from .trace.diffreport import diff_paths, format_text

    names = [x.strip() for x in args.stacks.split(",")]
    if len(names) != 2 or not all(names):
        raise VmioError(f"--stacks takes two stacks, OLD,NEW (e.g. 1.6.1,10.2), not {args.stacks!r}")
    old, new = (get_stack(x).name for x in names)
    brk = None if args.brk.lower() == "none" else args.brk
    r = diff_paths(op=args.op, lba=args.lba, sectors=args.sectors, engine=args.engine, brk=brk, old=old,
                   new=new, seed=args.seed)
    for run in (r.old, r.new):
        if run.note:
            print(f"note ({run.stack}): {run.note}", file=sys.stderr)
    print(json.dumps(r.to_json(), indent=1) if args.format == "json" else format_text(r, args.changes))
    return 0 if r.old.image_ok and r.new.image_ok else 1


# -- bench --------------------------------------------------------------------------------------------
def cmd_bench(args: argparse.Namespace) -> int:
    from . import bench

    engines = ("unicorn", "kvm") if args.engine == "both" else (args.engine,)
    r = bench.run_bench(quick=args.quick, engines=engines,
                        progress=lambda msg: print(f"bench: {msg}", file=sys.stderr, flush=True))
    if args.plot:
        bench.plot(r, args.plot)
    if args.format == "json":
        print(json.dumps(r, indent=1))
    else:
        print(bench.format_markdown(r) if args.format == "markdown" else bench.format_text(r))
    return 0


# -- paths --------------------------------------------------------------------------------------------
def cmd_paths(args: argparse.Namespace) -> int:
    from . import paths
    from .errors import EngineUnavailable

    engines = paths.ENGINES if args.engine == "both" else (args.engine,)
    try:
        doc = paths.run_paths(op=args.op, lba=args.lba, sectors=args.sectors, engines=engines,
                              paths=args.paths or paths.PATH_IDS, seed=args.seed,
                              per_request=args.per_request, depth=args.depth, indirect=args.indirect,
                              progress=lambda msg: print(f"paths: {msg}", file=sys.stderr, flush=True))
    except EngineUnavailable as e:
        raise VmioError(f"--engine {args.engine} needs the real engine: {e}") from e
    if args.format == "json":
        print(json.dumps(doc, indent=1))
    else:
        print(paths.format_text(doc))
    ok = all(r["image_ok"] for r in doc["runs"]) and all(
        a["exits"] and a["qemu_stages"] for a in doc.get("agree", {}).values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
