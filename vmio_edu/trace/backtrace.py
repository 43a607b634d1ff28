"""gdb-style backtraces from the shadow stack.

gdb shows each caller's frame at the line of its call into the next frame, and the innermost frame at the
function itself. The call lines come from the source map (`calls_at`), so a frame reads
`#2 ide_data_writew (addr=496, val=...) at hw/ide/core.c:1907`, as in a real gdb session on QEMU 1.6.1.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .sources import call_site
from .tracepoint import Frame


@dataclass
class BtFrame:
    """One line of a backtrace, innermost first."""

    level: int
    function: str
    args: dict
    file: str
    line: int | None
    layer: str
    thread: str

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.args.items())
        where = f" at {self.file}:{self.line}" if self.file else ""
        return f"#{self.level:<2} {self.function} ({args}){where}"

    def to_json(self) -> dict:
        return asdict(self)


def show_value(v: Any) -> Any:
    """How an argument value is shown: numbers as numbers, functions by name, objects by type."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return v
    if v is None:
        return "0x0"
    if callable(v) and hasattr(v, "__name__"):
        return v.__name__
    if isinstance(v, (bytes, bytearray, memoryview)):
        return f"<{len(v)} bytes>"
    if isinstance(v, str):
        return v
    return f"<{type(v).__name__}>"


def backtrace(stack: list[Frame], thread: str) -> list[BtFrame]:
    """The frames of `stack` (outermost first, as kept), returned innermost first."""
    out: list[BtFrame] = []
    n = len(stack)
    for level, i in enumerate(range(n - 1, -1, -1)):
        f = stack[i]
        src = f.tp.source
        line = src.line if src else None
        if i < n - 1:  # a caller: show the line that calls the frame above it
            line = call_site(f.tp.side, f.tp.name, stack[i + 1].tp.name) or line
        args = {name: show_value(v) for name, v in zip(f.tp.argnames, f.args)}
        out.append(BtFrame(level, f.tp.name, args, src.file if src else "", line, f.tp.layer, thread))
    return out


def format_backtrace(frames: list[BtFrame]) -> str:
    return "\n".join(str(f) for f in frames)
