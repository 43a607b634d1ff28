"""The two custom views, as anywidgets: the swimlane timeline and the hex view with field overlay.

Their JavaScript sits beside this file. Python sets their data (plain lists and dicts from render.py) on the
kernel thread; the timeline sends `{"event": "goto", "index": i}` back when it is clicked, and the panel
turns that into `dbg.goto(i)`.
"""
from __future__ import annotations

from importlib import resources
from typing import Callable

import anywidget
import traitlets


def _static(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text()


class TimelineWidget(anywidget.AnyWidget):
    """Lanes of layer × thread over the recorded trace, the current position, and a zoom strip around it."""

    _esm = _static("timeline.js")
    data = traitlets.Dict().tag(sync=True)  # timeline_data(): lanes, segments, length
    detail = traitlets.List().tag(sync=True)  # timeline_detail(): the entries around the position
    index = traitlets.Int(-1).tag(sync=True)

    def __init__(self, on_goto: Callable[[int], None] | None = None, **kw) -> None:
        super().__init__(**kw)
        self._on_goto = on_goto
        self.on_msg(self._handle_msg)

    def _handle_msg(self, _widget, content: dict, _buffers) -> None:
        # Comm messages arrive on the kernel thread, like button clicks.
        if isinstance(content, dict) and content.get("event") == "goto" and self._on_goto is not None:
            self._on_goto(int(content["index"]))


class HexWidget(anywidget.AnyWidget):
    """Bytes in rows of 16 with named fields coloured over them (`regions` from render.hex_regions...)."""

    _esm = _static("hexview.js")
    regions = traitlets.List().tag(sync=True)
