"""The Virtqueue view as HTML (the data: vmio_edu.trace.virtqueue_view): the rings' indices, each request's
descriptor chain with its owner, and what changed since the previous stop marked, as in the other views."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .render import esc

_CHANGED = ' class="vmio-changed"'
_OWNER_STYLE = {"device": "background:#caffbf", "driver": "background:#9bf6ff"}
STATE_HELP = {
    "available": "in the avail ring, not yet taken by the device (virtqueue_pop)",
    "in flight": "taken by the device: the request is running",
    "used": "back in the used ring (virtqueue_push): the driver reclaims it in its interrupt handler",
    "free": "reclaimed by the driver",
}


def _code(value: Any, changed: bool, fmt: str = "") -> str:
    text = format(value, fmt) if value is not None and fmt else ("-" if value is None else str(value))
    return f"<code{_CHANGED if changed else ''}>{esc(text)}</code>"


def virtqueue_html(view: Mapping, prev: Mapping | None = None) -> str:
    if not view.get("present", True):
        return f'<div class="vmio-dim">{esc(view.get("note", "no virtqueue"))}</div>'
    queues = view.get("queues")
    if queues is not None:  # the machine-level view: one section per queue
        old = {q.get("queue"): q for q in (prev or {}).get("queues", [])} if prev else {}
        return "".join(queue_html(q, old.get(q.get("queue")) if prev else None) for q in queues) or \
            '<div class="vmio-dim">the driver has not set up a queue yet</div>'
    return queue_html(view, prev)


def queue_html(q: Mapping, prev: Mapping | None = None) -> str:
    """One queue: its indices, its rings' entries and its chains."""
    if "error" in q:
        return f'<div><b>queue {q.get("queue")}</b>: {esc(q["error"])}</div>'
    p = prev or {}
    a, u = q["avail"], q["used"]
    pa, pu = p.get("avail", {}), p.get("used", {})
    dev = q.get("device", {})
    addrs = q["addresses"]
    def value(now: Mapping, before: Mapping, key: str) -> str:  # a number, marked if it moved since prev
        return _code(now.get(key), prev is not None and before.get(key) != now.get(key))

    def flags(ring: Mapping) -> str:
        return ", " + " ".join(ring["flags_set"]) if ring["flags_set"] else ""
    head = (f'<div><b>queue {q["queue"]}</b>, {q["num"]} descriptors: table at <code>{addrs["desc"]:#x}</code>, '
            f'avail ring at <code>{addrs["avail"]:#x}</code>, used ring at <code>{addrs["used"]:#x}</code></div>'
            f'<div>avail.idx {value(a, pa, "idx")} (driver: next slot it fills{flags(a)}) · '
            f'last_avail_idx {value(dev, p.get("device", {}), "last_avail_idx")} (device: next it pops) · '
            f'used.idx {value(u, pu, "idx")} (device: next slot it fills{flags(u)})</div>')
    old_avail = {e["index"]: e for e in pa.get("ring", [])}
    old_used = {e["index"]: e for e in pu.get("ring", [])}

    def new(e: Mapping, old: Mapping) -> str:  # a new entry, or one whose chain changed hands
        return _CHANGED if prev is not None and old.get(e["index"]) != e else ""
    def entry(e: Mapping, old: Mapping, text: str) -> str:
        tip = f'{e["state"]}: {STATE_HELP.get(e["state"], "")}'
        return f'<span title="{esc(tip)}"><code{new(e, old)}>{esc(text)}</code></span>'
    avail = " ".join(entry(e, old_avail, f'[{e["slot"]}]={e["head"]}') for e in a["ring"]) or '<i>empty</i>'
    used = " ".join(entry(e, old_used, f'[{e["slot"]}]=id {e["id"]}, len {e["len"]}') for e in u["ring"]) \
        or '<i>empty</i>'
    rings = f'<div>avail ring (head of each chain offered): {avail}</div><div>used ring: {used}</div>'
    if "used_event" in a:  # VIRTIO_RING_F_EVENT_IDX: each side says when it next wants to hear from the other
        rings += (f'<div>event idx: used_event {value(a, pa, "used_event")} (driver: interrupt me once used.idx '
                  f'passes it) · avail_event {value(u, pu, "avail_event")} (device: notify me once avail.idx '
                  f'passes it)</div>')
    return f'<div class="vmio-virtqueue">{head}{rings}{chains_html(q.get("chains", []), p.get("chains"))}</div>'


def chains_html(chains: list, prev_chains: list | None) -> str:
    old = {(c["head"], d.get("in_table"), d["index"]): (c, d) for c in (prev_chains or []) for d in c["descriptors"]}
    rows = []
    for c in chains:
        for n, d in enumerate(c["descriptors"]):
            was = old.get((c["head"], d.get("in_table"), d["index"]))
            pc, pd = was if was is not None else ({}, {})

            def mark(key: str, obj: Mapping = d, before: Mapping = pd) -> bool:
                return prev_chains is not None and before.get(key) != obj.get(key)
            owner = c["owner"]
            state = (f'<td rowspan="{len(c["descriptors"])}" style="{_OWNER_STYLE.get(owner, "")}" '
                     f'title="{esc(STATE_HELP.get(c["state"], ""))}"><b>{esc(owner)}</b><br>'
                     f'{_code(c["state"], prev_chains is not None and pc.get("state") != c["state"])}'
                     + (f'<br><span class="vmio-dim">{esc(c["problem"])}</span>' if c.get("problem") else "")
                     + "</td>") if n == 0 else ""
            head = f'<td rowspan="{len(c["descriptors"])}"><b>{c["head"]}</b></td>' if n == 0 else ""
            rows.append(
                f"<tr>{head}{state}<td>{_index(d)}</td><td>{esc(d.get('role', ''))}</td>"
                f"<td>{_code(d['addr'], mark('addr'), '#x')}</td><td>{_code(d['len'], mark('len'))}</td>"
                f"<td>{_code(' '.join(d['flags_set']) or '0', mark('flags'))}</td>"
                f"<td>{_code(d['next'], mark('next'))}</td><td>{esc(d['writer'])}</td>"
                f"<td>{_contents(d, pd if prev_chains is not None else None)}</td></tr>")
    if not rows:
        return '<div class="vmio-dim">no request in the rings yet</div>'
    return ('<table class="vmio-table"><tr><th>head</th><th>owner</th><th>desc</th><th>part</th><th>addr</th>'
            '<th>len</th><th>flags</th><th>next</th><th>written by</th><th>holds now</th></tr>'
            + "".join(rows) + "</table>")


def _index(d: Mapping) -> str:
    """A descriptor's index; one inside an indirect table as table[i]."""
    return f"{d['in_table']}[{d['index']}]" if "in_table" in d else str(d["index"])


def _contents(d: Mapping, pd: Mapping | None) -> str:
    if d.get("role") == "indirect table":
        return f"{d['len'] // 16} descriptors"
    if "header" in d:
        h = d["header"]
        return (f'{_code(h["type_name"], pd is not None and pd.get("header") != h)} sector '
                f'{_code(h["sector"], pd is not None and (pd.get("header") or {}).get("sector") != h["sector"])}')
    if "status" in d or "status_name" in d:
        changed = pd is not None and pd.get("status") != d.get("status")
        return f'{_code(d.get("status"), changed, "#04x")} {esc(d.get("status_name", ""))}'
    if "bytes" in d:
        return _code(d["bytes"] + ("…" if d["len"] > len(d["bytes"]) // 2 else ""),
                     pd is not None and pd.get("bytes") != d["bytes"])
    return ""
