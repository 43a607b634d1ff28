"""The panel view of `vmio-edu diff-paths`: the two stacks' paths aligned, their backtraces, their exits.

    from vmio_edu.trace.diffreport import diff_paths
    from vmio_edu.widgets import diff_view
    diff_view(diff_paths(op="write"))      # display it as a cell's last expression

Tabs: **Changes** (every row that is not SAME, with the SAME row before it for context), **Aligned path**
(every row), **Ladder** (the figure of vmio_edu.widgets.diffladder, from the IDE device to the disk),
**Backtraces** (both stacks at the matching stop, side by side) and **Exits** (exit classes, the kernel
facts of this run, and each kernel's measured value of every fact in vmio_edu.kvm.differences). Each function name links to its real line at its tag (QEMU v1.6.1 / Linux v3.7, or
QEMU v10.2.0 / Linux v6.12). Colours are JupyterLab's theme variables; the view fits a 1366×768 screen.

It reads a `DiffResult` (or its `to_json()` dict, e.g. loaded from `vmio-edu diff-paths --format json`)
and changes nothing: the HTML is built once, here, on the kernel thread.
"""
from __future__ import annotations

from typing import Any

from ..trace.argfmt import format_args
from .render import esc, layer_badge
from .source import real_url

# Row kinds: their colour (JupyterLab theme variables with fallbacks) and what they mean.
KIND_COLOURS = {
    "SAME": "var(--jp-ui-font-color2, #757575)",
    "RENAMED": "var(--jp-info-color1, #0288d1)",
    "ADDED": "var(--jp-success-color1, #388e3c)",
    "REMOVED": "var(--jp-error-color1, #d32f2f)",
    "MOVED": "var(--jp-warn-color1, #f57c00)",
}
KIND_MEANING = {
    "SAME": "the same function in both",
    "RENAMED": "the same stage under its 10.2 name",
    "ADDED": "only on the 10.2 path",
    "REMOVED": "only on the 1.6.1 path",
    "MOVED": "matched, on another thread",
}

STYLE = """
.vmio-diff { font-size: var(--jp-ui-font-size1, 13px); color: var(--jp-ui-font-color1, #222);
  background: var(--jp-layout-color0, #fff); max-width: 1300px; }
.vmio-diff .vmio-diff-scroll { max-height: 470px; overflow: auto; border: 1px solid var(--jp-border-color2, #ddd); }
.vmio-diff table { border-collapse: collapse; width: 100%; color: inherit; }
.vmio-diff th { position: sticky; top: 0; background: var(--jp-layout-color2, #eee); text-align: left;
  font-size: 11px; padding: 1px 4px; z-index: 1; }
.vmio-diff td { font-size: 11px; padding: 0 4px; border-bottom: 1px solid var(--jp-border-color3, #eee);
  background: transparent; white-space: nowrap; }
/* JupyterLab's rendered-HTML tables pad cells by half a line: keep these rows dense (more on one screen) */
.vmio-diff table td, .vmio-diff table th { padding: 0 4px !important; line-height: 1.3 !important;
  text-align: left; }
.vmio-diff table td.vmio-count { text-align: right; }
.vmio-diff code { font-family: var(--jp-code-font-family, monospace); font-size: 11px; background: transparent;
  color: var(--jp-content-font-color1, #222); }
.vmio-diff a { color: var(--jp-content-link-color, #1976d2); text-decoration: none; }
.vmio-diff .vmio-kind { color: #fff; border-radius: 3px; padding: 0 4px; font-size: 10px; font-weight: bold; }
.vmio-diff tr.vmio-row-SAME td { color: var(--jp-ui-font-color2, #666); }
.vmio-diff tr.vmio-thread td { background: var(--jp-layout-color1, #f5f5f5); font-weight: bold; padding-top: 3px; }
.vmio-diff .vmio-count { text-align: right; color: var(--jp-ui-font-color2, #666); }
.vmio-diff .vmio-note { white-space: normal; color: var(--jp-ui-font-color2, #666); font-style: italic; }
.vmio-diff .vmio-legend span { margin-right: 10px; }
.vmio-diff .vmio-bt { display: flex; gap: 8px; }
.vmio-diff .vmio-bt > div { flex: 1 1 50%; min-width: 0; }
.vmio-diff .vmio-bt pre { white-space: pre-wrap; font-size: 11px; margin: 2px 0; overflow-wrap: anywhere;
  color: var(--jp-content-font-color1, #222); background: var(--jp-layout-color1, #fafafa); padding: 3px; }
.vmio-diff .vmio-differs { color: var(--jp-warn-color1, #f57c00); font-weight: bold; }
.vmio-diff .vmio-kernel-differs { color: var(--jp-warn-color1, #f57c00); font-weight: bold; }
/* the ladder's SVG: names without a colour of their own take the theme's text colour */
.vmio-diff .vmio-ladder svg text { fill: var(--jp-ui-font-color1, #222); }
.vmio-diff .vmio-ladder svg { max-width: 100%; height: auto; }
"""


