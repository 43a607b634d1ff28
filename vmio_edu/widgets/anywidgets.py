"""The two custom views, as anywidgets: the swimlane timeline and the hex view with field overlay.

Their JavaScript sits beside this file. Python sets their data (plain lists and dicts from render.py) on the
kernel thread; the timeline sends `{"event": "goto", "index": i}` back when it is clicked, and the panel
turns that into `dbg.goto(i)`.
"""
from __future__ import annotations

from importlib import resources
from typing import Any, Callable

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
        # on_msg, not an override of ipywidgets' own Widget._handle_msg(self, msg) (which dispatches every
        # comm message, state updates included): overriding it made every click a TypeError.
        self.on_msg(self._on_custom_msg)

    def _on_custom_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        # A custom message from the browser (on the kernel thread, or an ipykernel 7 subshell thread: the
        # panel's on_goto hands the work to the kernel thread).
        if isinstance(content, dict) and content.get("event") == "goto" and self._on_goto is not None:
            try:
                index = int(content["index"])
            except (KeyError, TypeError, ValueError):
                return  # not a message this widget sends
            self._on_goto(index)


class HexWidget(anywidget.AnyWidget):
    """Bytes in rows of 16 with named fields coloured over them (`regions` from render.hex_region), the
    bytes that changed since the previous stop marked. A region with a `source` (disk, qiov, io_buffer,
    pio) makes its bytes clickable: a click sends `{"event": "byte", "source", "offset"}` and the panel
    shows that byte's journey (Debugger.provenance)."""

    _esm = _static("hexview.js")
    regions = traitlets.List().tag(sync=True)

    def __init__(self, on_byte: Callable[[str, int], None] | None = None, **kw) -> None:
        super().__init__(**kw)
        self._on_byte = on_byte
        self.on_msg(self._on_custom_msg)

    def _on_custom_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("event") == "byte" and self._on_byte is not None:
            try:
                source, offset = str(content["source"]), int(content["offset"])
            except (KeyError, TypeError, ValueError):
                return
            self._on_byte(source, offset)
