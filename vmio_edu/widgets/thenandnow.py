"""The panel's "Then and now" page: the stop's function beside the other stack (vmio_edu.trace.thenandnow).

It shows the aligned row of `vmio-edu diff-paths` for the function the debugger stopped in (the same
colours and badges as `widgets.diff_view`), a sentence on what is matched with what, and the other stack's
backtrace at the matching stop (this stop's is the panel's Backtrace pane, beside it). It renders plain
data and changes nothing.
"""
from __future__ import annotations

from ..trace.backtrace import BtFrame
from .diffview import STYLE, kind_badge
from .render import backtrace_html, esc, layer_badge
from .source import real_url


def _stage_html(s: dict | None, stack: str) -> str:
    """One side of a row: the stack, the function (linked to its real line), how often, where."""
    if s is None:
        return f'<div class="vmio-then-now-stage"><span class="vmio-dim">{esc(stack)}: none</span></div>'
    side = "linux" if s["layer"] in ("guest", "vmx", "kvm", "host") else "qemu"
    url = real_url(side, s["file"], s["line"], stack)
    name = f'<code>{esc(s["name"])}</code>'
    if url:
        name = f'<a href="{esc(url)}" target="_blank">{name}</a>'
    where = f'{esc(s["file"])}:{esc(s["line"])}' if s.get("file") else ""
    caller = f', called by <code>{esc(s["caller"])}</code>' if s.get("caller") else ""
    co = ", on a coroutine" if s.get("coroutine") else ""
    return (f'<div class="vmio-then-now-stage"><b>{esc(stack)}</b>: {name} ×{s["count"]} '
            f'<span class="vmio-dim">({where}; thread {esc(s["thread"])}{caller}{co})</span></div>')


def _row_html(r: dict, here: bool = False) -> str:
    """One aligned row, the two stacks one above the other (the views column is narrow); `here`: the row
    of this stop's chain of callers (a function reached through several chains has a row for each)."""
    s = r["new"] or r["old"]
    flags = (" ≡ shared code" if r["shared"] else "") + (" ~ merged chain" if r["merged"] else "") + \
        (" ◀ this stop's chain" if here else "")
    note = f'<div class="vmio-note">{esc(r["note"])}</div>' if r["note"] else ""
    return (f'<div class="vmio-then-now-row vmio-row-{esc(r["kind"])}{" vmio-here" if here else ""}">{kind_badge(r["kind"])} '
            f'{layer_badge(s["layer"])}<span class="vmio-dim">{esc(flags)}</span>'
            f'{_stage_html(r["old"], "1.6.1")}{_stage_html(r["new"], "10.2")}{note}</div>')


def then_and_now_html(d: dict) -> str:
    """HTML for `then_and_now(...)`'s data. (This stop's own backtrace is the panel's Backtrace pane.)"""
    if "error" in d:
        return f'<div class="vmio-then-now"><i>{esc(d["error"])}</i></div>'
    table = "".join(_row_html(r, i == d.get("row_index")) for i, r in enumerate(d["rows"])) if d["rows"] else (
        f'<div><code>{esc(d["function"])}</code> is not on the path of a {esc(d["op"])} on '
        f'{esc(d["stack"])} (diff-paths reduces the default guest\'s {esc(d["op"])})</div>')
    head = (f'<div class="vmio-then-now-head"><b>{esc(d["function"])}</b> on QEMU '
            f'{esc(d["stack"])} beside QEMU {esc(d["other_stack"])}, in a {esc(d["op"])} '
            f'<span class="vmio-dim">({esc(d["qemu"]["old"])} / {esc(d["linux"]["old"])}, '
            f'{esc(d["qemu"]["new"])} / {esc(d["linux"]["new"])})</span></div>')
    note = f'<div class="vmio-note">{esc(d["note"])}</div>' if d.get("note") else ""
    other = d.get("other_backtrace") or {}
    if "frames" in other:
        there = backtrace_html([BtFrame(**f) for f in other["frames"]])
    else:
        there = f'<div><i>{esc(other.get("error", "no matching stop"))}</i></div>'
    bt = (f'<div class="vmio-then-now-bt"><b>QEMU {esc(d["other_stack"])}</b> at '
          f'<code>{esc(d.get("other_function") or "?")}</code>{there}</div>')
    css = (".vmio-then-now .vmio-then-now-row{margin:3px 0;padding:2px 4px;border:1px solid var(--jp-border-color2,#ddd)}"
           ".vmio-then-now .vmio-then-now-stage{white-space:normal;overflow-wrap:anywhere;margin-left:8px}"
           ".vmio-then-now{max-width:100%;overflow-wrap:anywhere}")
    return f'<style>{STYLE}{css}</style><div class="vmio-then-now vmio-diff">{head}{table}{note}{bt}</div>'


__all__ = ["then_and_now_html"]
