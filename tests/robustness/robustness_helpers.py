"""Shared helpers for the robustness tests (issue 6); conftest.py makes the fixtures available.

Every failure test ends the same way: the machine closes, and the image holds exactly what the completed
writes put there. To check that, each test starts from an image filled with a known seeded pattern and
keeps a reference copy; `assert_image_matches` compares the image, byte for byte, with the reference plus
the writes that completed, and names the first sector that differs.

"Completed writes" come from the real system calls: `pwrite_log` wraps `os.pwrite` (the call
`sys_pwrite64` makes on the pool worker) and records every write that returned, with its offset and
bytes, independently of the model's own bookkeeping. It can also run a hook just before the n-th call,
which is how the tests fill the disk or press Ctrl-C at an exact point of a run.
"""
from __future__ import annotations

import os
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

import pytest

SECTOR = 512


# -- images with a reference copy ---------------------------------------------------------------------
@dataclass
class Disk:
    """A raw image filled with a seeded random pattern, and a copy of it taken before any run."""

    path: Path
    reference_path: Path
    sectors: int
    seed: int

    @property
    def reference(self) -> bytes:
        return self.reference_path.read_bytes()

    def ref_sector(self, n: int, count: int = 1) -> bytes:
        return self.reference[n * SECTOR:(n + count) * SECTOR]


def pattern(seed: int, nbytes: int) -> bytes:
    return random.Random(seed).randbytes(nbytes)


@pytest.fixture
def make_disk(tmp_path):
    """make_disk(sectors=64, seed=1, name="disk.img") -> Disk (image + reference copy under tmp_path)."""

    def _make(sectors: int = 64, seed: int = 1, name: str = "disk.img") -> Disk:
        data = pattern(seed, sectors * SECTOR)
        path = tmp_path / name
        ref = tmp_path / (name + ".reference")
        path.write_bytes(data)
        ref.write_bytes(data)
        return Disk(path, ref, sectors, seed)

    return _make


@pytest.fixture
def disk(make_disk) -> Disk:
    """A 64-sector image with a seeded pattern and its reference copy."""
    return make_disk()


def _as_bytes(x: "bytes | str | os.PathLike | Disk") -> bytes:
    if isinstance(x, Disk):
        x = x.path
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x)
    return Path(x).read_bytes()


def _writes(completed_writes: "Mapping[int, bytes] | Iterable[tuple[int, bytes]]") -> list[tuple[int, bytes]]:
    items = completed_writes.items() if isinstance(completed_writes, Mapping) else completed_writes
    out = []
    for sector, data in items:
        if len(data) % SECTOR:
            raise ValueError(f"write at sector {sector} is {len(data)} bytes, not whole sectors")
        out.append((int(sector), bytes(data)))
    return out


def expected_image(reference: bytes, completed_writes) -> bytes:
    """The reference with the writes applied in order (a write past the end grows the file, holes as 0)."""
    img = bytearray(reference)
    for sector, data in _writes(completed_writes):
        start = sector * SECTOR
        if start + len(data) > len(img):
            img.extend(bytes(start + len(data) - len(img)))
        img[start:start + len(data)] = data
    return bytes(img)


