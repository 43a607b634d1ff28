"""Guest assembly to bytes (keystone) and bytes back to text (capstone).

`assemble` turns x86 source in keystone's Intel syntax into machine code placed at `base`. Results are
cached twice: in memory for this process and on disk, so a notebook that re-runs a cell does not pay
for keystone again. The disk cache lives in `$XDG_CACHE_HOME/vmio-edu/asm` (or `~/.cache/vmio-edu/asm`).
Each entry carries its own key and a checksum of its bytes; an entry that does not check out is
ignored and rewritten, never trusted.

Keystone reports *what* went wrong but not *where*. When it fails, we find the line ourselves: we
assemble growing prefixes of the source (with every label the rest of the source defines appended at
the end, so forward references still resolve) and look for the first prefix that fails.

Known keystone 0.9.2 pitfall (worth knowing when writing 64-bit guests): an absolute memory operand such
as `mov rsi, qword ptr [0x9010]` is encoded RIP-relative *without* subtracting the instruction's
address, so it reads the wrong place. Address memory through a register (`mov rbx, 0x9000` then
`[rbx + 0x10]`), as the default guest does.
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path

import capstone
import keystone

from ..errors import AssemblyError

__all__ = ["assemble", "disassemble", "cache_dir", "clear_memory_cache", "KEYSTONE_VERSION"]

_KS_MODES = {16: keystone.KS_MODE_16, 32: keystone.KS_MODE_32, 64: keystone.KS_MODE_64}
_CS_MODES = {16: capstone.CS_MODE_16, 32: capstone.CS_MODE_32, 64: capstone.CS_MODE_64}

# The keystone build is part of the cache key: a different keystone may encode differently.
KEYSTONE_VERSION = f"{getattr(keystone, '__version__', '?')}/{'.'.join(map(str, keystone.ks_version()))}"
_CACHE_FORMAT = b"VMIOASM1"  # bump when the entry layout or the key recipe changes
_MEMORY_CACHE_MAX = 512

_lock = threading.Lock()  # keystone handles are not documented as thread-safe
_engines: dict[int, keystone.Ks] = {}
_memory_cache: dict[bytes, bytes] = {}


# -- public API ---------------------------------------------------------------------------------------
def assemble(source: str, mode: int = 64, base: int = 0x1000, *, cache: bool = True) -> bytes:
    """Assemble `source` for `mode` (16, 32 or 64) as if loaded at guest address `base`.

    Raises AssemblyError naming keystone's error and the offending line (number and text).
    `cache=False` skips both caches (used by tests and for timing).
    """
    _check_args(source, mode, base)
    source = source.replace("\r\n", "\n").replace("\r", "\n")
    _check_ascii(source)
    key = _cache_key(source, mode, base)
    if cache:
        hit = _memory_cache.get(key)
        if hit is None:
            hit = _disk_read(key)
            if hit is not None:
                _remember(key, hit)
        if hit is not None:
            return hit
    code = _assemble_uncached(source, mode, base)
    if cache:
        _remember(key, code)
        _disk_write(key, code)
    return code


def disassemble(code: bytes, mode: int = 64, base: int = 0x1000) -> list[tuple[int, str, str, str]]:
    """Decode `code` at `base` into (address, bytes as hex, mnemonic, operands) rows for views.

    Bytes capstone cannot decode become one-byte `(bad)` rows, so the listing always covers every byte.
    """
    if mode not in _CS_MODES:
        raise AssemblyError(f"mode must be 16, 32 or 64, not {mode!r}")
    md = capstone.Cs(capstone.CS_ARCH_X86, _CS_MODES[mode])
    code = bytes(code)
    rows: list[tuple[int, str, str, str]] = []
    pos = 0
    while pos < len(code):
        decoded = False
        for addr, size, mnemonic, op_str in md.disasm_lite(code[pos:], base + pos):
            rows.append((addr, code[pos:pos + size].hex(), mnemonic, op_str))
            pos += size
            decoded = True
        if pos < len(code) and not decoded:
            rows.append((base + pos, code[pos:pos + 1].hex(), "(bad)", ""))
            pos += 1
    return rows


def cache_dir() -> Path:
    """Where assembled code is cached on disk."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "vmio-edu" / "asm"


def clear_memory_cache() -> None:
    """Forget this process's cached results (the disk cache stays)."""
    with _lock:
        _memory_cache.clear()


# -- assembling and locating errors -------------------------------------------------------------------
def _check_args(source: object, mode: object, base: object) -> None:
    if not isinstance(source, str):
        raise AssemblyError(f"source must be a str, not {type(source).__name__}")
    if mode not in _KS_MODES:
        raise AssemblyError(f"mode must be 16, 32 or 64, not {mode!r}")
    if not isinstance(base, int) or base < 0 or base >= 1 << mode:
        raise AssemblyError(f"base {base!r} is not an address in {mode}-bit mode")


def _check_ascii(source: str) -> None:
    # keystone's Python binding encodes the source as ASCII; say where a stray character is.
    for number, text in enumerate(source.split("\n"), 1):
        for ch in text:
            if ord(ch) > 127:
                raise AssemblyError(
                    f"line {number}: non-ASCII character {ch!r} (keystone reads ASCII only): {text.strip()}")


def _engine(mode: int) -> keystone.Ks:
    ks = _engines.get(mode)
    if ks is None:
        ks = _engines[mode] = keystone.Ks(keystone.KS_ARCH_X86, _KS_MODES[mode])
    return ks


