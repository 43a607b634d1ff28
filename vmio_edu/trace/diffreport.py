"""`vmio-edu diff-paths`: the same guest I/O on QEMU 1.6.1 / Linux 3.7 and on QEMU 10.2 / Linux 6.12.

    from vmio_edu.trace.diffreport import diff_paths, format_text
    result = diff_paths(op="write")          # runs the default guest on both stacks (recorded)
    print(format_text(result))               # or result.to_json(); vmio_edu.widgets.diff_view(result)

What it holds (`DiffResult`):
  * `rows`: the two paths aligned one stage per row (vmio_edu.trace.diffpaths: SAME, RENAMED, ADDED,
    REMOVED, MOVED, and which stages run shared code);
  * `backtraces`: gdb-style backtraces on each stack at matching stops: `--break bdrv_aio_writev` stops
    1.6.1 at `bdrv_aio_writev` and 10.2 at its counterpart `blk_aio_pwritev` (either name works);
  * `exits`: the VM exits that reached QEMU on each stack, by reason, direction, port and size, and the
    facts where the host kernels differ in what userspace sees (RIP at a plain OUT's exit, `rep ins`
    batching), measured on each stack and, where /dev/kvm is usable, on this host's real KVM.

The JSON form (`to_json()`, `vmio-edu diff-paths --format json`), schema 1; "old" is the first stack
(1.6.1), "new" the second (10.2):

    {"schema": 1, "command": "diff-paths", "op", "lba", "sectors",
     "stacks": {"old"|"new": {"stack", "qemu", "linux", "engine", "stages", "trace_events", "image_ok",
                              "problems" (the image check's findings), "engine_note"}},
     "summary": {"SAME"|"RENAMED"|"ADDED"|"REMOVED"|"MOVED": count},
     "rows": [{"kind", "old": stage|null, "new": stage|null, "shared": bool, "merged": ""|"old"|"new",
               "note"}],
       stage = {"name", "layer", "thread", "count", "depth", "first" (trace index), "parent" (index in
                that run's stage list), "caller", "coroutine", "file", "line", "shared"}
     "break": null | {"old"|"new": {"function", "thread", "index", "frames": [BtFrame JSON]} or
                                   {"function", "error"}},
     "exits": {"old_total", "new_total",
               "classes": [{"reason", "direction", "port" (-1: none), "size", "old", "new"}],
               "facts": [{"fact": "plain_out_rip", "old", "new"[, "host"]},
                         {"fact": "rep_ins_counts", "old", "new"[, "host_page_batch"]}],
               "notes": [sentences],
               "kernel_differences": [{"name", "what", "linux_3_7", "linux_6_12", "kvm_pvm" (each a value:
                                       a word such as "at"/"past", or a list of numbers),
                                       "kvm_pvm_differs_from_6_12", "why_3_7", "why_6_12", "where_6_12"}]}}

Schema 2 (from 1): `kernel_differences`' linux_3_7/linux_6_12/kvm_pvm are measured values, no longer prose;
the prose moved to why_3_7/why_6_12.

A key is only ever added to this shape; one that changes meaning or goes bumps `SCHEMA`.
"""
from __future__ import annotations

import os
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..errors import VmioError
from .diffpaths import Row, Stage, align, counterparts, reduce_stages, rename_table, summary
from .tracepoint import by_name

SCHEMA = 2  # bump when a JSON key changes meaning or goes
WIDTH = 100  # the text output fits this many columns
_PLAIN_OUT = (0xE6, 0xE7, 0xEE, 0xEF)  # out imm8,al / out imm8,ax / out dx,al / out dx,ax
DEFAULT_BREAK = {"write": "bdrv_aio_writev", "read": "bdrv_aio_readv"}


@dataclass
class StackRun:
    """One stack's run of the default guest: its stages, exits and what the guest saw."""

    stack: str
    qemu: str
    linux: str
    engine: str
    stages: list[Stage]
    exits: list[Any]  # ExitRecords
    plain_out_rip: str | None  # "past" / "at": RIP at the exit of a plain OUT (None: the run had none)
    rep_ins_counts: list[int]  # the count of each IN exit on the data port (rep insw batches)
    image_ok: bool
    note: str | None = None  # the engine's note (e.g. auto fell back to the emulated engine)
    events: int = 0
    # the recorded events (trace reader API), for figures: the run's `events`, then the machine's shutdown
    trace: Any = field(default=None, repr=False)
    problems: list[str] = field(default_factory=list)  # what the image check found (vmio-edu trace's words)

    def info(self) -> dict:
        return {"stack": self.stack, "qemu": self.qemu, "linux": self.linux, "engine": self.engine,
                "stages": len(self.stages), "trace_events": self.events, "image_ok": self.image_ok,
                "problems": self.problems, "engine_note": self.note}