def _json(result: Any) -> dict:
    return result if isinstance(result, dict) else result.to_json()


def kind_badge(kind: str) -> str:
    """A row kind as a coloured badge; SAME, the quiet kind, as an outline in the theme's grey."""
    colour = KIND_COLOURS.get(kind, "#999")
    style = f"border:1px solid {colour};color:{colour};background:transparent" if kind == "SAME" \
        else f"background:{colour}"
    return (f'<span class="vmio-kind vmio-kind-{esc(kind)}" style="{style}" '
            f'title="{esc(KIND_MEANING.get(kind, ""))}">{esc(kind)}</span>')


def _stage_cell(s: dict | None, stack: str) -> str:
    if s is None:
        return "<td></td><td></td>"
    side = "linux" if s["layer"] in ("guest", "vmx", "kvm", "host") else "qemu"
    url = real_url(side, s["file"], s["line"], stack)
    name = f'<code>{esc(s["name"])}</code>'
    if url:
        name = f'<a href="{esc(url)}" target="_blank" title="{esc(s["file"])}:{esc(s["line"])}">{name}</a>'
    co = ' <span title="on a coroutine stack">⟳</span>' if s.get("coroutine") else ""
    return f'<td>{name}{co}</td><td class="vmio-count">×{s["count"]}</td>'


def rows_html(d: dict, changes_only: bool = False) -> str:
    """The aligned table (HTML), grouped by thread. `changes_only`: the rows that are not SAME, each run
    of them after the SAME row that precedes it (where the change sits on the path)."""
    old, new = d["stacks"]["old"]["stack"], d["stacks"]["new"]["stack"]
    rows = d["rows"]
    keep = list(range(len(rows)))
    if changes_only:  # (as diffreport.changed_rows, on the JSON form)
        keep = []
        for i, r in enumerate(rows):
            if r["kind"] != "SAME" or r["merged"]:
                prev = rows[i - 1] if i else None
                if prev and prev["kind"] == "SAME" and not prev["merged"] and (not keep or keep[-1] != i - 1):
                    keep.append(i - 1)
                keep.append(i)
    out = [f'<table><tr><th>kind</th><th>layer</th><th colspan="2">{esc(old)}</th>'
           f'<th colspan="2">{esc(new)}</th><th></th></tr>']
    thread = None
    for i in keep:
        r = rows[i]
        s = r["new"] or r["old"]
        if s["thread"] != thread:
            thread = s["thread"]
            out.append(f'<tr class="vmio-thread"><td colspan="7">thread {esc(thread)}</td></tr>')
        flags = ("≡ " if r["shared"] else "") + ("~ " if r["merged"] else "")
        title = ("shared: the 10.2 model runs the 1.6.1 code unchanged. " if r["shared"] else "") + \
                ("merged: one stack makes these calls through a chain listed above. " if r["merged"] else "")
        note = f'<span class="vmio-note">{esc(r["note"])}</span>' if r["note"] else ""
        out.append(f'<tr class="vmio-row-{esc(r["kind"])}"><td>{kind_badge(r["kind"])}</td>'
                   f'<td>{layer_badge(s["layer"])}</td>{_stage_cell(r["old"], old)}{_stage_cell(r["new"], new)}'
                   f'<td title="{esc(title)}">{esc(flags)}{note}</td></tr>')
    out.append("</table>")
    return "".join(out)


