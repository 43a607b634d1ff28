"""The source pane: the modelled function's own Python code, the current line marked, and a link to the
real line (QEMU v1.6.1 or Linux v3.7 on GitHub); for the guest, its assembly with labels and RIP marked.

The project does not contain the real C sources: it models them, so the pane shows the model and links
to the real line at the tag.
"""
from __future__ import annotations

import inspect
import re
from functools import lru_cache
from typing import Any, Sequence

from ..trace.sources import tags
from ..trace.tracepoint import by_name
from .render import esc

QEMU_URL = "https://github.com/qemu/qemu/blob/{tag}/{file}#L{line}"
LINUX_URL = "https://github.com/torvalds/linux/blob/{tag}/{file}#L{line}"


def real_url(side: str, file: str, line: int | None, stack: str = "1.6.1") -> str | None:
    """A permalink to `file:line` at the tag the model follows (`side`: "qemu" or "linux"; `stack`:
    "1.6.1" for QEMU v1.6.1 / Linux v3.7, "10.2" for QEMU v10.2.0 / Linux v6.12)."""
    if not file or line is None:
        return None
    qemu_tag, linux_tag = tags(stack)
    if side == "linux":
        return LINUX_URL.format(tag=linux_tag, file=file, line=line)
    return QEMU_URL.format(tag=qemu_tag, file=file, line=line)


def _tracepoint(function: str, layer: str | None, stack: str = "1.6.1") -> Any:
    tps = by_name(function, layer, stack) or by_name(function, stack=stack) or by_name(function)
    return tps[0] if tps else None


@lru_cache(maxsize=512)
def python_source(fn: Any) -> tuple[str, int, list[str]]:
    """(the model's file, the first line number, its lines) of a modelled function."""
    lines, start = inspect.getsourcelines(fn)
    path = inspect.getsourcefile(fn) or "?"
    short = path[path.rfind("vmio_edu"):] if "vmio_edu" in path else path
    return short, start, [ln.rstrip("\n") for ln in lines]


def _called_names(side: str, caller: str, real_line: int | None, stack: str = "1.6.1") -> list[str]:
    """The names called on the real line a caller frame is at (`write` for `mrp->write(...)`): the model
    calls through the same member names, which finds its line when the callee is called by pointer."""
    from ..trace.sources import _modern_table, _table

    e = (_table() if stack == "1.6.1" else _modern_table()).get(f"{side}:{caller}") or {}
    out = []
    for line, text in e.get("calls_at", []):
        if line == real_line:
            out += [n for n in re.findall(r"(\w+)\s*\(", text) if n not in ("if", "while", "for", "return", "sizeof")]
    return out


def current_line(lines: Sequence[str], callee: str | None, kind: str | None,
                 also: Sequence[str] = ()) -> int:
    """Which line (0-based, in `lines`) the frame is at: the call of `callee` in a caller frame (or of a
    name in `also`: what the real line calls), the last `return` at an exit, else the first line of the
    body (the entry)."""
    body = next((k for k, ln in enumerate(lines) if re.match(r"\s*def\s", ln)), 0)
    # the first body line after the signature (which may span several lines) and the docstring
    k = body
    while k < len(lines) and not lines[k].rstrip().endswith(":"):
        k += 1
    first = min(k + 1, len(lines) - 1)
    if first < len(lines) and lines[first].strip().startswith(('"""', "'''")):
        q = lines[first].strip()[:3]
        if not (lines[first].strip().count(q) >= 2 and len(lines[first].strip()) > 3):
            first += 1
            while first < len(lines) and q not in lines[first]:
                first += 1
        first = min(first + 1, len(lines) - 1)
    for name in ([callee] if callee else []) + list(also):
        pat = re.compile(rf"\b{re.escape(name)}\s*\(")
        for j in range(first, len(lines)):
            if pat.search(lines[j]):
                return j
    if kind == "leave":
        rets = [j for j in range(first, len(lines)) if re.match(r"\s*(return|yield)\b", lines[j])]
        return rets[-1] if rets else len(lines) - 1
    return first