@dataclass
class DiffResult:
    """Everything `diff-paths` found; `to_json()` is its stable JSON form."""

    op: str
    lba: int
    sectors: int
    old: StackRun
    new: StackRun
    rows: list[Row]
    break_names: tuple[str, str] | None = None
    backtraces: dict[str, Any] = field(default_factory=dict)  # "old"/"new" -> {"function", "frames"|"error"}
    host: dict[str, str] | None = None  # this host's /dev/kvm facts, when usable

    @property
    def summary(self) -> dict[str, int]:
        return summary(self.rows)

    def exit_table(self) -> list[dict]:
        """One entry per exit class (reason, direction, port, size) with its count on each stack."""
        a, b = exit_classes(self.old.exits), exit_classes(self.new.exits)
        return [{"reason": k[0], "direction": k[1], "port": k[2], "size": k[3], "old": a.get(k, 0),
                 "new": b.get(k, 0)} for k in sorted(set(a) | set(b), key=_class_order)]

    def kernel_facts(self) -> list[dict]:
        """The userspace-visible facts where kernels differ, on each stack (and this host's KVM)."""
        out = [{"fact": "plain_out_rip", "old": self.old.plain_out_rip, "new": self.new.plain_out_rip},
               {"fact": "rep_ins_counts", "old": self.old.rep_ins_counts, "new": self.new.rep_ins_counts}]
        if self.host is not None:
            out[0]["host"] = self.host.get("plain_out_rip")
            out[1]["host_page_batch"] = self.host.get("rep_ins_page_batch")
        return out

    def notes(self) -> list[str]:
        """Sentences on where the two stacks' exits differ, and why."""
        out = []
        o, n = self.old, self.new
        if o.plain_out_rip and n.plain_out_rip and o.plain_out_rip != n.plain_out_rip:
            where = next((d["where_6_12"] for d in self.kernel_differences() if d["name"] == "out_rip"), "")
            out.append(f"A plain OUT exits with RIP {o.plain_out_rip} the instruction on {o.stack} "
                       f"({o.linux}) and {n.plain_out_rip} it on {n.stack} ({n.linux}): 6.12's "
                       "kvm_fast_pio leaves RIP and complete_fast_pio_out skips the OUT on the next "
                       "KVM_RUN" + (f" ({where})." if where else "."))
        elif o.plain_out_rip and o.plain_out_rip == n.plain_out_rip and o.engine == n.engine == "kvm":
            out.append(f"Both stacks ran on this host's real KVM, so the kernel is the same: a plain OUT "
                       f"exits with RIP {o.plain_out_rip} the instruction on both.")
        if self.host is not None and n.engine != "kvm" and n.plain_out_rip \
                and self.host.get("plain_out_rip") not in (None, n.plain_out_rip):
            out.append(f"This host's /dev/kvm (kvm_pvm, not VMX) exits a plain OUT with RIP "
                       f"{self.host['plain_out_rip']} it, like Linux 3.7; Linux 6.12 on VMX leaves it "
                       f"{n.plain_out_rip} it (the emulated {n.stack} stack follows 6.12).")
        if o.rep_ins_counts != n.rep_ins_counts:
            out.append(f"The data-port rep insw batches differ: {o.rep_ins_counts} on {o.stack}, "
                       f"{n.rep_ins_counts} on {n.stack} (3.7 stops a batch at the page end; 6.12 "
                       "counts the room to it in bytes).")
        diff = [e for e in self.exit_table() if e["old"] != e["new"]]
        if not diff:
            out.append(f"Both stacks made the same exits to QEMU: {len(o.exits)} in all, class by class.")
        return out

    def kernel_differences(self) -> list[dict]:
        """The userspace-visible differences between Linux 3.7, Linux 6.12 (VMX) and this project's host
        (kvm_pvm), as vmio_edu.kvm.differences lists them: one measured value per kernel (each measured
        again by the tests on the models and on the real device). The comparison itself measures where
        they differ on this run (`notes`)."""
        from ..kvm.differences import DIFFERENCES
        return [d.to_json() for d in DIFFERENCES]

    def to_json(self) -> dict:
        return {
            "schema": SCHEMA, "command": "diff-paths", "op": self.op, "lba": self.lba, "sectors": self.sectors,
            "stacks": {"old": self.old.info(), "new": self.new.info()},
            "summary": self.summary,
            "rows": [r.to_json() for r in self.rows],
            "break": None if self.break_names is None else {
                "old": {"function": self.break_names[0], **self.backtraces.get("old", {})},
                "new": {"function": self.break_names[1], **self.backtraces.get("new", {})}},
            "exits": {"old_total": len(self.old.exits), "new_total": len(self.new.exits),
                      "classes": self.exit_table(), "facts": self.kernel_facts(), "notes": self.notes(),
                      "kernel_differences": self.kernel_differences()},
        }


