"""Figures drawn from a recorded trace (matplotlib): where a picture says more than a list of stages.

    from vmio_edu.widgets.figures import thread_sequence
    arrows = thread_sequence(m.trace.events, [("aio_worker", "sys_pwrite64", "pwrite(2)"), ...])

`thread_sequence` is a sequence diagram: one lifeline per actor (vCPU thread, main loop, pool worker,
host kernel), time flowing left to right in trace order, and one arrow per hand-over, each placed where
the recorded trace has it. Nothing is hard-coded: an arrow the trace does not contain is an error.
Reads events through the trace reader interface only (position, and the five fields of an event).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..trace.tracepoint import REGISTRY

ENTER = 0
KERNEL_LAYERS = ("vmx", "kvm", "host")  # Linux: KVM on the vCPU's or the caller's thread, and system calls
LANES = ("vCPU", "main loop", "worker", "kernel")


def lane_of(layer: str, thread: str) -> str | None:
    """The actor a stage belongs to: Linux's stages to the kernel, the rest to the QEMU thread running it."""
    if layer in KERNEL_LAYERS:
        return "kernel"
    if thread.startswith("vcpu"):
        return "vCPU"
    if thread == "main":
        return "main loop"
    if thread.startswith("worker"):
        return "worker"
    return None


@dataclass(frozen=True)
class Arrow:
    """One hand-over found in the trace: from the entry of `src` to the entry of `dst`."""

    label: str
    src: str
    dst: str
    src_index: int
    dst_index: int
    src_lane: str
    dst_lane: str
    src_thread: str
    dst_thread: str


def _spec(spec: str) -> tuple[str, str | None]:
    """"name" or "name@layer" (a name can be both QEMU's and Linux's, e.g. kvm_set_irq)."""
    name, _, layer = spec.partition("@")
    return name, layer or None


def _entries(events: Sequence[Any]) -> list[tuple[int, str, str, str]]:
    """(index, function, layer, thread) of every entry, in trace order."""
    out = []
    for i in range(len(events)):
        e = events[i]
        if e[0] == ENTER:
            tp = REGISTRY[e[1]]
            out.append((i, tp.name, tp.layer, e[2]))
    return out


def entry_index(events: Sequence[Any], name: str, start: int = 0, before: int | None = None) -> int:
    """Trace index of the first entry of `name` at or after `start`; with `before`, the last entry before
    that index instead (e.g. the worker's aio_worker that led to a pwrite). Point events count as positions
    too, so never derive an index by counting entries from a stage list."""
    fn, layer = _spec(name)
    hits = [i for i, f, l, _t in _entries(events) if f == fn and (layer is None or l == layer)
            and i >= start and (before is None or i < before)]
    if not hits:
        where = f"before index {before}" if before is not None else f"after index {start}"
        raise ValueError(f"the trace has no entry of {name!r} {where}")
    return hits[-1] if before is not None else hits[0]


def find_arrows(events: Sequence[Any], arrows: Sequence[tuple[str, str, str]], start: int = 0,
                lane: Callable[[str, str], str | None] = lane_of) -> list[Arrow]:
    """Place each (src, dst, label): src is the first entry of that function at or after the previous
    arrow's source (or `start`), dst the first entry of its function after src."""
    entries = _entries(events)
    found: list[Arrow] = []
    cursor = start
    for src, dst, label in arrows:
        (sn, sl), (dn, dl) = _spec(src), _spec(dst)
        s = next((x for x in entries if x[0] >= cursor and x[1] == sn and (sl is None or x[2] == sl)), None)
        if s is None:
            raise ValueError(f"the trace has no entry of {src!r} after index {cursor} (arrow {label!r})")
        d = next((x for x in entries if x[0] > s[0] and x[1] == dn and (dl is None or x[2] == dl)), None)
        if d is None:
            raise ValueError(f"the trace has no entry of {dst!r} after {src!r} at index {s[0]} (arrow {label!r})")
        found.append(Arrow(label, sn, dn, s[0], d[0], lane(s[2], s[3]), lane(d[2], d[3]), s[3], d[3]))
        cursor = s[0]
    return found


def thread_sequence(events: Sequence[Any], arrows: Sequence[tuple[str, str, str]], *, start: int = 0,
                    lanes: Sequence[str] = LANES, lane: Callable[[str, str], str | None] = lane_of,
                    title: str = "", ax: Any = None) -> list[Arrow]:
    """Draw the sequence diagram on `ax` (a new figure if None) and return the arrows as data.

    events: the recorded trace (`m.trace.events` or `dbg.events`)
    arrows: (source function, destination function, label); "name@layer" picks one layer's function
    start:  the trace index to search from
    """
    import matplotlib.pyplot as plt

    found = find_arrows(events, arrows, start, lane)
    lo = min(a.src_index for a in found)
    hi = max(a.dst_index for a in found)
    pad = max(5, (hi - lo) // 30)
    if ax is None:
        _fig, ax = plt.subplots(figsize=(10, 0.9 * len(lanes) + 1.2))
    y = {name: len(lanes) - 1 - k for k, name in enumerate(lanes)}
    # lifelines, with a tick at every stage the actor ran in the window (what it was busy with)
    for name in lanes:
        ax.axhline(y[name], color="0.8", lw=1, zorder=0)
    for i, fn, layer, thread in _entries(events):
        if lo - pad <= i <= hi + pad:
            who = lane(layer, thread)
            if who in y:
                ax.plot(i, y[who], "|", color="0.6", ms=8, zorder=1)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, a in enumerate(found):
        c = colours[k % len(colours)]
        y0, y1 = y[a.src_lane], y[a.dst_lane]
        style = "arc3,rad=-0.5" if y0 == y1 else "arc3,rad=0"
        ax.annotate("", xy=(a.dst_index, y1), xytext=(a.src_index, y0),
                    arrowprops=dict(arrowstyle="-|>", color=c, lw=1.8, connectionstyle=style), zorder=3)
        ax.plot([a.src_index, a.dst_index], [y0, y1], "o", color=c, ms=4, zorder=4)
        ym = (y0 + y1) / 2 + (0.35 if y0 == y1 else 0.12)
        ax.text((a.src_index + a.dst_index) / 2, ym, a.label, color=c, fontsize=8, ha="center", va="bottom",
                zorder=5, bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
    ax.set_yticks([y[n] for n in lanes])
    ax.set_yticklabels(list(lanes))
    ax.set_ylim(-0.7, len(lanes) - 0.3)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_xlabel("position in the recorded trace (event index)")
    if title:
        ax.set_title(title)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return found


__all__ = ["thread_sequence", "find_arrows", "entry_index", "lane_of", "Arrow", "LANES"]
