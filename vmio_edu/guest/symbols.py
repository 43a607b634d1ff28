"""Guest symbols: the address of every label of a guest program, and the source line of every
instruction, for guest breakpoints (`break_at(guest_label=...)`) and guest frames in backtraces.

Keystone has no symbol table, so the assembler is asked for it: the source is assembled again with a
probe label before each instruction line and a `.quad` of every label appended after the code. Appending
data after the code changes no encoding before it, and a label emits no bytes, so the code must come out
identical (checked); the quads are then the addresses.
"""
from __future__ import annotations

import bisect
import re
import struct
from dataclasses import dataclass
from functools import lru_cache

from ..errors import VmioError
from .assembler import _COMMENT, _symbols, assemble

_PROBE = "__vmio_line_{}"
_DIRECTIVE = re.compile(r"^\s*\.")


@dataclass(frozen=True)
class SymbolTable:
    labels: dict[str, int]          # label -> linear address
    lines: tuple[tuple[int, int], ...]  # (address, 1-based source line) of each instruction, by address

    def address(self, label: str) -> int:
        name, _, off = label.partition("+")
        name = name.strip()
        if name not in self.labels:
            import difflib
            near = difflib.get_close_matches(name, list(self.labels), n=3)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise VmioError(f"the guest has no label {name!r}{hint}")
        return self.labels[name] + (int(off, 0) if off.strip() else 0)

    def symbolize(self, addr: int) -> str:
        """`label+offset` of the nearest label at or before `addr` (gdb's <symbol+off>)."""
        best = max(((a, n) for n, a in self.labels.items() if a <= addr and not n.startswith("__")),
                   default=None)
        if best is None:
            return f"{addr:#x}"
        a, n = best
        return n if a == addr else f"{n}+{addr - a}"

    def line_of(self, addr: int) -> int | None:
        i = bisect.bisect_right(self.lines, (addr, 1 << 30)) - 1
        return self.lines[i][1] if i >= 0 and self.lines[i][0] == addr else None


@lru_cache(maxsize=16)
def _table(source: str, mode: int, base: int) -> SymbolTable:
    code = assemble(source, mode, base)
    out, probes = [], []
    for k, line in enumerate(source.split("\n"), 1):
        labels, equs = _symbols(line)
        text = _COMMENT.sub("", line)
        for name in labels:  # what follows the labels on the line
            text = text.split(":", 1)[1] if ":" in text else text
        if text.strip() and not equs and not _DIRECTIVE.match(text):
            probes.append((_PROBE.format(k), k))
            out.append(f"{_PROBE.format(k)}:")
        out.append(line)
    names = [n for line in source.split("\n") for n in _symbols(line)[0]] + [p for p, _ in probes]
    probe_src = "\n".join(out) + "\n" + "\n".join(f".quad {n}" for n in names) + "\n"
    full = assemble(probe_src, mode, base)
    if full[:len(code)] != code or len(full) != len(code) + 8 * len(names):
        raise VmioError("cannot read the guest's symbols (probing the source changed its code)")
    addrs = struct.unpack(f"<{len(names)}Q", full[len(code):])
    table = dict(zip(names, addrs))
    labels = {n: a for n, a in table.items() if not n.startswith("__vmio_line_")}
    lines = tuple(sorted((table[p], k) for p, k in probes))
    return SymbolTable(labels, lines)


def symbols(program) -> SymbolTable:
    """The symbol table of a GuestProgram (a guest given as raw bytes has none: VmioError)."""
    if program is None or not hasattr(program, "source"):
        raise VmioError("this guest was given as raw machine code, so it has no labels: use "
                        "guest_addr=… instead of guest_label=…")
    return _table(program.source, program.mode, program.load_addr)