# -- running ----------------------------------------------------------------------------------------------
def exit_classes(exits: list[Any]) -> Counter:
    """Exits counted by (reason, direction, port, size)."""
    return Counter((x.reason, x.direction or "", x.port if x.port is not None else -1, x.size or 0)
                   for x in exits)


def _class_order(k: tuple) -> tuple:
    return (k[0] != "IO", k[0], k[2], k[1], k[3])


def plain_out_rip(m: Any) -> str | None:
    """Where RIP was at the exit of the run's first plain (not string) OUT: "at" the instruction or
    "past" it, read from the guest's own bytes at that RIP; None if the run had no plain OUT."""
    for x in m.exits:
        if x.reason != "IO" or x.direction != "out" or x.count != 1 or x.rip is None:
            continue
        at = m.read_guest(x.rip, 2)
        if len(at) < 2:  # RIP outside guest RAM (a guest with paging elsewhere): no answer from its bytes
            continue
        op = at[1] if at[0] == 0x66 else at[0]
        if op in _PLAIN_OUT:
            return "at"
        before = m.read_guest(max(0, x.rip - 3), 3)
        if before[2] in (0xEE, 0xEF) or before[1] in (0xE6, 0xE7):
            return "past"
    return None


def run_stack(stack: str, *, op: str = "write", lba: int = 0, sectors: int = 1, engine: str = "unicorn",
              seed: int = 0) -> StackRun:
    """Run the default guest on `stack`, recorded, and reduce it (stages, exits, kernel facts)."""
    from ..imagecheck import image_check
    from ..machine import Machine

    with Machine(op=op, lba=lba, sectors=sectors, engine=engine, seed=seed, record=True, stack=stack) as m:
        m.run()
        data_port = 0x1F0
        check = image_check(m)
        return StackRun(m.stack.name, m.stack.qemu, m.stack.linux, m.engine, reduce_stages(m.trace.events),
                        list(m.exits), plain_out_rip(m),
                        [x.count for x in m.exits if x.reason == "IO" and x.direction == "in"
                         and x.port == data_port],
                        check["ok"], m.engine_note, len(m.trace.events), m.trace.events, check["problems"])


def break_frames(stack: str, function: str, *, op: str, lba: int, sectors: int, engine: str,
                 seed: int = 0) -> dict:
    """The backtrace at the first call of `function` on `stack`: {"thread", "index", "frames"} (frames as
    BtFrame JSON, innermost first; index: the stop's trace index), or {"error"} when the run does not
    reach it. An unknown function raises the debugger's VmioError (with close matches)."""
    from ..machine import Machine

    with Machine(op=op, lba=lba, sectors=sectors, engine=engine, seed=seed, stack=stack) as m:
        dbg = m.debugger()
        dbg.break_at(function)
        stop = dbg.cont()
        if stop.reason != "breakpoint":
            return {"error": f"{function} was not reached on {stack}: the guest halted first"}
        return {"thread": stop.thread, "index": stop.index, "frames": [f.to_json() for f in stop.backtrace]}


def break_pair(function: str, old: str, new: str) -> tuple[str, str]:
    """The functions to stop at on the two stacks for `--break FUNCTION` (either stack's name)."""
    if old == new:
        return function, function
    a, b = counterparts(function, rename_table())
    return a, b


