"""JupyterLab views of a parked vmio-edu machine: read-only, updated on the kernel thread only.

    from vmio_edu.widgets import DebuggerPanel
    DebuggerPanel(dbg)

`render` holds the browser-free rendering (HTML strings, timeline data), `source` the source pane; `panel` the
ipywidgets panel (styled by panel.css);
`anywidgets` the swimlane timeline and the hex view; `diffview` the two stacks' paths side by side. ipywidgets and anywidget come with the `notebook` extra.
"""
from __future__ import annotations

__all__ = ["DebuggerPanel", "diff_view"]


def __getattr__(name: str):
    if name == "DebuggerPanel":
        from .panel import DebuggerPanel
        return DebuggerPanel
    if name == "diff_view":  # the two stacks side by side (vmio-edu diff-paths)
        from .diffview import diff_view
        return diff_view
    raise AttributeError(name)