def summary_html(d: dict) -> str:
    o, n = d["stacks"]["old"], d["stacks"]["new"]
    counts = " ".join(f'<span>{kind_badge(k)} {v}</span>' for k, v in d["summary"].items())
    return (f'<div><b>{esc(o["qemu"])} / {esc(o["linux"])}</b> ({o["stages"]} stages) beside '
            f'<b>{esc(n["qemu"])} / {esc(n["linux"])}</b> ({n["stages"]} stages): {esc(d["op"])} of '
            f'{d["sectors"]} sector(s), engine {esc(o["engine"])}</div>'
            f'<div class="vmio-legend">{counts} <span>≡ shared code</span><span>~ merged chain</span>'
            f'<span>⟳ coroutine</span></div>')


def backtraces_html(d: dict) -> str:
    b = d.get("break")
    if not b:
        return "<div>No matching stop was asked for (diff-paths --break FUNCTION).</div>"
    cols = []
    for side in ("old", "new"):
        st = d["stacks"][side]
        bt = b[side]
        head = f'<b>{esc(st["qemu"])}</b> at <code>{esc(bt["function"])}</code>' + \
               (f' (thread {esc(bt["thread"])})' if bt.get("thread") else "")
        if "frames" not in bt:
            cols.append(f'<div>{head}<pre>{esc(bt.get("error", "?"))}</pre></div>')
            continue
        lines = []
        for f in bt["frames"]:
            url = real_url("linux" if f["layer"] in ("guest", "vmx", "kvm", "host") else "qemu", f["file"],
                           f["line"], st["stack"])
            where = f'{esc(f["file"])}:{esc(f["line"])}' if f.get("file") else ""  # (no line read: gdb's "??")
            where = f'<a href="{esc(url)}" target="_blank">{where}</a>' if url else where
            args = esc(format_args(f.get("args") or {}, f["function"]))
            lines.append(f'#{f["level"]:<2} <b>{esc(f["function"])}</b> ({args})' + (f" at {where}" if where else ""))
        cols.append(f'<div>{head}<pre>' + "\n".join(lines) + "</pre></div>")
    return '<div class="vmio-bt">' + "".join(cols) + "</div>"


def exits_html(d: dict) -> str:
    o, n = d["stacks"]["old"]["stack"], d["stacks"]["new"]["stack"]
    e = d["exits"]
    out = [f"<table><tr><th>exit (reason, direction, port, size)</th><th>{esc(o)}</th><th>{esc(n)}</th></tr>"]
    for c in e["classes"]:
        what = c["reason"] + (f' {c["direction"]} port={c["port"]:#x} size={c["size"]}' if c["port"] >= 0 else "")
        cls = "" if c["old"] == c["new"] else ' class="vmio-differs"'
        out.append(f"<tr{cls}><td>{esc(what)}</td><td>{c['old']}</td><td>{c['new']}</td></tr>")
    out.append(f"<tr><td><b>total</b></td><td><b>{e['old_total']}</b></td><td><b>{e['new_total']}</b></td></tr>")
    for f in e["facts"]:
        label = {"plain_out_rip": "RIP at the exit of a plain OUT",
                 "rep_ins_counts": "data-port rep insw batches (words)"}.get(f["fact"], f["fact"])
        cls = "" if f["old"] == f["new"] else ' class="vmio-differs"'
        out.append(f"<tr{cls}><td>{esc(label)}</td><td>{esc(f['old'])}</td><td>{esc(f['new'])}</td></tr>")
    out.append("</table><ul>" + "".join(f"<li>{esc(x)}</li>" for x in e["notes"]) + "</ul>")
    out.append(kernel_differences_html(e.get("kernel_differences") or []))
    return "".join(out)