def diff_paths(*, op: str = "write", lba: int = 0, sectors: int = 1, engine: str = "unicorn",
               brk: str | None = "", old: str = "1.6.1", new: str = "10.2", seed: int = 0,
               host: bool | None = None) -> DiffResult:
    """Run the default guest on both stacks and compare them (see the module doc).

    brk:  the function to stop at on both stacks (either stack's name; "" = the op's block-layer entry,
          bdrv_aio_writev / bdrv_aio_readv; None = no backtraces)
    host: also measure this host's /dev/kvm kernel facts (None: when /dev/kvm is usable)
    """
    if op not in ("write", "read"):
        raise VmioError(f"diff-paths compares one direction at a time: op must be 'write' or 'read', not {op!r}")
    if not 1 <= sectors <= 256:
        raise VmioError(f"sectors must be 1..256, not {sectors}")
    from ..stacks import STACKS, get_stack
    old, new = get_stack(old).name, get_stack(new).name
    if list(STACKS).index(old) > list(STACKS).index(new):
        raise VmioError(f"put the older stack first (--stacks {new},{old}): the rename table maps 1.6.1 names "
                        "to 10.2 names, and ADDED/REMOVED are said of the newer stack")
    kw = dict(op=op, lba=lba, sectors=sectors, engine=engine, seed=seed)
    a, b = run_stack(old, **kw), run_stack(new, **kw)
    rows = align(a.stages, b.stages, old_name=a.stack, new_name=b.stack)
    result = DiffResult(op, lba, sectors, a, b, rows)
    if brk is not None:
        name = brk or DEFAULT_BREAK[op]
        pair = break_pair(name, a.stack, b.stack)
        if not brk and a.stack == b.stack and not by_name(name, stack=a.stack):
            # a stack against itself, and the default (1.6.1's name) is not in it: that stack's entry
            pair = (counterparts(name, rename_table())[1],) * 2
        have = [bool(by_name(fn, stack=stack)) for fn, stack in ((pair[0], a.stack), (pair[1], b.stack))]
        if not any(have):
            break_frames(a.stack, pair[0], **kw)  # the debugger's error names it, with close matches
        result.break_names = pair
        for side, stack, fn, ok in (("old", a.stack, pair[0], have[0]), ("new", b.stack, pair[1], have[1])):
            result.backtraces[side] = break_frames(stack, fn, **kw) if ok else {
                "error": f"{fn} is not on the {stack} stack: the other stack's function has no counterpart here "
                         "(the rename table maps none to it)"}
    if host is None:
        host = os.access("/dev/kvm", os.R_OK | os.W_OK)
    if host:
        result.host = _host_facts()
    return result


def _host_facts() -> dict[str, str] | None:
    from ..errors import EngineUnavailable
    from ..kvm.host_facts import host_facts
    try:
        return dict(host_facts("kvm"))
    except (EngineUnavailable, VmioError, OSError):
        return None


# -- text ---------------------------------------------------------------------------------------------------
_NAME_W = 31  # x86_decode_emulated_instruction, the longest name on the path, fits


def _cut(s: str, w: int) -> str:
    return s if len(s) <= w else s[:w - 1] + "…"


def _cell(s: Stage | None) -> str:
    if s is None:
        return f"{'':<{_NAME_W}} {'':>4}"
    return f"{_cut(s.name, _NAME_W):<{_NAME_W}} {_count(s.count):>4}"


def _count(n: int) -> str:
    return f"×{n}" if n < 1000 else f"×{n // 1000}k"


def changed_rows(rows: list[Row]) -> list[Row]:
    """The rows that are not plain SAME, each run of them after the SAME row before it (its place)."""
    keep: list[int] = []
    for i, r in enumerate(rows):
        if r.kind != "SAME" or r.merged:
            if i and rows[i - 1].kind == "SAME" and not rows[i - 1].merged and (not keep or keep[-1] != i - 1):
                keep.append(i - 1)
            keep.append(i)
    return [rows[i] for i in keep]


def format_rows(rows: list[Row], old: str = "1.6.1", new: str = "10.2", changes_only: bool = False
                ) -> list[str]:
    """The aligned table, one stage per row, grouped by thread; every line fits WIDTH columns.
    `changes_only`: only `changed_rows`."""
    out = [f"{'kind':<7} {'layer':<15} {old:<{_NAME_W}} {'':>4} {new:<{_NAME_W}} {'':>4}".rstrip()]
    thread = None
    for r in changed_rows(rows) if changes_only else rows:
        t = (r.new or r.old).thread  # type: ignore[union-attr]
        if t != thread:
            thread = t
            out.append(f"── thread {t} " + "─" * (WIDTH - 12 - len(t)))
        layer = (r.new or r.old).layer  # type: ignore[union-attr]
        flag = ("=" if r.shared else " ") + ("~" if r.merged else " ")
        out.append(f"{r.kind:<7} {layer:<15} {_cell(r.old)} {_cell(r.new)} {flag}".rstrip())
        if r.note:
            out += textwrap.wrap(r.note, WIDTH, initial_indent=" " * 8 + "↳ ", subsequent_indent=" " * 10)
    return out