def assert_image_matches(image, reference, completed_writes=()) -> None:
    """Assert `image` equals `reference` with exactly `completed_writes` applied.

    image, reference: a path, a `Disk` (its image / its reference copy) or bytes.
    completed_writes: {sector: bytes} or [(sector, bytes), ...], whole sectors, applied in order.
    On failure the message names the first differing sector and where its expected bytes came from.
    """
    if isinstance(reference, Disk):
        reference = reference.reference
    now = _as_bytes(image)
    ref = _as_bytes(reference)
    writes = _writes(completed_writes)
    want = expected_image(ref, writes)
    if now == want:
        return
    n = max(len(now), len(want))
    for s in range(0, (n + SECTOR - 1) // SECTOR):
        a, b = now[s * SECTOR:(s + 1) * SECTOR], want[s * SECTOR:(s + 1) * SECTOR]
        if a != b:
            src = "the reference"
            for sector, data in writes:
                if sector <= s < sector + len(data) // SECTOR:
                    src = f"the completed write at sector {sector}"
            if s * SECTOR >= len(ref) and src == "the reference":
                src = "a hole (zeros) past the reference's end"
            if not a:
                got = "nothing (the image ends before it)"
            elif a == ref[s * SECTOR:(s + 1) * SECTOR]:
                got = "the reference's bytes"
            else:
                got = f"other bytes (first {a[:8].hex()})"
            raise AssertionError(
                f"image differs first at sector {s}: expected {src} ({b[:8].hex() or 'no sector'}), got "
                f"{got}; image is {len(now)} bytes, expected {len(want)}")
    raise AssertionError("image differs from the expected bytes")  # pragma: no cover


# -- the real pwrite calls ----------------------------------------------------------------------------
@dataclass
class PwriteCall:
    fd: int
    pos: int
    data: bytes
    result: "int | OSError"
    thread: str


@dataclass
class PwriteLog:
    """Every os.pwrite made while the fixture is active, in order, with what it returned."""

    calls: list[PwriteCall] = field(default_factory=list)
    before: dict[int, Callable[[int, int], None]] = field(default_factory=dict)  # call index -> hook(fd, pos)
    after: dict[int, Callable[[int, int], None]] = field(default_factory=dict)

    def completed(self, fd: int | None = None) -> list[tuple[int, bytes]]:
        """(sector, bytes) of the writes that returned success (optionally only those on `fd`)."""
        out = []
        for c in self.calls:
            if isinstance(c.result, int) and c.result > 0 and (fd is None or c.fd == fd):
                assert c.pos % SECTOR == 0 and c.result % SECTOR == 0, c
                out.append((c.pos // SECTOR, c.data[:c.result]))
        return out

    def failed(self) -> list[PwriteCall]:
        return [c for c in self.calls if isinstance(c.result, OSError)]


@pytest.fixture
def pwrite_log(monkeypatch) -> PwriteLog:
    log = PwriteLog()
    real = os.pwrite

    def pwrite(fd, data, pos):
        i = len(log.calls)
        if i in log.before:
            log.before[i](fd, pos)
        data = bytes(data)
        call = PwriteCall(fd, pos, data, 0, threading.current_thread().name)
        log.calls.append(call)
        try:
            call.result = real(fd, data, pos)
        except OSError as e:
            call.result = e
            raise
        if i in log.after:
            log.after[i](fd, pos)
        return call.result

    monkeypatch.setattr(os, "pwrite", pwrite)
    return log


# -- leaks -------------------------------------------------------------------------------------------
def ata_command_asm(cmd: int, lba: int, count: int = 1) -> str:
    """Guest assembly (the same in 16-, 32- and 64-bit code) that selects the master in LBA mode, sets
    the sector count and an LBA below 256, and writes the command byte; DX is left at 0x1f7 (status)."""
    return f"""    mov dx, 0x1f6
    mov al, 0xe0
    out dx, al
    mov dx, 0x1f2
    mov al, {count}
    out dx, al
    mov dx, 0x1f3
    mov al, {lba}
    out dx, al
    mov dx, 0x1f4
    xor al, al
    out dx, al
    mov dx, 0x1f5
    out dx, al
    mov dx, 0x1f7
    mov al, {cmd:#x}
    out dx, al"""


def open_fds() -> set[str]:
    """This process's open file descriptors, as "fd -> target" strings."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.add(f"{fd} -> {os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            pass  # the fd listdir itself used
    return out


def assert_closed_cleanly(m, fds_before: set[str] | None = None) -> None:
    """After m.close(): no model thread alive, none left in threading.enumerate(), no fd leaked."""
    mine = [t.thread for t in m.sched.threads]
    assert mine, "the machine had no model threads?"
    assert not [t.name for t in mine if t.is_alive()]
    alive = set(threading.enumerate())
    assert not [t.name for t in mine if t in alive]
    if fds_before is not None:
        leaked = open_fds() - fds_before
        assert not leaked, f"file descriptors leaked: {sorted(leaked)}"
