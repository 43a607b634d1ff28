"""Where each modelled function lives in the real sources.

`sources.json` is built from the project's source map (shared/reference/source-map.json): for every function
on the path it gives the real file and line at QEMU v1.6.1 or Linux v3.7, and the lines where it calls the
next function. gdb prints a caller's frame at the line of that call, so backtraces use `calls_at`.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

QEMU_TAG = "v1.6.1"
LINUX_TAG = "v3.7"
# The modern stack (issue 15): QEMU v10.2.0 on Linux v6.12.
MODERN_QEMU_TAG = "v10.2.0"
MODERN_LINUX_TAG = "v6.12"
STACKS = ("1.6.1", "10.2")


def tags(stack: str) -> tuple[str, str]:
    """(QEMU tag, Linux tag) of a stack."""
    return (QEMU_TAG, LINUX_TAG) if stack == "1.6.1" else (MODERN_QEMU_TAG, MODERN_LINUX_TAG)


@dataclass(frozen=True)
class SourceRef:
    """A function's home in the real tree: `file:line` at `tag`."""

    side: str  # "qemu" or "linux"
    function: str
    file: str
    line: int
    tag: str
    role: str = ""
    stop: int | None = None  # the line gdb stops at: the first statement after the prologue
    params: tuple[str, ...] = ()  # the parameter names of the real signature

    @property
    def stop_line(self) -> int:
        """The line a breakpoint on the function reports (gdb skips the prologue and the declarations
        without initializers, so `break bdrv_aio_writev` stops at block.c:3388, not at 3384)."""
        return self.stop or self.line

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@lru_cache(maxsize=1)
def _table() -> dict:
    """The reference map, plus `sources_extra.json`: lines we read ourselves for functions it lacks, and
    call lines (`calls_at` only) it lacks for functions it has."""
    pkg = resources.files(__package__)
    table = json.loads(pkg.joinpath("sources.json").read_text())
    for key, e in json.loads(pkg.joinpath("sources_extra.json").read_text()).items():
        if key.startswith("_"):
            continue
        if key in table and set(e) == {"calls_at"}:
            table[key] = dict(table[key], calls_at=sorted(table[key]["calls_at"] + e["calls_at"]))
            continue
        side = key.split(":")[0]
        table.setdefault(key, {"calls_at": [], "role": "", "tag": QEMU_TAG if side == "qemu" else LINUX_TAG,
                               **e})
    return table


@lru_cache(maxsize=1)
def _stops() -> dict:
    """`sources_stops.json`: per function, the line a breakpoint stops at and the real parameter names
    (read at the tags; see its `_provenance`)."""
    return json.loads(resources.files(__package__).joinpath("sources_stops.json").read_text())


@lru_cache(maxsize=1)
def _modern_table() -> dict:
    """The modern stack's map: the reference map's `modern` members (keyed by the modern name), then
    `sources_modern.json`, our own reading of QEMU v10.2.0 / Linux v6.12 for the functions the map lacks.
    Each entry keeps line numbers and callee names only (`calls_at`: [[line, "callee"]])."""
    table: dict = {}
    for key, e in _table().items():
        m = e.get("modern")
        if not m or not m.get("function") or not m.get("line"):
            continue
        side = key.split(":")[0]
        table.setdefault(f"{side}:{m['function']}", {"file": m["file"], "line": m["line"], "tag": m["tag"],
                                                      "role": e.get("role", ""), "calls_at": []})
    pkg = resources.files(__package__)
    for key, e in json.loads(pkg.joinpath("sources_modern.json").read_text()).items():
        if key.startswith("_"):
            continue
        side = key.split(":")[0]
        calls = [[line, f"{callee}("] for line, callee in e.get("calls_at", [])]
        base = table.get(key, {})
        table[key] = {**base, **e, "calls_at": sorted(base.get("calls_at", []) + calls),
                      "tag": e.get("tag") or tags("10.2")[0 if side == "qemu" else 1]}
    return table


def lookup(side: str, function: str, stack: str = "1.6.1") -> SourceRef | None:
    """The real definition of `function` on `side` ("qemu" or "linux") in `stack` ("1.6.1": QEMU v1.6.1 /
    Linux v3.7; "10.2": QEMU v10.2.0 / Linux v6.12), or None if the map lacks it."""
    if stack != "1.6.1":
        e = _modern_table().get(f"{side}:{function}")
        if e is None:
            return None
        return SourceRef(side, function, e["file"], e["line"], e["tag"], e.get("role", ""), e.get("stop"),
                         tuple(e.get("params", ())))
    e = _table().get(f"{side}:{function}")
    if e is None:
        return None
    st = _stops().get(f"{side}:{function}", {})
    return SourceRef(side, function, e["file"], e["line"], e["tag"], e.get("role", ""), st.get("stop"),
                     tuple(st.get("params", ())))


# a call through a pointer: `s->end_transfer_func(s)`, a local `access(...)`, or a table of handlers
# (`kvm_vmx_exit_handlers[exit_reason](vcpu)`, Linux 3.7's vmx_handle_exit)
_PTR_CALL = re.compile(r"(?:->|\.)(\w+)\s*\(|^\s*(?:\w+\s*=\s*)?(access|cb|func|fn)\s*\("
                       r"|(\w+)\[[^\]]*\]\s*\(")


@lru_cache(maxsize=None)
def call_site(side: str, caller: str, callee: str, stack: str = "1.6.1") -> int | None:
    """The line in `caller` that calls `callee` (the line gdb shows for the caller's frame).

    C often calls through pointers (`s->end_transfer_func(s)`, `bs->drv->bdrv_aio_readv(...)`,
    `access(...)`), so after a direct `callee(` we try a pointer call whose member name ends like the
    callee (`bdrv_aio_readv` for `raw_aio_readv`), then any pointer call.
    """
    e = (_table() if stack == "1.6.1" else _modern_table()).get(f"{side}:{caller}")
    if e is None:
        return None
    calls = [(line, text.replace(" (", "(")) for line, text in e["calls_at"]]
    for line, text in calls:
        if re.search(rf"\b{re.escape(callee)}\(", text):
            return line
    parts = callee.split("_")
    tails = ["_".join(parts[i:]) for i in range(1, len(parts))]
    pointer_calls = [(line, m.group(1) or m.group(2) or m.group(3)) for line, text in calls
                     for m in [_PTR_CALL.search(text)] if m]
    for tail in tails:
        for line, member in pointer_calls:
            if member.endswith(tail):
                return line
    return pointer_calls[0][0] if pointer_calls else None


def all_functions() -> list[str]:
    """Every `side:function` key the map knows."""
    return sorted(_table())