def _value(v: Any) -> str:
    return " + ".join(str(x) for x in v) if isinstance(v, list) else str(v)


def kernel_differences_html(diffs: list[dict]) -> str:
    """The measured kernel facts (vmio_edu.kvm.differences, schema 2 values): each kernel's value, those
    that differ from Linux 6.12's marked; each explanation as the cell's tooltip."""
    if not diffs:
        return ""
    out = ['<div><b>Kernel facts, measured</b> <span class="vmio-note">(a small guest per fact, run on each '
           'kernel; marked: not what Linux 6.12 does)</span></div><table class="vmio-kernel-facts"><tr><th>fact'
           '</th><th>Linux 3.7</th><th>Linux 6.12 (VMX)</th><th>kvm_pvm (this project\'s host)</th></tr>']
    for d in diffs:
        cells = []
        for key, why in (("linux_3_7", d.get("why_3_7", "")), ("linux_6_12", d.get("why_6_12", "")),
                         ("kvm_pvm", "")):
            cls = ' class="vmio-kernel-differs"' if key != "linux_6_12" and d[key] != d["linux_6_12"] else ""
            tip = f' title="{esc(why)}"' if why else ""
            cells.append(f"<td{cls}{tip}>{esc(_value(d[key]))}</td>")
        out.append(f'<tr><td title="{esc(d["what"])}"><code>{esc(d["name"])}</code></td>{"".join(cells)}</tr>')
    out.append("</table>")
    return "".join(out)


TABS = (("changes", "Changes"), ("all", "Aligned path"), ("ladder", "Ladder"), ("backtraces", "Backtraces"),
        ("exits", "Exits"))


def ladder_html(d: dict) -> str:
    """The ladder figure (vmio_edu.widgets.diffladder) from the IDE device down to the disk, as SVG."""
    from .diffladder import ladder_svg
    try:
        svg = ladder_svg(d)
    except ValueError as e:  # no stage in those layers (a guest that never reached the disk)
        return f"<div>{esc(e)}</div>"
    return ('<div class="vmio-ladder"><div class="vmio-note">From the IDE device to the disk: each stack\'s '
            'stages down its own column, a rung between matched stages.</div>' + svg + "</div>")


def tab_html(result: Any, tab: str) -> str:
    """One tab's body (tab: "changes", "all", "ladder", "backtraces", "exits")."""
    d = _json(result)
    body = {"changes": lambda: rows_html(d, changes_only=True), "all": lambda: rows_html(d),
            "ladder": lambda: ladder_html(d), "backtraces": lambda: backtraces_html(d),
            "exits": lambda: exits_html(d)}
    if tab not in body:
        raise ValueError(f"unknown tab {tab!r}: choose one of {', '.join(body)}")
    return f'<style>{STYLE}</style><div class="vmio-diff"><div class="vmio-diff-scroll">{body[tab]()}</div></div>'


def diff_html(result: Any, tab: str = "changes") -> str:
    """The summary and one tab, as one HTML string (for tests and static export)."""
    d = _json(result)
    return f'<style>{STYLE}</style><div class="vmio-diff">{summary_html(d)}</div>' + tab_html(d, tab)


def diff_view(result: Any) -> Any:
    """The comparison as a JupyterLab widget: the summary, then tabs Changes / Aligned path / Ladder /
    Backtraces / Exits. Switching tabs happens in the browser: the widget never changes after it is built."""
    import ipywidgets as W

    d = _json(result)
    tabs = W.Tab(children=[W.HTML(tab_html(d, key)) for key, _ in TABS], layout=W.Layout(max_width="1320px"))
    for i, (_key, title) in enumerate(TABS):
        tabs.set_title(i, title)
    box = W.VBox([W.HTML(f'<style>{STYLE}</style><div class="vmio-diff">{summary_html(d)}</div>'), tabs])
    box.add_class("vmio-diff-view")
    return box


__all__ = ["KIND_COLOURS", "TABS", "diff_html", "diff_view", "rows_html", "tab_html"]
