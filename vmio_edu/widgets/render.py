"""Rendering without a browser: a parked debugger's state → HTML strings and plain data.

The panel (panel.py) only puts these strings into widgets, so everything a learner sees can be tested
with plain function calls. Nothing here changes the model: each function reads a `Stop`, a backtrace, a
view or the recorded trace, and returns new strings, lists and dicts.
"""
from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..trace.argfmt import HEX_NAMES, IOCTL_NAMES, format_args, format_value
from ..trace.tracepoint import LAYERS, REGISTRY

# Layer colours, in path order (the timeline, the backtrace and the picker share them).
# Ten hues far apart (readable on the light and the dark JupyterLab theme alike).
LAYER_COLOURS = {
    "guest": "#9467bd", "vmx": "#1f77b4", "kvm": "#17becf", "qemu-cpu": "#2ca02c", "qemu-memory": "#bcbd22",
    "qemu-pci": "#aec7e8", "qemu-ide": "#ff7f0e", "qemu-virtio": "#ffbb78", "qemu-block": "#d62728",
    "qemu-threadpool": "#8c564b", "qemu-event-loop": "#e377c2",
    "host": "#7f7f7f",
}


def esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def show(v: Any) -> str:
    """One value as a learner reads it: ints as decimal with hex beside them when that helps."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v} (0x{v:x})" if v > 9 else str(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        b = bytes(v)
        return b[:16].hex(" ") + (f" … ({len(b)} bytes)" if len(b) > 16 else "")
    return str(v)


def layer_badge(layer: str) -> str:
    colour = LAYER_COLOURS.get(layer, "#999")
    return (f'<span class="vmio-layer" style="background:{colour};color:#fff;border-radius:3px;'
            f'padding:0 4px;font-size:85%">{esc(layer)}</span>')


# -- the stop and its backtrace -------------------------------------------------------------------------
def stop_header(stop: Any) -> str:
    """One line: where the debugger stopped and why (a `Stop` of vmio_edu.trace.debugger, or None)."""
    if stop is None or (stop.function is None and stop.reason == "start"):
        return '<div class="vmio-stop">not started: press Continue (to a breakpoint) or Step</div>'
    if stop.reason == "halted":
        summary = getattr(stop, "summary", None) or {}
        ok = summary.get("success", True)
        text = stop.message if summary and stop.message else (
            "the guest ran its last instruction (hlt) and halted normally. " + halt_summary(stop))
        mark, cls = ("\u2714", "vmio-halted") if ok else ("\u26a0", "vmio-halted vmio-halted-failed")
        return (f'<div class="vmio-stop {cls}"><span class="vmio-tick">{mark}</span> #{esc(stop.index)} '
                f'<b>the guest finished</b>: {esc(text)}</div>')
    bad = stop.reason in ("error", "condition-error", "interrupted")
    cls = "vmio-stop-msg vmio-bad" if bad else "vmio-stop-msg"
    msg = f' <span class="{cls}">{esc(stop.message)}</span>' if stop.message else ""
    if stop.function is None:
        return (f'<div class="vmio-stop">#{esc(stop.index)} <b>{esc(stop.reason)}</b>'
                f'{msg or " (the end of the recorded run)"}</div>')
    verb = {"leave": "returning from ", "event": "event "}.get(stop.kind or "", "")
    where = f" at <code>{esc(stop.file)}:{esc(stop.line)}</code>" if stop.file else ""
    why = esc(stop.reason) + (f" {esc(stop.breakpoint.number)}" if stop.breakpoint is not None else "")
    return (f'<div class="vmio-stop">#{esc(stop.index)} {verb}<b class="vmio-stop-fn">{esc(stop.function)}</b> '
            f'{layer_badge(stop.layer)} on thread <b>{esc(stop.thread)}</b>{where} '
            f'<i class="vmio-dim">({why})</i>{msg}</div>')


def halt_summary(stop: Any) -> str:
    """What the run did, in one sentence, for the halted stop (from its views; empty if they fail)."""
    try:
        v = stop.views
        exits = v["exits"].get("count", 0)
        disk = v["disk"]
        changed = disk.get("sectors_changed", [])
        what = (f"It wrote sector{'s' if len(changed) != 1 else ''} {', '.join(map(str, changed))} of the disk"
                if changed else "It left the disk as it was (a read, or no I/O)")
        return f"{what}, with {exits} exits to QEMU (KVM_RUN returns) on the way."
    except Exception:  # noqa: BLE001 - a summary must never hide the halt itself
        return ""


_TD = ' style="padding:0 10px 0 0;white-space:nowrap;line-height:1.3"'


def backtrace_html(frames: Sequence[Any]) -> str:
    """The backtrace, innermost frame first: each frame's function with its arguments as gdb shows them
    (`port=0x1f0`, `type=KVM_RUN`), its real file:line under it, its layer as a coloured edge.

    The thread is named once when all frames share it (a thread's stack), per frame otherwise.
    """
    if not frames:
        return '<div class="vmio-backtrace"><i>no frames (not stopped inside a traced function)</i></div>'
    threads = {f.thread for f in frames}
    per_frame_thread = len(threads) > 1
    rows = []
    for f in frames:
        args = esc(format_args(f.args or {}, f.function))
        where = f"{esc(f.file)}:{esc(f.line)}" if f.file else "?"
        colour = LAYER_COLOURS.get(f.layer, "#999")
        thread = f" on {esc(f.thread)}" if per_frame_thread else ""
        rows.append(
            f'<div class="vmio-frame" data-function="{esc(f.function)}" data-layer="{esc(f.layer)}" '
            f'style="border-left:4px solid {colour};padding-left:4px;margin-bottom:2px" title="layer {esc(f.layer)}">'
            f'<span class="vmio-dim">#{f.level}</span> <b>{esc(f.function)}</b> <span class="vmio-dim">({args})</span>'
            f'<br><code class="vmio-dim">{where}</code> <span style="color:{colour}">{esc(f.layer)}</span>{thread}</div>')
    title = "" if per_frame_thread else f'<div>thread <b>{esc(next(iter(threads)))}</b></div>'
    return f'<div class="vmio-backtrace">{title}' + "".join(rows) + "</div>"


# -- the breakpoint picker --------------------------------------------------------------------------------
def all_tracepoints() -> list:
    """REGISTRY with every modelled module imported, so the picker lists every real function.

    Trace points register when their module is imported; a machine imports only what it uses.
    """
    import importlib
    import pkgutil

    import vmio_edu

    for mod in pkgutil.walk_packages(vmio_edu.__path__, "vmio_edu."):
        if mod.name.startswith(("vmio_edu.widgets", "vmio_edu.grading", "vmio_edu.cli")):
            continue
        try:
            importlib.import_module(mod.name)
        except Exception:  # noqa: BLE001 - an optional engine (no usable ctypes KVM) must not hide the rest
            pass
    return REGISTRY


def breakpoint_choices(registry: Iterable[Any]) -> dict[str, list[tuple[str, str]]]:
    """Real function names grouped by layer, in path order: layer → [(label, name)], sorted by name.

    The label shows where the function lives (`bdrv_aio_writev  block.c:3500`). A name present in
    several layers (QEMU's and Linux's kvm_set_irq) is listed under each.
    """
    groups: dict[str, dict[str, str]] = {layer: {} for layer in LAYERS}
    for tp in registry:
        where = f"  {tp.source}" if tp.source else ""
        groups.setdefault(tp.layer, {})[tp.name] = f"{tp.name}{where}"
    return {layer: sorted(((label, name) for name, label in fns.items()), key=lambda x: x[1])
            for layer, fns in groups.items() if fns}


# -- the swimlane timeline --------------------------------------------------------------------------------
GUEST_LANE = "guest"  # the guest's own lane: when it runs (VM entry to VM exit) and each exit's instruction
OVERVIEW_BINS = 600  # the whole-trace strip is drawn in at most this many cells per lane


def _entries(events: Sequence[tuple]) -> Any:
    """(index, trace point id, thread) of every entry. A columnar trace lists them without building every
    event (`events.entries()`, vmio_edu.trace.events); a plain sequence is read event by event."""
    if hasattr(events, "entries"):
        return events.entries()
    return ((i, ev[1], ev[2]) for i, ev in enumerate(events) if ev[0] == 0)


def timeline_data(events: Sequence[tuple], registry: Sequence[Any], index: int | None,
                  bins: int = OVERVIEW_BINS) -> dict:
    """The recorded trace as one lane per thread, coloured by layer, plus a lane for the guest itself.

    Only the entries are read (`_entries`). Each thread lane is cut into at most `bins` cells of
    consecutive events; a cell takes the colour of the rarest layer entered in it (so the single
    `sys_pwrite64` on a worker stays visible among thousands of KVM entries), and neighbouring cells of
    one layer merge into one segment `[lane, start, end, function, entries, layer, goto]` (`function` and
    `goto`: the first entry of that layer in the segment, where a click goes).
    The guest lane has a segment for each stretch the guest ran: from the entry into `vmx_vcpu_run` (VM
    entry) to the VM exit just after it; `exits` lists `[exit index, label]`, the label naming the exit
    handler `vmx_handle_exit` chose (`VM exit -> handle_io`).
    """
    n = len(events)
    step = max(1, -(-n // max(1, bins)))
    threads: list[str] = []
    counts: dict[tuple[str, str], int] = {}
    cells: dict[tuple[str, int], dict[str, list]] = {}  # (thread, bin) -> layer -> [first, function, n, last]
    guest_segs: list[list] = []
    exits: list[list] = []
    running: dict[str, int] = {}  # vCPU thread -> index of its vmx_vcpu_run entry (the guest runs)
    dispatch: dict[str, bool] = {}  # vCPU thread -> the next entry is the exit handler
    for i, what, th in _entries(events):
        tp = registry[what]
        if th not in threads:
            threads.append(th)
        key = (th, tp.layer)
        counts[key] = counts.get(key, 0) + 1
        c = cells.setdefault((th, i // step), {})
        slot = c.get(tp.layer)
        if slot is None:
            c[tp.layer] = [i, tp.name, 1, i]
        else:
            slot[2] += 1
            slot[3] = i
        if dispatch.pop(th, False) and exits:
            exits[-1][1] = f"VM exit \u2192 {tp.name}"
        start = running.pop(th, None)
        if start is not None:  # the guest ran from the VM entry to the exit right after it
            guest_segs.append([0, start, start + 1, "the guest runs", 1, "guest", start])
            exits.append([start + 1, "VM exit"])
        if tp.name == "vmx_vcpu_run":
            running[th] = i
        elif tp.name == "vmx_handle_exit":
            dispatch[th] = True
    threads.sort(key=_thread_rank)
    lane_of = {th: k + 1 for k, th in enumerate(threads)}  # lane 0 is the guest
    segments: list[list] = []
    for (th, _b), c in sorted(cells.items(), key=lambda kv: (lane_of[kv[0][0]], kv[0][1])):
        lane = lane_of[th]
        layer = min(c, key=lambda la: (counts[(th, la)], -_layer_rank(la)))
        first, fn, _k, _last = c[layer]
        start, end = min(v[0] for v in c.values()), max(v[3] for v in c.values())
        entries = sum(v[2] for v in c.values())
        prev = segments[-1] if segments else None
        if prev is not None and prev[0] == lane and prev[5] == layer:
            prev[2] = end
            prev[4] += entries
        else:
            segments.append([lane, start, end, fn, entries, layer, first])
    segments = guest_segs + segments
    segments.sort(key=lambda s: (s[1], s[0]))
    lanes = [{"thread": GUEST_LANE, "label": "guest (vcpu0 code)", "colour": LAYER_COLOURS["guest"]}]
    lanes += [{"thread": th, "label": th, "colour": "#999"} for th in threads]
    used = [la for la in LAYERS if any(la == s[5] for s in segments)]
    return {"lanes": lanes, "segments": segments, "exits": exits, "length": n,
            "index": -1 if index is None else int(index),
            "layers": [{"layer": la, "colour": LAYER_COLOURS.get(la, "#999")} for la in used]}


def _exit_label(p: Mapping) -> str:
    reason = p.get("reason")
    name = _VMX_EXIT_NAMES.get(reason, f"exit reason {reason}")
    rip = p.get("rip")
    return f"VM exit {name}" + (f" at rip {rip:#x}" if isinstance(rip, int) else "")


_VMX_EXIT_NAMES = {0: "EXCEPTION_NMI", 1: "EXTERNAL_INTERRUPT", 7: "PENDING_INTERRUPT", 12: "HLT",
                   30: "IO_INSTRUCTION", 48: "EPT_VIOLATION"}


def timeline_detail(events: Sequence[tuple], registry: Sequence[Any], index: int | None,
                    lanes: Sequence[Mapping], window: int = 60) -> list[list]:
    """Entries within `window` events of `index`, for the zoom strip:
    `[lane, event index, label, depth, layer]` (lanes as timeline_data's: one per thread, 0 the guest).

    The event at `index` itself is included whatever its kind (a return is labelled `fn (return)`, a
    VM exit is put in the guest lane)."""
    if index is None or index < 0:
        return []
    lane_of = {ln["thread"]: k for k, ln in enumerate(lanes)}
    out = []
    for i in range(max(0, index - window), min(len(events), index + window + 1)):
        kind, what, thread, depth, payload = events[i]
        if kind == 2:
            if what == "kvm_exit":
                out.append([0, i, _exit_label(dict(payload or ())), 0, "guest"])
            elif i == index:
                out.append([lane_of.get(thread, 0), i, str(what), depth, "event"])
            continue
        if kind == 1 and i != index:
            continue
        tp = registry[what]
        label = tp.name if kind == 0 else f"{tp.name} (return)"
        out.append([lane_of.get(thread, 0), i, label, depth, tp.layer])
    return out


def _layer_rank(layer: str) -> int:
    return LAYERS.index(layer) if layer in LAYERS else len(LAYERS)


def _thread_rank(thread: str) -> tuple:
    # vCPUs first, then the main loop, then workers in number order
    head = 0 if thread.startswith("vcpu") else 1 if thread == "main" else 2
    digits = "".join(c for c in thread if c.isdigit())
    return head, int(digits) if digits else 0, thread


# -- views ------------------------------------------------------------------------------------------------
# `stop.views` (vmio_edu.trace.views) maps each name to plain data; these turn one view into HTML.
VIEW_HELP = {
    "registers": "the guest CPU's registers and the instructions around RIP",
    "vmcs": "the VMCS: what the processor recorded about the last VM exit (reason, qualification)",
    "kvm_run": "struct kvm_run: the page KVM shares with QEMU to say why KVM_RUN returned",
    "ide": "the IDE drive's registers, status bits and its PIO buffer (io_buffer)",
    "qiov": "QEMUIOVector: the list of buffers a block request reads into or writes from",
    "coroutines": "QEMU coroutines: functions with their own stack that pause and resume (block I/O)",
    "thread_pool": "the pool of worker threads that run blocking pwrite/pread off the main loop",
    "aio": "AioContext: what the main loop waits on: file descriptors, and bottom halves (callbacks "
           "another thread schedules for the main loop to run soon)",
    "disk": "the disk image's bytes that changed, and each byte's journey (click one)",
    "threads": "every model thread: running, ready or blocked, and where",
    "block": "the block layer: the disk's driver stack (raw format on a file) and its requests",
    "exits": "the VM exits QEMU has seen so far (each return of KVM_RUN)",
    "virtqueue": "a virtio disk's queue in guest RAM: each request's descriptor chain (header, data, status), "
                 "the avail and used rings, and whether the driver or the device owns each descriptor",
}
VIEW_TITLES = {"registers": "CPU", "vmcs": "VMCS", "kvm_run": "kvm_run", "ide": "IDE", "qiov": "QEMUIOVector",
               "coroutines": "Coroutines", "thread_pool": "Thread pool", "aio": "AioContext", "disk": "Disk",
               "threads": "Threads", "block": "Block", "exits": "Exits", "virtqueue": "Virtqueue"}
FIELD_COLOURS = ("#ffd6a5", "#caffbf", "#9bf6ff", "#bdb2ff", "#ffc6ff", "#fdffb6", "#a0c4ff", "#ffadad",
                 "#d0f4de", "#e4c1f9", "#fcf6bd")
_HEX_KEYS = {"bytes", "before", "after", "data", "next_bytes"}
_PRE = "margin:0;white-space:pre;overflow-x:auto;font-size:90%"


def view_title(name: str) -> str:
    return VIEW_TITLES.get(name, name)


def view_html(name: str, view: Any, prev: Any = None) -> str:
    """One view as HTML: registers with the disassembly, VMCS with the qualification decoded, kvm_run's
    fields, IDE status bits and buffer position, disk sectors as a diff, threads as cards; the rest as
    tables. With `prev` (the same view at the previous stop) what changed is named and marked."""
    if name == "registers":
        body = registers_html(view, prev)
        # the disassembly and the decoded flags follow from the registers: name the registers only
        prev = None if prev is None else {"regs": prev.get("regs"), "rflags": (prev.get("rflags") or {}).get("set")}
        view = {"regs": view.get("regs"), "rflags": (view.get("rflags") or {}).get("set")}
    elif name == "threads":
        body = threads_html(view, prev)
    elif name == "virtqueue":
        from .render_virtqueue import virtqueue_html
        body = virtqueue_html(view, prev)
    else:
        special = {"vmcs": vmcs_html, "kvm_run": kvm_run_html, "disk": disk_html, "qiov": qiov_html}.get(name)
        body = ide_html(view, prev) if name == "ide" else special(view) if special else value_html(view)
    return f'<div class="vmio-view vmio-view-{esc(name)}">{changes_html(prev, view)}{body}</div>'


def value_html(v: Any, key: str = "") -> str:
    """Any plain-data value as HTML: dicts as key/value tables, lists of dicts as tables, hex byte strings
    (keys like `bytes`, `before`, `after`) as a hex dump."""
    if isinstance(v, Mapping):
        if not v:
            return "<i>empty</i>"
        rows = "".join(f'<tr><th style="text-align:left;padding:0 8px 0 0;vertical-align:top;line-height:1.3">'
                       f'{esc(k)}</th><td style="padding:0;line-height:1.3">{value_html(x, str(k))}</td></tr>'
                       for k, x in v.items())
        return f'<table class="vmio-kv" style="border-collapse:collapse">{rows}</table>'
    if isinstance(v, str) and key in _HEX_KEYS and len(v) > 32 and _is_hex(v):
        data = bytes.fromhex(v)
        more = f"\n… {len(data) - 256} more bytes" if len(data) > 256 else ""
        return f'<pre style="{_PRE}">{esc(hexdump(data[:256]))}{more}</pre>'
    if isinstance(v, (list, tuple)):
        if not v:
            return "<i>none</i>"
        if all(isinstance(x, Mapping) for x in v):
            if all("function" in x and "level" in x for x in v):  # a backtrace: one line per frame
                return "".join(
                    f'<div class="vmio-card-frame">#{esc(x["level"])} <b>{esc(x["function"])}</b> '
                    f'<span class="vmio-dim">({esc(format_args(x.get("args") or {}, x["function"]))}) '
                    f'{esc(x.get("file", ""))}:{esc(x.get("line", ""))}</span></div>' for x in v)
            # one card per element (a table with a column per key was wider than the column it sits in)
            return ('<div class="vmio-cards">' + "".join(f'<div class="vmio-card">{value_html(x)}</div>' for x in v)
                    + "</div>")
        more = f" … ({len(v)} items)" if len(v) > 64 else ""
        return esc(", ".join(show(x) for x in v[:64])) + more
    if isinstance(v, int) and not isinstance(v, bool) and (key in HEX_NAMES or key in IOCTL_NAMES
                                                           or key in ("direction", "exit_reason")):
        return esc(format_value(key, v))  # port=0x1f0, rip=0x11bf, type=KVM_RUN: as the backtrace says
    return esc(show(v))


def _is_hex(s: str) -> bool:
    return len(s) % 2 == 0 and all(c in "0123456789abcdefABCDEF" for c in s)


def hexdump(data: bytes, base: int = 0, width: int = 16) -> str:
    lines = []
    for off in range(0, len(data), width):
        chunk = data[off:off + width]
        text = "".join(chr(c) if 32 <= c < 127 else "." for c in chunk)
        lines.append(f"{base + off:05x}  {chunk.hex(' '):<{width * 3}} {text}")
    return "\n".join(lines)


def row_table(values: Mapping, prev: Mapping | None = None) -> str:
    """A flat mapping as one row of names over one row of values (a register file on one line); with
    `prev`, the values that changed are marked."""
    head = "".join(f'<th{_TD} align="left">{esc(k)}</th>' for k in values)
    body = "".join(f"<td{_TD}><code" + (' class="vmio-changed"' if prev is not None and k in prev and prev[k] != v else "")
                   + f">{esc(v if not isinstance(v, int) or isinstance(v, bool) else hex(v))}</code></td>"
                   for k, v in values.items())
    return f'<table class="vmio-row" style="border-collapse:collapse"><tr>{head}</tr><tr>{body}</tr></table>'


def _details(summary: str, body: str) -> str:
    return f"<details><summary>{esc(summary)}</summary>{body}</details>"


# registers -------------------------------------------------------------------------------------------------
def disassembly_text(dis: Mapping, with_bytes: bool = True) -> str:
    """gdb's `x/i` style listing; the instruction at RIP is marked `=>` (the panel leaves the bytes out,
    as gdb does, to fit its column)."""
    rows = []
    for r in dis.get("rows", []):
        mark = "=>" if r.get("current") else "  "
        code = f"{r['bytes']:<16} " if with_bytes else ""
        rows.append(f"{mark} {r['address']:#07x}  {code}{r['mnemonic']} {r['op_str']}".rstrip())
    if dis.get("note"):
        rows.append(dis["note"])
    return "\n".join(rows)


def registers_html(view: Mapping, prev: Mapping | None = None) -> str:
    regs = view.get("regs", {})
    old = (prev or {}).get("regs", {})
    cells = [f"<td{_TD}><b>{esc(n)}</b></td><td{_TD}><code"
             + (' class="vmio-changed"' if n in old and old[n] != v else "") + f">{v:#018x}</code></td>"
             for n, v in regs.items()]
    grid = "".join("<tr>" + "".join(cells[i:i + 2]) + "</tr>" for i in range(0, len(cells), 2))
    fl = view.get("rflags", {})
    dis = view.get("disassembly", {})
    return (f'<div>{esc(view.get("engine", ""))} engine, {esc(view.get("mode", "?"))}-bit mode; '
            f'RFLAGS {fl.get("value", 0):#x} [{esc(" ".join(fl.get("set", [])))}]</div>'
            f'<table class="vmio-regs">{grid}</table>'
            f'<div><b>disassembly</b></div><pre class="vmio-disasm" style="{_PRE}">'
            f'{esc(disassembly_text(dis, with_bytes=False))}</pre>'
            + _details("segments, control registers, descriptor tables",
                       value_html({k: view[k] for k in ("segments", "control", "tables") if k in view})))


# VMCS ------------------------------------------------------------------------------------------------------
def vmcs_html(view: Mapping) -> str:
    q = view.get("exit_qualification")
    head = (f'<div>exit reason <b>{esc(view.get("exit_reason_name"))}</b> ({esc(view.get("exit_reason"))})'
            + (f", EXIT_QUALIFICATION <code>{q:#x}</code>" if isinstance(q, int) else "")
            + (f', instruction length {esc(view["instruction_length"])}' if "instruction_length" in view else "")
            + "</div>")
    note = f'<div class="vmio-dim">{esc(view["note"])}</div>' if view.get("note") else ""
    decoded = value_html(view.get("exit_qualification_decoded") or [])
    rest = {k: v for k, v in view.items() if k not in ("exit_qualification_decoded", "note")}
    return head + note + "<div><b>exit qualification, bit by bit</b></div>" + decoded + _details(
        "all fields", value_html(rest))


# kvm_run ---------------------------------------------------------------------------------------------------
def kvm_run_html(view: Mapping) -> str:
    parts = [f'<div>exit_reason <b>{esc(view.get("exit_reason_name"))}</b> ({esc(view.get("exit_reason"))})'
             " — the bytes with their fields are shown above</div>"]
    for k in ("io", "mmio"):
        if k in view:
            parts.append(f"<div><b>{k}</b></div>" + row_table(view[k]))
    pio = view.get("pio")
    if pio:
        note = " (truncated)" if pio.get("truncated") else ""
        parts.append(f'<div><b>PIO data page</b> at offset {esc(pio["data_offset"])}: {esc(pio["count"])} × '
                     f'{esc(pio["size"])} bytes{note}</div>')
    return "".join(parts)


def hex_region(title: str, data: bytes, base: int, fields: Sequence[tuple[str, int, int, Any]],
               width: int = 8) -> dict:
    """One region for the hex widget: bytes from `base` in rows of `width`, and `(name, offset, size, value)`
    fields over them (8 a row suits kvm_run, whose u64 fields are 8-byte aligned)."""
    return {"title": title, "base": base, "hex": bytes(data).hex(), "width": width,
            "fields": [{"name": n, "offset": o, "size": s, "value": show(v),
                        "colour": FIELD_COLOURS[k % len(FIELD_COLOURS)]}
                       for k, (n, o, s, v) in enumerate(fields)]}


def field_at(region: Mapping, offset: int) -> str | None:
    """The name of the field covering byte `offset` of a region (what the hex view highlights on hover)."""
    for f in region["fields"]:
        if f["offset"] <= offset < f["offset"] + f["size"]:
            return f["name"]
    return None


def kvm_run_regions(view: Mapping, prev: Mapping | None = None) -> list[dict]:
    """The kvm_run view as hex-widget regions: the head of `struct kvm_run` with its fields, and the
    used part of the PIO page with one field per element (clickable: the byte's journey)."""
    head = bytes.fromhex(view.get("bytes", ""))
    if not head:
        return []
    fields = [(f["name"], f["offset"], f["size"], f["value"]) for f in view.get("fields", [])]
    regions = [hex_region(f"struct kvm_run (first {len(head)} bytes)", head, 0, fields)]
    regions[0]["changed"] = changed_offsets((prev or {}).get("bytes"), head.hex())
    moved = set(regions[0]["changed"])
    for f in regions[0]["fields"]:
        f["changed"] = any(f["offset"] + j in moved for j in range(f["size"]))
    pio = view.get("pio")
    if pio:
        data, size, off = bytes.fromhex(pio["bytes"]), pio["size"] or 1, pio["data_offset"]
        shown = data[:512]
        elems = [(f"data[{i}]", off + i * size, size, int.from_bytes(shown[i * size:(i + 1) * size], "little"))
                 for i in range(len(shown) // size)]
        regions.append(hex_region(f"PIO page at data_offset {off}", shown, off, elems, width=16))
        regions[-1]["source"] = "pio"
    return regions


# IDE -------------------------------------------------------------------------------------------------------
try:
    from ..qemu.hw.ide.internal import STATUS_BITS  # (name, mask), BSY first, as hw/ide/internal.h
except ImportError:  # pragma: no cover - the IDE model is part of the package
    STATUS_BITS = (("BSY", 0x80), ("DRDY", 0x40), ("DF", 0x20), ("DSC", 0x10), ("DRQ", 0x08),
                   ("CORR", 0x04), ("IDX", 0x02), ("ERR", 0x01))


def ide_status_bits(status: int) -> list[tuple[str, bool]]:
    """The status register as (bit name, set) pairs, high bit first: 0x58 → DRDY, DSC and DRQ set."""
    return [(name, bool(status & mask)) for name, mask in STATUS_BITS]


def ide_status_html(status: int, prev: int | None = None) -> str:
    """The status register's bits; with `prev` (the status at the previous stop) the flipped ones marked."""
    flipped = 0 if prev is None else status ^ prev
    cells = "".join(
        f'<span class="vmio-bit {"on" if on else "off"}{" vmio-changed" if flipped & mask else ""}" '
        f'title="bit {mask.bit_length() - 1}" '
        f'style="display:inline-block;min-width:38px;text-align:center;margin-right:2px">{name}</span>'
        for (name, on), (_, mask) in zip(ide_status_bits(status), STATUS_BITS))
    return f'<div class="vmio-ide-status">status <code>0x{status:02x}</code> {cells}</div>'


def buffer_position_html(data_ptr: int, data_end: int, length: int) -> str:
    """Where the PIO window is in io_buffer: done | still to transfer | outside the window."""
    length = max(length, data_end, 1)
    done, todo = data_ptr / length * 100, max(0, data_end - data_ptr) / length * 100
    return (f'<div class="vmio-ide-buffer">io_buffer position {data_ptr} of {data_end} '
            f'({max(0, data_end - data_ptr)} bytes to go)'
            f'<div style="display:flex;width:100%;max-width:420px;height:10px;border:1px solid #999">'
            f'<div style="width:{done:.1f}%;background:#2a9d8f"></div>'
            f'<div style="width:{todo:.1f}%;background:#ffd166"></div></div></div>')


def ide_html(view: Mapping, prev: Mapping | None = None) -> str:
    drive = view.get("drive", {})
    cmd = drive.get("command") or {}
    buf = view.get("io_buffer", {})
    old_regs = ((prev or {}).get("drive") or {}).get("registers") if prev else None
    parts = [ide_status_html(view.get("status", 0), (prev or {}).get("status") if prev else None)]
    if cmd:
        parts.append(f'<div>command <b>{esc(cmd.get("name"))}</b> (<code>{cmd.get("opcode", 0):#04x}</code>), '
                     f'{esc(drive.get("addressing", ""))} sector {esc(drive.get("sector_num", ""))}, '
                     f'end_transfer_func {esc(drive.get("end_transfer_func"))}</div>')
    if buf:
        parts.append(buffer_position_html(buf.get("data_ptr", 0), buf.get("data_end", 0), buf.get("length", 0)))
    bus = view.get("bus", {})
    if bus:
        parts.append(f'<div>IRQ line {esc(bus.get("irq_level"))}, nIEN {esc(show(bus.get("nIEN")))}</div>')
    regs = drive.get("registers", {})
    parts.append("<div><b>task file</b></div>"
                 + row_table({k: v for k, v in regs.items() if not k.startswith("hob_")}, old_regs)
                 + row_table({k: v for k, v in regs.items() if k.startswith("hob_")}, old_regs))
    parts.append(_details("everything", value_html(view)))
    return "".join(parts)


# disk ------------------------------------------------------------------------------------------------------
def sector_diff_rows(before: bytes, after: bytes, width: int = 16) -> list[dict]:
    """Rows of a sector's bytes, before and after, with the offsets that changed: only rows with a change."""
    rows = []
    n = max(len(before), len(after))
    for off in range(0, n, width):
        a, b = before[off:off + width], after[off:off + width]
        changed = [i for i in range(max(len(a), len(b))) if a[i:i + 1] != b[i:i + 1]]
        if changed:
            rows.append({"offset": off, "before": a.hex(" "), "after": b.hex(" "), "changed": changed})
    return rows


def sector_diff_html(lba: int, before: bytes, after: bytes, max_rows: int = 8) -> str:
    rows = sector_diff_rows(before, after)
    if not rows:
        return f'<div class="vmio-sector">sector {lba}: unchanged</div>'
    out = [f'<div class="vmio-sector"><b>sector {lba}</b>: {sum(len(r["changed"]) for r in rows)} bytes '
           f'changed (− before, + now)<pre style="{_PRE}">']
    for r in rows[:max_rows]:
        after_cells = [f'<span style="background:#ffd166">{b}</span>' if i in r["changed"] else b
                       for i, b in enumerate(r["after"].split(" "))]
        out.append(f'{lba * 512 + r["offset"]:07x} − {esc(r["before"])}\n'
                   f'{"":7} + {" ".join(after_cells)}\n')
    if len(rows) > max_rows:
        out.append(f"… {len(rows) - max_rows} more rows\n")
    return "".join(out) + "</pre></div>"


def disk_html(view: Mapping) -> str:
    n = view.get("sectors_changed_count", 0)
    head = (f'<div>{n} sector{"" if n == 1 else "s"} changed'
            + (f': {esc(", ".join(map(str, view.get("sectors_changed", []))))}' if n else "")
            + f' <span class="vmio-dim">({esc(view.get("note", ""))})</span></div>')
    return head + "".join(sector_diff_html(s["lba"], bytes.fromhex(s["before"]), bytes.fromhex(s["after"]))
                          for s in view.get("sectors", []))


# -- what changed since the previous stop ----------------------------------------------------------------
def changed_paths(prev: Any, cur: Any, prefix: str = "", limit: int = 40) -> list[str]:
    """Dotted paths of the values that differ between two renderings of a view (`regs.rip`,
    `drive.registers.nsector`): what the panel highlights as changed since the previous stop."""
    out: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if len(out) >= limit:
            return
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for k in b:
                if k not in a:
                    out.append(f"{path}{k}")
                else:
                    walk(a[k], b[k], f"{path}{k}.")
            return
        if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b) and len(b) <= 64:
            for k, (x, y) in enumerate(zip(a, b)):
                walk(x, y, f"{path}{k}.")
            return
        if a != b:
            out.append(path.rstrip("."))

    walk(prev, cur, prefix)
    return out


def changes_html(prev: Any, cur: Any) -> str:
    if prev is None:
        return ""
    paths = changed_paths(prev, cur)
    if not paths:
        return '<div class="vmio-changes vmio-dim">unchanged since the previous stop</div>'
    shown = ", ".join(paths[:8]) + (f" and {len(paths) - 8} more" if len(paths) > 8 else "")
    return f'<div class="vmio-changes">changed since the previous stop: <span class="vmio-changed">{esc(shown)}</span></div>'


def changed_offsets(prev_hex: str | None, cur_hex: str) -> list[int]:
    """Positions of the bytes that differ between two hex strings (all of them if there was none)."""
    if prev_hex is None:
        return []
    a, b = bytes.fromhex(prev_hex), bytes.fromhex(cur_hex)
    return [i for i in range(len(b)) if i >= len(a) or a[i] != b[i]]


# -- threads ----------------------------------------------------------------------------------------------
STATE_HELP = {
    "running": "this thread is where the debugger stopped",
    "ready": "it could run now; the model runs one thread at a time, in a fixed order",
    "blocked": "it waits for something (a lock, poll(), a semaphore, the guest's halt)",
    "exited": "the thread has finished",
}


def threads_html(view: Mapping, prev: Mapping | None = None) -> str:
    """One card per model thread: its state (and why), and its top frames."""
    before = {t["name"]: t for t in (prev or {}).get("threads", [])}
    cards = []
    for t in view.get("threads", []):
        frames = t.get("backtrace", [])[:4]
        rows = "".join(f'<div class="vmio-card-frame">#{f["level"]} <b>{esc(f["function"])}</b> '
                       f'<span class="vmio-dim">{esc(f.get("file", ""))}:{esc(f.get("line", ""))}</span></div>'
                       for f in frames) or '<div class="vmio-dim">no frames</div>'
        more = len(t.get("backtrace", [])) - len(frames)
        old = before.get(t["name"])
        changed = " vmio-changed-card" if old is not None and (old["state"], old.get("why")) != (t["state"], t.get("why")) else ""
        cards.append(
            f'<div class="vmio-card vmio-thread-{esc(t["state"])}{changed}" data-thread="{esc(t["name"])}">'
            f'<div><b>{esc(t["name"])}</b> <span class="vmio-state" title="{esc(STATE_HELP.get(t["state"], ""))}">'
            f'{esc(t["state"])}</span></div><div class="vmio-dim">{esc(t.get("why", ""))}</div>{rows}'
            + (f'<div class="vmio-dim">… {more} more frames</div>' if more > 0 else "") + "</div>")
    bql = view.get("bql_owner")
    head = (f'<div class="vmio-dim">the big QEMU lock (BQL) is held by <b>{esc(bql)}</b></div>' if bql else
            '<div class="vmio-dim">nobody holds the big QEMU lock (BQL) now</div>')
    return head + f'<div class="vmio-cards">{"".join(cards)}</div>'


# -- byte regions for the hex view: disk, QEMUIOVector, io_buffer (clickable: provenance) -------------------
def disk_regions(view: Mapping, prev: Mapping | None = None, limit: int = 2) -> list[dict]:
    """The changed sectors as clickable hex regions at their image offsets."""
    old = {s["lba"]: s["after"] for s in (prev or {}).get("sectors", [])}
    out = []
    for s in view.get("sectors", [])[:limit]:
        r = hex_region(f"disk sector {s['lba']} (image offset {s['lba'] * 512:#x})", bytes.fromhex(s["after"]),
                       s["lba"] * 512, [], width=16)
        r.update(source="disk", addr_digits=6, changed=changed_offsets(old.get(s["lba"]), s["after"]))
        out.append(r)
    return out


def qiov_html(view: Mapping) -> str:
    """The in-flight requests as cards (who owns the QEMUIOVector, its elements, the thread pool's side),
    the block layer's tracked requests as rows; the bytes are in the hex view under it."""
    cards = []
    for req in view.get("requests", []):
        lines = [f'<div><b>{esc(req.get("owner"))}</b></div>']
        if "niov" in req:
            lines.append(f'<div>{esc(req["niov"])} element{"s" if req["niov"] != 1 else ""}, {esc(req.get("size"))} bytes</div>')
        if "func" in req:
            arg = req.get("arg") or {}
            what = ", ".join(f"{k}={format_value(k, v)}" for k, v in arg.items())
            lines.append(f'<div>{esc(req["func"])}({esc(what)}) <span class="vmio-dim">state</span> '
                         f'{esc(req.get("state"))} <span class="vmio-dim">on</span> {esc(req.get("worker") or "-")}, '
                         f'<span class="vmio-dim">then</span> {esc(req.get("cb"))}</div>')
        elif req.get("state"):  # a virtio request: what the device is doing with it
            lines.append(f'<div class="vmio-dim">{esc(req["state"])}</div>')
        for k, iov in enumerate(req.get("iov", []) or []):
            if "guest_phys" in iov:  # mapped in place from a descriptor (virtio)
                came = (f' (chain {esc(iov["head"])}, descriptor {esc(iov["descriptor"])})'
                        if "descriptor" in iov else "")
                lines.append(f'<div class="vmio-dim">iov[{k}]: {esc(iov.get("iov_len"))} bytes of guest RAM at '
                             f'{iov["guest_phys"]:#x}{came}</div>')
                continue
            lines.append(f'<div class="vmio-dim">iov[{k}]: {esc(iov.get("iov_len"))} bytes at '
                         f'{esc(iov.get("buffer"))} + {esc(iov.get("iov_offset"))}</div>')
        cards.append(f'<div class="vmio-card">{"".join(lines)}</div>')
    out = f'<div class="vmio-cards">{"".join(cards)}</div>' if cards else "<div><i>no request in flight</i></div>"
    tracked = view.get("tracked_requests") or []
    if tracked:
        rows = "".join(f'<div>{esc(t.get("bds"))}: {"write" if t.get("is_write") else "read"} sector '
                       f'{esc(t.get("sector_num"))} ×{esc(t.get("nb_sectors"))} (coroutine {esc(t.get("co"))})</div>'
                       for t in tracked)
        out += f'<div><b>tracked requests</b> <span class="vmio-dim">(block layer)</span>{rows}</div>'
    return out


def qiov_regions(view: Mapping, prev: Mapping | None = None, limit: int = 3) -> list[dict]:
    """Each distinct iovec buffer of the in-flight requests as a hex region (first 256 bytes); a buffer
    two requests share (the IDE request's io_buffer, handed to the thread pool) is shown once."""
    out = []
    old: dict[tuple, str] = {}
    for req in (prev or {}).get("requests", []):
        for iov in req.get("iov", []) or []:
            old[(iov.get("buffer"), iov.get("iov_offset"), iov.get("iov_len"))] = iov.get("bytes", "")
    seen: dict[tuple, dict] = {}
    for req in view.get("requests", []):
        for k, iov in enumerate(req.get("iov", []) or []):
            key = (iov.get("buffer"), iov.get("iov_offset"), iov.get("iov_len"))
            if key in seen:
                seen[key]["title"] += f"; also {req.get('owner')} iov[{k}]"
                continue
            if len(out) >= limit or not iov.get("bytes"):
                continue
            data = bytes.fromhex(iov["bytes"])
            if "guest_phys" in iov:  # a virtio buffer, mapped in place: addressed and followed by guest address
                title = f"{req.get('owner')}: iov[{k}] ({iov.get('iov_len')} bytes of guest RAM at {iov['guest_phys']:#x})"
                r = hex_region(title, data[:256], iov["guest_phys"], [], width=16)
                source = "guest"
            else:
                r = hex_region(f"{req.get('owner')}: iov[{k}] ({iov.get('iov_len')} bytes of {iov.get('buffer')})",
                               data[:256], 0, [], width=16)
                source = "qiov"
            prev_hex = old.get(key)
            r.update(source=source, changed=changed_offsets(prev_hex[:512] if prev_hex else None, data[:256].hex()))
            if len(data) > 256:
                r["more"] = f"… {len(data) - 256} more bytes"
            seen[key] = r
            out.append(r)
    return out


def io_buffer_region(view: Mapping, prev: Mapping | None = None) -> list[dict]:
    buf = view.get("io_buffer", {})
    hexs = buf.get("bytes", "")
    if not hexs:
        return []
    data = bytes.fromhex(hexs)[:512]
    r = hex_region(f"io_buffer (position {buf.get('data_ptr', 0)} of {buf.get('data_end', 0)})", data, 0, [],
                   width=16)
    prev_hex = (prev or {}).get("io_buffer", {}).get("bytes")
    r.update(source="io_buffer", changed=changed_offsets(prev_hex[:1024] if prev_hex else None, data.hex()))
    return [r]