def frame_source_html(frames: Sequence[Any], level: int, kind: str | None) -> str:
    """The source pane for backtrace frame `level` (0: innermost) of a stop."""
    if not frames:
        return '<div class="vmio-source"><i>no function here: not stopped inside a traced function</i></div>'
    level = max(0, min(level, len(frames) - 1))
    f = frames[level]
    stack = getattr(f, "stack", "1.6.1")
    tp = _tracepoint(f.function, f.layer, stack)
    side = tp.side if tp is not None else ("linux" if f.layer in ("guest", "vmx", "kvm", "host") else "qemu")
    url = real_url(side, f.file, f.line, stack)
    project = "QEMU " + tags(stack)[0] if side == "qemu" else "Linux " + tags(stack)[1]
    link = (f'<a class="vmio-real-link" href="{esc(url)}" target="_blank" rel="noopener">{esc(f.file)}:{esc(f.line)}'
            f' in {project} \u2197</a>' if url else "")
    if tp is None or tp.fn is None:
        return f'<div class="vmio-source"><div>{link}</div><i>no model code for {esc(f.function)}</i></div>'
    try:
        path, start, lines = python_source(tp.fn)
    except (OSError, TypeError) as e:
        return f'<div class="vmio-source"><div>{link}</div><i>model source unavailable: {esc(e)}</i></div>'
    callee = frames[level - 1].function if level > 0 else None
    also = _called_names(side, f.function, f.line, stack) if level > 0 else ()
    cur = current_line(lines, callee, kind if level == 0 else None, also)
    rows = []
    # A long function: its signature, then the lines from a little before the current one (the pane shows
    # about twenty lines without scrolling, and the kernel cannot scroll it).
    sig_end = next((k for k, ln in enumerate(lines) if ln.rstrip().endswith(":") and "def " in "".join(lines[:k + 1])), 0)
    skip = range(sig_end + 1, cur - 5) if cur - 5 > sig_end + 2 else range(0)
    for k, ln in enumerate(lines):
        if k in skip:
            if k == skip.start:
                rows.append(f'<span class="vmio-src-line vmio-dim">      \u2026 {len(skip)} lines</span>')
            continue
        mark = k == cur
        cls = ' class="vmio-src-line vmio-current"' if mark else ' class="vmio-src-line"'
        rows.append(f'<span{cls}><span class="vmio-lineno">{start + k:>4}</span>{"=>" if mark else "  "} '
                    f'{esc(ln)}</span>')
    head = (f'<div class="vmio-source-head">{link}<br><span class="vmio-dim">the model: '
            f'<code>{esc(path)}:{start + cur}</code></span></div>')
    return (f'<div class="vmio-source" data-function="{esc(f.function)}" data-current="{start + cur}">{head}'
            f'<pre class="vmio-src">' + "".join(rows) + "</pre></div>")


# -- the guest ---------------------------------------------------------------------------------------------
def guest_labels(program: Any) -> dict[int, list[str]]:
    """Address → labels of a guest program (vmio_edu.guest.symbols reads them from the assembler)."""
    from ..guest.symbols import symbols

    out: dict[int, list[str]] = {}
    for name, addr in sorted(symbols(program).labels.items(), key=lambda kv: kv[1]):
        out.setdefault(addr, []).append(name)
    return out


def guest_listing_html(program: Any, code: bytes, rip: int | None, around: int = 40) -> str:
    """The guest's code as assembly, labels on their own lines, the instruction at RIP marked `=>`."""
    from ..guest.assembler import disassemble

    base = program.load_addr
    try:
        labels = guest_labels(program)
    except Exception:  # noqa: BLE001 - a listing without labels is still a listing
        labels = {}
    rows = disassemble(code, program.mode, base)
    at = next((k for k, r in enumerate(rows) if r[0] == rip), None)
    lo = 0 if at is None else max(0, at - 6)
    out = []
    if lo > 0 and rows and rows[lo][0] not in labels:  # name the routine the listing starts inside
        above = [a for a in labels if a <= rows[lo][0]]
        if above:
            out.append(f'<span class="vmio-asm-label">{esc(labels[max(above)][-1])}: <span class="vmio-dim">\u2026</span></span>')
    for addr, _bytes, mnem, ops in rows[lo:lo + around]:
        for name in labels.get(addr, []):
            out.append(f'<span class="vmio-asm-label">{esc(name)}:</span>')
        mark = addr == rip
        cls = "vmio-src-line vmio-current" if mark else "vmio-src-line"
        target = re.fullmatch(r"0x([0-9a-f]+)", ops.strip())
        named = labels.get(int(target.group(1), 16)) if target else None  # gdb's `call 0x10d8 <ata_wait>`
        note = f' <span class="vmio-dim">&lt;{esc(named[-1])}&gt;</span>' if named else ""
        out.append(f'<span class="{cls}">{"=>" if mark else "  "} <span class="vmio-lineno">{addr:#07x}</span> '
                   f'{esc(mnem)} {esc(ops)}{note}</span>')
    where = f"rip {rip:#x}" if isinstance(rip, int) else "rip unknown"
    return (f'<div class="vmio-source vmio-guest-source"><div class="vmio-source-head">the guest program '
            f'<b>{esc(program.name)}</b> ({program.mode}-bit), {where}</div>'
            f'<pre class="vmio-src">' + "".join(out) + "</pre></div>")
