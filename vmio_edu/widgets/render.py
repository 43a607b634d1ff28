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