class _NoCode(Exception):
    """keystone gave no code and no error: it drops a whole source over some operands it cannot encode
    (`cmp byte [addr], 0` without `ptr`), so a silent empty result is an error here."""

    errno = "none"

    def __str__(self) -> str:
        return ("keystone produced no code and no error (it does that for an operand it cannot encode, "
                "e.g. `byte [addr]`: write `byte ptr [addr]`)")


def _has_code(source: str) -> bool:
    """Does `source` hold anything that should assemble to bytes (not only labels, .equ and comments)?"""
    for line in source.split("\n"):
        for stmt in _COMMENT.sub("", line).split(";"):
            while (m := _LABEL.match(stmt)):
                stmt = stmt[m.end():]
            stmt = stmt.strip()
            if stmt and not _EQU.match(stmt) and not stmt.startswith((".intel_syntax", ".code", ".globl")):
                return True
    return False


def _try(source: str, mode: int, base: int) -> tuple[bytes | None, Exception | None]:
    with _lock:
        try:
            encoding, _count = _engine(mode).asm(source, base)
        except keystone.KsError as e:
            return None, e
    if encoding is None and _has_code(source):
        return None, _NoCode()
    return bytes(encoding or b""), None


def _assemble_uncached(source: str, mode: int, base: int) -> bytes:
    code, err = _try(source, mode, base)
    if err is None:
        return code
    lines = source.split("\n")
    found = _find_bad_line(lines, mode, base)
    if found is None:
        raise AssemblyError(f"{err} (keystone error {err.errno}); could not narrow it to one line")
    number, line_err = found
    # The error of the first failing prefix is the one this line causes (the full source may
    # report a later problem first, e.g. a label defined twice further down).
    raise AssemblyError(
        f"line {number}: {line_err} (keystone error {line_err.errno}): {lines[number - 1].strip()}")


_COMMENT = re.compile(r"(#|//).*$")
_LABEL = re.compile(r"^\s*([A-Za-z_.$@?][\w.$@?]*)\s*:(?!:)")  # keystone rejects numeric `1:` labels
_EQU = re.compile(r"^\s*(?:\.equ|\.set)\s+([A-Za-z_.$@?][\w.$@?]*)\s*,|^\s*([A-Za-z_.$@?][\w.$@?]*)\s*=")


def _symbols(line: str) -> tuple[list[str], list[str]]:
    """Labels and .equ-style symbols a source line defines (a rough parse: enough to stub them)."""
    labels: list[str] = []
    equs: list[str] = []
    for stmt in _COMMENT.sub("", line).split(";"):
        while True:
            m = _LABEL.match(stmt)
            if not m:
                break
            labels.append(m.group(1))
            stmt = stmt[m.end():]
        m = _EQU.match(stmt)
        if m:
            equs.append(m.group(1) or m.group(2))
    return labels, equs


def _find_bad_line(lines: list[str], mode: int, base: int) -> tuple[int, keystone.KsError] | None:
    """The 1-based number of the first line whose prefix fails to assemble, and that prefix's error.

    Binary search over prefixes; it assumes that once a prefix fails, longer ones fail too.
    """
    per_line = [_symbols(line) for line in lines]
    all_labels = [name for labels, _ in per_line for name in labels]
    all_equs = [name for _, equs in per_line for name in equs]

    def error_of(k: int) -> keystone.KsError | None:
        defined = {n for labels, equs in per_line[:k] for n in labels + equs}
        # Symbols defined later in the source become harmless stubs at the end of the prefix.
        stubs = [f".equ {n}, 0" for n in dict.fromkeys(all_equs) if n not in defined]
        stubs += [f"{n}:" for n in dict.fromkeys(all_labels) if n not in defined]
        return _try("\n".join(lines[:k] + stubs), mode, base)[1]

    lo, hi = 1, len(lines)
    err = error_of(hi)
    if err is None:
        return None
    while lo < hi:  # invariant: prefix `hi` fails with `err`
        mid = (lo + hi) // 2
        mid_err = error_of(mid)
        if mid_err is not None:
            hi, err = mid, mid_err
        else:
            lo = mid + 1
    return hi, err


# -- the caches ---------------------------------------------------------------------------------------
def _cache_key(source: str, mode: int, base: int) -> bytes:
    h = hashlib.sha256()
    for part in (_CACHE_FORMAT, KEYSTONE_VERSION.encode(), str(mode).encode(), str(base).encode(),
                 source.encode()):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.digest()


def _remember(key: bytes, code: bytes) -> None:
    with _lock:
        if len(_memory_cache) >= _MEMORY_CACHE_MAX:
            _memory_cache.pop(next(iter(_memory_cache)))  # oldest first: deterministic
        _memory_cache[key] = code


def _entry_path(key: bytes) -> Path:
    return cache_dir() / f"{key.hex()}.bin"


def _disk_read(key: bytes) -> bytes | None:
    """The cached code for `key`, or None if absent or not exactly what we wrote."""
    try:
        blob = _entry_path(key).read_bytes()
    except OSError:
        return None
    # Layout: format magic, key, sha256(code), code.
    head = len(_CACHE_FORMAT)
    if len(blob) < head + 64 or blob[:head] != _CACHE_FORMAT or blob[head:head + 32] != key:
        return None
    digest, code = blob[head + 32:head + 64], blob[head + 64:]
    if hashlib.sha256(code).digest() != digest:
        return None
    return code


def _disk_write(key: bytes, code: bytes) -> None:
    path = _entry_path(key)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(_CACHE_FORMAT + key + hashlib.sha256(code).digest() + code)
        os.replace(tmp, path)  # atomic: readers see the old entry or the whole new one
    except OSError:
        # A read-only or full cache directory only costs speed.
        try:
            tmp.unlink()
        except OSError:
            pass
