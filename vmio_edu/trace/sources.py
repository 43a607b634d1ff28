"""Where each modelled function lives in the real sources.

`sources.json` is built from the project's source map (shared/reference/source-map.json): for every function
on the path it gives the real file and line at QEMU v1.6.1 or Linux v3.7, and the lines where it calls the
next function. gdb prints a caller's frame at the line of that call, so backtraces use `calls_at`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

QEMU_TAG = "v1.6.1"
LINUX_TAG = "v3.7"


@dataclass(frozen=True)
class SourceRef:
    """A function's home in the real tree: `file:line` at `tag`."""

    side: str  # "qemu" or "linux"
    function: str
    file: str
    line: int
    tag: str
    role: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@lru_cache(maxsize=1)
def _table() -> dict:
    return json.loads(resources.files(__package__).joinpath("sources.json").read_text())


def lookup(side: str, function: str) -> SourceRef | None:
    """The real definition of `function` on `side` ("qemu" or "linux"), or None if the map lacks it."""
    e = _table().get(f"{side}:{function}")
    if e is None:
        return None
    return SourceRef(side, function, e["file"], e["line"], e["tag"], e.get("role", ""))


@lru_cache(maxsize=None)
def call_site(side: str, caller: str, callee: str) -> int | None:
    """The line in `caller` that calls `callee` (the line gdb shows for the caller's frame)."""
    e = _table().get(f"{side}:{caller}")
    if e is None:
        return None
    for line, text in e["calls_at"]:
        if f"{callee}(" in text.replace(" (", "("):
            return line
    return None


def all_functions() -> list[str]:
    """Every `side:function` key the map knows."""
    return sorted(_table())
