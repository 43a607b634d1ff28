"""A ladder figure of diff-paths: the 1.6.1 stages down the left, the 10.2 stages down the right, a rung
between each matched pair (matplotlib).

    from vmio_edu.widgets.diffladder import ladder
    rungs = ladder(result, layers=("qemu-ide", "qemu-block", "qemu-threadpool", "host"))

Each column lists its own stack's stages in path order, so where 10.2 adds stages its column runs longer
and the rungs slope down: the picture of "more layers under other names". Rungs are coloured by kind
(grey SAME, blue RENAMED, orange MOVED); names only on one side are green (ADDED) or red (REMOVED).
Reads the comparison only (a `DiffResult` or its JSON dict).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

COLOURS = {"SAME": "0.6", "RENAMED": "#1f77b4", "MOVED": "#ff7f0e", "ADDED": "#2ca02c", "REMOVED": "#d62728"}
DEFAULT_LAYERS = ("qemu-ide", "qemu-block", "qemu-threadpool", "host")


@dataclass(frozen=True)
class Rung:
    """One row of the figure: the stage's position in each column (None: not on that side)."""

    kind: str
    old: str | None
    new: str | None
    old_y: int | None
    new_y: int | None


def rungs(result: Any, layers: Sequence[str] = DEFAULT_LAYERS, threads: Sequence[str] | None = None
          ) -> list[Rung]:
    """The rows of the figure, as data: the aligned rows whose stage is in `layers` (and on `threads`,
    by thread name, if given), each side numbered in its own path order. Merged rows (a stage repeated
    from the chain listed first) are left out."""
    d = result if isinstance(result, dict) else result.to_json()
    out: list[Rung] = []
    oy = ny = 0
    for r in d["rows"]:
        s = r["new"] or r["old"]
        if s["layer"] not in layers or (threads is not None and s["thread"] not in threads) or r["merged"]:
            continue
        o, n = r["old"], r["new"]
        out.append(Rung(r["kind"], o["name"] if o else None, n["name"] if n else None,
                        oy if o else None, ny if n else None))
        oy += o is not None
        ny += n is not None
    if not out:
        raise ValueError(f"no aligned stage is in the layers {', '.join(layers)}")
    return out


def ladder(result: Any, layers: Sequence[str] = DEFAULT_LAYERS, threads: Sequence[str] | None = None,
           *, title: str = "", ax: Any = None) -> list[Rung]:
    """Draw the ladder on `ax` (a new figure if None); return its rungs as data."""
    import matplotlib.pyplot as plt

    d = result if isinstance(result, dict) else result.to_json()
    rs = rungs(d, layers, threads)
    n = max(max((r.old_y for r in rs if r.old_y is not None), default=0),
            max((r.new_y for r in rs if r.new_y is not None), default=0)) + 1
    if ax is None:
        _fig, ax = plt.subplots(figsize=(9, 0.24 * n + 1.0))
    for r in rs:
        if r.old_y is not None:
            ax.text(0, -r.old_y, r.old + " ", ha="right", va="center", fontsize=8, family="monospace",
                    color=COLOURS["REMOVED"] if r.kind == "REMOVED" else "black")
        if r.new_y is not None:
            ax.text(1, -r.new_y, " " + r.new, ha="left", va="center", fontsize=8, family="monospace",
                    color=COLOURS["ADDED"] if r.kind == "ADDED" else "black")
        if r.old_y is not None and r.new_y is not None:
            ax.plot([0, 1], [-r.old_y, -r.new_y], color=COLOURS[r.kind], lw=1.6 if r.kind != "SAME" else 1)
    old_name, new_name = d["stacks"]["old"]["qemu"], d["stacks"]["new"]["qemu"]
    ax.text(0, 1, old_name + " ", ha="right", va="bottom", fontsize=9, weight="bold")
    ax.text(1, 1, " " + new_name, ha="left", va="bottom", fontsize=9, weight="bold")
    for kind in ("SAME", "RENAMED", "MOVED", "ADDED", "REMOVED"):
        ax.plot([], [], color=COLOURS[kind], lw=2, label=kind)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, -0.02 - 1.2 / max(n, 1)), ncol=5, fontsize=8, frameon=False)
    ax.set_xlim(-1.3, 2.3)
    ax.set_ylim(-n, 2)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return rs


def ladder_svg(result: Any, layers: Sequence[str] = DEFAULT_LAYERS, threads: Sequence[str] | None = None) -> str:
    """The ladder as an SVG string for HTML views: a transparent background and text left without a
    colour, so the page's CSS gives it the theme's (the panel's Ladder tab)."""
    import io

    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "vmio-edu"}):
        fig = Figure(figsize=(9, 1))  # (not pyplot's: nothing to close, no figure shown twice in a notebook)
        ax = fig.add_subplot()
        rs = ladder(result, layers, threads, ax=ax)
        fig.set_size_inches(9, 0.24 * (max(len(rs), 1) + 4))
        buf = io.StringIO()
        fig.savefig(buf, format="svg", transparent=True, bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.find("<svg"):]


__all__ = ["COLOURS", "DEFAULT_LAYERS", "Rung", "ladder", "ladder_svg", "rungs"]