def format_frames(frames: list[dict]) -> list[str]:
    from .argfmt import format_args
    out = []
    for f in frames:
        where = f" at {f['file']}:{f['line']}" if f.get("file") else ""
        line = f"#{f['level']:<2} {f['function']} ({format_args(f.get('args') or {}, f['function'])}){where}"
        out += textwrap.wrap(line, WIDTH, subsequent_indent=" " * 8, break_on_hyphens=False)
    return out


def _batches(counts: list[int]) -> str:
    text = "+".join(map(str, counts))
    return text if len(text) <= 8 else f"{len(counts)} exits"


def format_text(r: DiffResult, changes_only: bool = False) -> str:
    """`vmio-edu diff-paths`'s text output (WIDTH columns); `changes_only`: leave out the SAME rows
    except the one before each change."""
    o, n = r.old, r.new
    s = r.summary
    out = [f"vmio-edu diff-paths: op={r.op} lba={r.lba} sectors={r.sectors} engine={o.engine}",
           f"  {o.stack} = {o.qemu} on {o.linux}: {len(o.stages)} stages ({o.events} trace events)",
           f"  {n.stack} = {n.qemu} on {n.linux}: {len(n.stages)} stages ({n.events} trace events)",
           "  rows: " + ", ".join(f"{v} {k}" for k, v in s.items()),
           "  flags: = the 10.2 model runs the 1.6.1 code unchanged; ~ calls made through a chain "
           "listed above", ""]
    out += format_rows(r.rows, o.stack, n.stack, changes_only)
    if r.break_names is not None:
        out.append("")
        for side, run, fn in (("old", o, r.break_names[0]), ("new", n, r.break_names[1])):
            bt = r.backtraces.get(side, {})
            out.append(f"Backtrace on {run.stack} ({run.qemu}) at {fn}"
                       + (f", thread {bt['thread']}:" if "thread" in bt else ":"))
            out += format_frames(bt["frames"]) if "frames" in bt else [f"  {bt.get('error', '?')}"]
    out += ["", f"VM exits seen by QEMU {'':<27} {o.stack:>8} {n.stack:>8}"]
    for e in r.exit_table():
        what = e["reason"] + (f" {e['direction']} port={e['port']:#x} size={e['size']}" if e["port"] >= 0 else "")
        mark = "" if e["old"] == e["new"] else "  ≠"
        out.append(f"  {what:<47} {e['old']:>8} {e['new']:>8}{mark}")
    out.append(f"  {'total':<47} {len(o.exits):>8} {len(n.exits):>8}")
    host = f"   (this host's /dev/kvm: {r.host['plain_out_rip']})" if r.host else ""
    out.append(f"  {'RIP at the exit of a plain OUT':<47} {o.plain_out_rip or '-':>8} "
               f"{n.plain_out_rip or '-':>8}{host}")
    if o.rep_ins_counts or n.rep_ins_counts:
        out.append(f"  {'data-port rep insw batches (words)':<47} {_batches(o.rep_ins_counts):>8} "
                   f"{_batches(n.rep_ins_counts):>8}")
    for note in r.notes():
        out += textwrap.wrap(note, WIDTH, initial_indent="  * ", subsequent_indent="    ")
    for run in (o, n):
        if run.note:
            out.append(f"note ({run.stack}): {run.note}")
        if not run.image_ok:
            out += textwrap.wrap(f"IMAGE CHECK FAILED on {run.stack}: "
                                 + ("; ".join(run.problems) or "the image does not hold what the guest wrote"),
                                 WIDTH, subsequent_indent="  ")
    return "\n".join(out)


__all__ = ["DiffResult", "StackRun", "break_pair", "changed_rows", "diff_paths", "exit_classes", "format_text",
           "plain_out_rip", "run_stack", "SCHEMA", "WIDTH"]
