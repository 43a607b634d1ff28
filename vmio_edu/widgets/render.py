"""Rendering without a browser: a parked debugger's state → HTML strings and plain data.

The panel (panel.py) only puts these strings into widgets, so everything a learner sees can be tested
with plain function calls. Nothing here changes the model: each function reads a `Stop`, a backtrace, a
view or the recorded trace, and returns new strings, lists and dicts.
"""
from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..trace.tracepoint import LAYERS

# Layer colours, in path order (the timeline, the backtrace and the picker share them).
LAYER_COLOURS = {
    "guest": "#6a4c93", "vmx": "#1982c4", "kvm": "#4267ac", "qemu-cpu": "#8ac926", "qemu-memory": "#52a675",
    "qemu-ide": "#ff924c", "qemu-block": "#ff595e", "qemu-threadpool": "#c5ca30", "host": "#7a7a7a",
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
    """One line: where the debugger stopped (or why it could not go on)."""
    if stop is None:
        return '<div class="vmio-stop">not started: press Continue or Step</div>'
    fn = getattr(stop, "function", None)
    index = getattr(stop, "index", None)
    reason = getattr(stop, "reason", None)
    if fn is None:
        text = esc(reason or "the guest halted")
        return f'<div class="vmio-stop"><b>{text}</b> at trace index {esc(index)}</div>'
    where = ""
    bt = getattr(stop, "backtrace", None) or []
    if bt and getattr(bt[0], "file", ""):
        where = f" at <code>{esc(bt[0].file)}:{esc(bt[0].line)}</code>"
    why = f' <i>({esc(reason)})</i>' if reason else ""
    return (f'<div class="vmio-stop">#{esc(index)} <b class="vmio-stop-fn">{esc(fn)}</b> '
            f'{layer_badge(stop.layer)} on thread <b>{esc(stop.thread)}</b>{where}{why}</div>')


def frame_text(f: Any) -> str:
    """gdb's line for one frame: `#2  ide_data_writew (addr=496, val=...) at hw/ide/core.c:1907`."""
    args = ", ".join(f"{k}={v}" for k, v in (f.args or {}).items())
    where = f" at {f.file}:{f.line}" if getattr(f, "file", "") else ""
    return f"#{getattr(f, 'level', 0):<2} {f.function} ({args}){where}"


def backtrace_text(frames: Sequence[Any]) -> str:
    return "\n".join(frame_text(f) for f in frames)


def backtrace_html(frames: Sequence[Any]) -> str:
    """The backtrace as a table, innermost frame first, each with its real file:line, layer and thread."""
    if not frames:
        return '<div class="vmio-backtrace"><i>no frames (not stopped inside a traced function)</i></div>'
    rows = []
    for i, f in enumerate(frames):
        level = getattr(f, "level", i)
        args = ", ".join(f"{esc(k)}={esc(v)}" for k, v in (f.args or {}).items())
        where = f"{esc(f.file)}:{esc(f.line)}" if getattr(f, "file", "") else "?"
        rows.append(
            f'<tr class="vmio-frame" data-function="{esc(f.function)}"><td>#{level}</td>'
            f'<td><b>{esc(f.function)}</b> <span style="color:#666">({args})</span></td>'
            f'<td><code>{where}</code></td><td>{layer_badge(f.layer)}</td><td>{esc(f.thread)}</td></tr>')
    return ('<div class="vmio-backtrace"><table style="border-collapse:collapse;font-size:90%">'
            '<tr><th>#</th><th>function (args)</th><th>file:line</th><th>layer</th><th>thread</th></tr>'
            + "".join(rows) + "</table></div>")


# -- the breakpoint picker --------------------------------------------------------------------------------
def breakpoint_choices(registry: Iterable[Any]) -> dict[str, list[tuple[str, str]]]:
    """Real function names grouped by layer, in path order: layer → [(label, name)], sorted by name.

    The label shows where the function lives (`bdrv_aio_writev  block.c:3500`). A name present in
    several layers (QEMU's and Linux's kvm_set_irq) is listed under each.
    """
    groups: dict[str, dict[str, str]] = {layer: {} for layer in LAYERS}
    for tp in registry:
        where = f"  {tp.source.file}:{tp.source.line}" if getattr(tp, "source", None) else ""
        groups.setdefault(tp.layer, {})[tp.name] = f"{tp.name}{where}"
    return {layer: sorted(((label, name) for name, label in fns.items()), key=lambda x: x[1])
            for layer, fns in groups.items() if fns}


def breakpoint_label(bp: Any) -> str:
    """How a breakpoint reads in the list, whether the debugger gives objects, dicts or strings."""
    if isinstance(bp, str):
        return bp
    get = bp.get if isinstance(bp, Mapping) else (lambda k, d=None: getattr(bp, k, d))
    parts = []
    if get("function"):
        parts.append(str(get("function")))
    if get("layer"):
        parts.append(f"layer={get('layer')}")
    if get("condition") is not None:
        parts.append("if " + getattr(get("condition"), "__name__", "condition"))
    num = get("number", get("id"))
    return (f"{num}: " if num is not None else "") + (" ".join(parts) or str(bp))


# -- the swimlane timeline --------------------------------------------------------------------------------
def timeline_data(events: Sequence[tuple], registry: Sequence[Any], index: int | None) -> dict:
    """The recorded trace as lanes of layer × thread, for the timeline widget.

    `events` are the recorder's tuples `(kind, what, thread, depth, payload)`; every entry (kind 0) is put
    in the lane of its trace point's layer and its thread. Consecutive entries in one lane merge into one
    segment `[lane, start, end, first function, entries]`, which keeps a 10 000-event trace small.
    `marks` are the single entries near `index` (±window), for the detail strip.
    """
    lanes: list[list[str]] = []
    lane_of: dict[tuple[str, str], int] = {}
    segments: list[list] = []
    for i, ev in enumerate(events):
        if ev[0] != 0:
            continue
        tp = registry[ev[1]]
        key = (tp.layer, ev[2])
        if key not in lane_of:
            lane_of[key] = len(lanes)
            lanes.append([tp.layer, ev[2]])
        lane = lane_of[key]
        last = segments[-1] if segments else None
        if last is not None and last[0] == lane:
            last[2] = i
            last[4] += 1
        else:
            segments.append([lane, i, i, tp.name, 1])
    order = sorted(range(len(lanes)), key=lambda k: (_layer_rank(lanes[k][0]), _thread_rank(lanes[k][1])))
    renum = {old: new for new, old in enumerate(order)}
    for s in segments:
        s[0] = renum[s[0]]
    lanes = [lanes[k] for k in order]
    return {
        "lanes": [{"layer": la, "thread": th, "colour": LAYER_COLOURS.get(la, "#999")} for la, th in lanes],
        "segments": segments,
        "length": len(events),
        "index": -1 if index is None else int(index),
    }


def timeline_detail(events: Sequence[tuple], registry: Sequence[Any], index: int | None,
                    lanes: Sequence[Mapping], window: int = 60) -> list[list]:
    """Entries within `window` events of `index`: `[lane, event index, function, depth]` for the zoom strip."""
    if index is None or index < 0:
        return []
    lane_of = {(ln["layer"], ln["thread"]): k for k, ln in enumerate(lanes)}
    out = []
    for i in range(max(0, index - window), min(len(events), index + window + 1)):
        ev = events[i]
        if ev[0] == 0:
            tp = registry[ev[1]]
            out.append([lane_of.get((tp.layer, ev[2]), 0), i, tp.name, ev[3]])
    return out


def _layer_rank(layer: str) -> int:
    return LAYERS.index(layer) if layer in LAYERS else len(LAYERS)


def _thread_rank(thread: str) -> tuple:
    # vCPUs first, then the main loop, then workers in number order
    head = 0 if thread.startswith("vcpu") else 1 if thread == "main" else 2
    digits = "".join(c for c in thread if c.isdigit())
    return head, int(digits) if digits else 0, thread


# -- views ------------------------------------------------------------------------------------------------
FIELD_COLOURS = ("#ffd6a5", "#caffbf", "#9bf6ff", "#bdb2ff", "#ffc6ff", "#fdffb6", "#a0c4ff", "#ffadad",
                 "#d0f4de", "#e4c1f9", "#fcf6bd")


def value_html(v: Any, depth: int = 0) -> str:
    """Any plain-data value as HTML: dicts as key/value tables, lists of dicts as tables, bytes as hex."""
    if isinstance(v, Mapping):
        if not v:
            return "<i>empty</i>"
        rows = "".join(f'<tr><th style="text-align:left;padding-right:8px">{esc(k)}</th>'
                       f"<td>{value_html(x, depth + 1)}</td></tr>" for k, x in v.items())
        return f'<table class="vmio-kv" style="border-collapse:collapse">{rows}</table>'
    if isinstance(v, (bytes, bytearray, memoryview)):
        return f"<pre style='margin:0'>{esc(hexdump(bytes(v)))}</pre>" if len(v) > 16 else f"<code>{esc(show(v))}</code>"
    if isinstance(v, (list, tuple)):
        if not v:
            return "<i>none</i>"
        if all(isinstance(x, Mapping) for x in v):
            cols: list[str] = []
            for x in v:
                cols += [k for k in x if k not in cols]
            head = "".join(f"<th>{esc(c)}</th>" for c in cols)
            body = "".join("<tr>" + "".join(f"<td>{value_html(x.get(c, ''), depth + 1)}</td>" for c in cols)
                           + "</tr>" for x in v)
            return f'<table class="vmio-rows" style="border-collapse:collapse"><tr>{head}</tr>{body}</table>'
        if len(v) > 64:
            return esc(", ".join(show(x) for x in v[:64])) + f" … ({len(v)} items)"
        return esc(", ".join(show(x) for x in v))
    if hasattr(v, "__dataclass_fields__"):
        from dataclasses import asdict
        return value_html(asdict(v), depth)
    return esc(show(v))


def hexdump(data: bytes, base: int = 0, width: int = 16) -> str:
    lines = []
    for off in range(0, len(data), width):
        chunk = data[off:off + width]
        text = "".join(chr(c) if 32 <= c < 127 else "." for c in chunk)
        lines.append(f"{base + off:05x}  {chunk.hex(' '):<{width * 3}} {text}")
    return "\n".join(lines)


def view_title(name: str) -> str:
    return {"registers": "CPU", "cpu": "CPU", "vmcs": "VMCS", "kvm_run": "kvm_run", "ide": "IDE",
            "qiov": "QEMUIOVector", "iov": "QEMUIOVector", "coroutines": "Coroutines",
            "thread_pool": "Thread pool", "threadpool": "Thread pool", "disk": "Disk"}.get(name, name)


def view_html(name: str, view: Any) -> str:
    """One view as HTML. IDE status bits are decoded and disk sectors shown as a diff; the rest is generic."""
    special = {"ide": ide_html, "disk": disk_html}.get(name)
    body = special(view) if special else value_html(view)
    return f'<div class="vmio-view vmio-view-{esc(name)}">{body}</div>'


# IDE status register bits (hw/ide/internal.h); the model keeps the same table.
try:
    from ..qemu.hw.ide.internal import STATUS_BITS
except ImportError:  # pragma: no cover - the IDE model is part of the package
    STATUS_BITS = (("BSY", 0x80), ("DRDY", 0x40), ("DF", 0x20), ("DSC", 0x10), ("DRQ", 0x08),
                   ("CORR", 0x04), ("IDX", 0x02), ("ERR", 0x01))


def ide_status_bits(status: int) -> list[tuple[str, bool]]:
    """The status register as (bit name, set) pairs, high bit first: 0x58 → DRDY, DSC and DRQ set."""
    return [(name, bool(status & mask)) for name, mask in STATUS_BITS]


def ide_status_html(status: int) -> str:
    cells = "".join(
        f'<span class="vmio-bit {"on" if on else "off"}" style="display:inline-block;min-width:34px;'
        f'text-align:center;margin-right:2px;border:1px solid #999;'
        f'background:{"#2a9d8f;color:#fff" if on else "#eee;color:#999"}">{name}</span>'
        for name, on in ide_status_bits(status))
    return f'<div class="vmio-ide-status">status 0x{status:02x} {cells}</div>'


def ide_html(view: Any) -> str:
    status = _get(view, "status")
    if isinstance(status, Mapping):  # a view that already decoded it
        status = status.get("value", status.get("raw"))
    top = ide_status_html(status) if isinstance(status, int) else ""
    return top + value_html(view)


def _get(view: Any, key: str, default: Any = None) -> Any:
    if isinstance(view, Mapping):
        return view.get(key, default)
    return getattr(view, key, default)


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
           f'changed<pre style="margin:0">']
    for r in rows[:max_rows]:
        after_cells = []
        for i, byte in enumerate(r["after"].split(" ")):
            after_cells.append(f'<span style="background:#ffd166">{byte}</span>' if i in r["changed"] else byte)
        out.append(f'{lba * 512 + r["offset"]:07x} - {esc(r["before"])}\n'
                   f'{"":7} + {" ".join(after_cells)}\n')
    if len(rows) > max_rows:
        out.append(f"… {len(rows) - max_rows} more rows\n")
    return "".join(out) + "</pre></div>"


def disk_html(view: Any) -> str:
    sectors = _get(view, "sectors")
    if isinstance(sectors, list) and sectors and all(isinstance(s, Mapping) and "before" in s for s in sectors):
        rest = {k: v for k, v in view.items() if k != "sectors"} if isinstance(view, Mapping) else {}
        return value_html(rest) + "".join(
            sector_diff_html(s.get("lba", s.get("sector", 0)), _bytes(s["before"]), _bytes(s["after"]))
            for s in sectors)
    return value_html(view)


def _bytes(v: Any) -> bytes:
    if isinstance(v, str):
        return bytes.fromhex(v)
    return bytes(v or b"")


# -- kvm_run hex overlay ------------------------------------------------------------------------------------
def hex_region(title: str, data: bytes, base: int, fields: Sequence[tuple[str, int, int, Any]]) -> dict:
    """One region for the hex widget: bytes from `base`, and `(name, offset, size, value)` fields over them."""
    return {"title": title, "base": base, "hex": bytes(data).hex(),
            "fields": [{"name": n, "offset": o, "size": s, "value": show(v),
                        "colour": FIELD_COLOURS[k % len(FIELD_COLOURS)]}
                       for k, (n, o, s, v) in enumerate(fields)]}


def field_at(region: Mapping, offset: int) -> str | None:
    """The name of the field covering byte `offset` of a region (what the hex view highlights on hover)."""
    for f in region["fields"]:
        if f["offset"] <= offset < f["offset"] + f["size"]:
            return f["name"]
    return None


def kvm_run_regions(view: Any) -> list[dict]:
    """The kvm_run header (exit_reason, the io union) and the used part of the PIO page, as hex regions."""
    from ..linux.include.uapi.linux.kvm import KVM_RUN_FIELDS

    raw = _bytes(_get(view, "bytes", b""))
    if not raw:
        return []
    head = raw[:48]
    fields = [(n, o, s, int.from_bytes(head[o:o + s], "little")) for n, o, s in KVM_RUN_FIELDS if o + s <= len(head)]
    regions = [hex_region("struct kvm_run (first 48 bytes)", head, 0, fields)]
    pio = _get(view, "pio")
    if pio is not None:
        data_offset = _get(pio, "data_offset", 4096)
        data = _bytes(_get(pio, "bytes", b""))
        size = _get(pio, "size", 1) or 1
        elems = [(f"data[{i}]", data_offset + i * size, size, int.from_bytes(data[i * size:(i + 1) * size], "little"))
                 for i in range(min(len(data) // size, 64))]
        regions.append(hex_region(f"PIO page at data_offset {data_offset}", data[:1024], data_offset, elems))
    return regions
