"""Recorded real-KVM exit streams: the cases, how they are run, and what describes the host they came from.

`tests/fixtures/kvm_streams.json` holds, for each case below, the exit stream userspace saw on a real
/dev/kvm (every field of `ExitRecord`: reason, direction, size, port, count, data, RIP, RCX, MMIO address
and direction), with the host it was recorded on (kernel, KVM module, CPU vendor) and that host's facts.
Record it again with `python tests/fixtures/record_kvm_streams.py` on a machine with /dev/kvm.

Two host facts vary between kernels and CPUs, so they are detected (`probe_host_facts`), never assumed:
* `plain_out_rip`: where RIP is at the exit of a plain `out dx, al`: "past" the instruction (Linux 3.7's
  kvm_fast_pio_out skips it before exiting, and this project's kvm_pvm 6.18 host does the same) or "at" it;
* `rep_ins_page_batch`: how a `rep ins` batch that starts mid-page ends: "page-end" (Linux 3.7,
  emulate.c:1286-1296: the batch stops at the page end, counted in elements) or "bytes-as-elements" (6.x:
  the room to the page end is counted in bytes and used as an element count, L6.12 emulate.c:1438).
"""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from vmio_edu import Machine
from vmio_edu.guest import assemble
from vmio_edu.qemu.hw.misc.vmio_echo import VMIO_ECHO_BASE

FIXTURE = Path(__file__).parent / "fixtures" / "kvm_streams.json"
FIELDS = ("reason", "direction", "size", "port", "count", "data", "rip", "rcx", "phys_addr", "is_write")

_SUFFIX = {1: "b", 2: "w", 4: "d"}


def _string_io(kind: str, size: int, start: int, count: int) -> bytes:
    """A 16-bit guest: one `rep ins`/`rep outs` of `count` elements of `size` bytes at ES/DS:start
    (segment 0x3000, so guest-physical 0x30000 + start), on port 0x300 (nothing decodes it)."""
    src = ["mov ax, 0x3000", "mov es, ax", "mov ds, ax", "cld", "mov dx, 0x300", f"mov cx, {count}",
           f"mov si, {start:#x}", f"mov di, {start:#x}", f"rep {kind}{_SUFFIX[size]}", "cli", "hlt"]
    return assemble("\n".join(src), mode=16)


def _mmio() -> bytes:
    return assemble(f"""
        mov rbx, {VMIO_ECHO_BASE:#x}
        mov eax, dword ptr [rbx]
        mov dword ptr [rbx + 4], 0x12345678
        mov ecx, dword ptr [rbx + 0xc]
        mov edx, dword ptr [rbx + 8]
        mov byte ptr [rbx + 5], 0xff
        mov esi, dword ptr [rbx + 4]
        cli
        hlt""", mode=64)


def _misaligned() -> bytes:
    """outw to 0x1f1 and outl to 0x1f2, then read the registers back (16-bit): with portio's
    .impl.unaligned (ioport.c:203-204) they go whole to ide_data_writew/ide_data_writel, which drop them
    without DRQ, so the error and sector-count registers keep their reset values."""
    return assemble("mov dx, 0x1f1\nmov ax, 0xbeef\nout dx, ax\nmov dx, 0x1f2\nmov eax, 0x12345678\n"
                    "out dx, eax\nmov dx, 0x1f1\nin al, dx\nmov dx, 0x1f2\nin al, dx\nmov dx, 0x1f3\n"
                    "in al, dx\ncli\nhlt", mode=16)


def cases() -> dict[str, dict]:
    """name → Machine arguments. Page-aligned string I/O crosses the 1024-byte batch and the page end
    where Linux 3.7 and newer kernels agree; `page_split` cases start mid-page, where they may not."""
    out: dict[str, dict] = {
        "write_read": {"op": "both", "lba": 5, "sectors": 2, "seed": 3},
        "identify": {"op": "identify"},
        "unknown_command": {"op": 0x77},
        "mmio": {"guest": _mmio, "mode": 64},
        "misaligned_pio": {"guest": _misaligned, "mode": 16},
    }
    for size in (1, 2, 4):
        s = _SUFFIX[size]
        n = 2000 // size + 7  # more than one 1024-byte batch, from a page start: ends on 1024-byte bounds
        out[f"rep_ins{s}_batches"] = {"guest": ("ins", size, 0, n), "mode": 16}
        out[f"rep_outs{s}_page"] = {"guest": ("outs", size, 0xFF0, 48 // size), "mode": 16}  # across 0x1000
        out[f"rep_ins{s}_page_split"] = {"guest": ("ins", size, 0xF00, 512 // size), "mode": 16,
                                         "page_split": True}
    return out


def run_case(case: dict, engine: str) -> list[dict]:
    """Run one case on `engine` ("unicorn" or "kvm") and return its exits as JSON objects."""
    kw = {k: v for k, v in case.items() if k not in ("guest", "page_split")}
    g = case.get("guest")
    guest = g() if callable(g) else _string_io(*g) if g else None
    with Machine(guest, engine=engine, **kw) as m:
        m.run()
        return [x.to_json() for x in m.exits]


def host_identity() -> dict:
    """What the recording host was: kernel release, KVM module (kvm_intel, kvm_amd, kvm_pvm …), CPU vendor."""
    mods = sorted(m for m in ("kvm_intel", "kvm_amd", "kvm_pvm") if os.path.isdir(f"/sys/module/{m}"))
    vendor = ""
    try:
        with open("/proc/cpuinfo") as f:
            vendor = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("vendor_id")), "")
    except OSError:
        pass
    return {"kernel": platform.release(), "kvm_module": ",".join(mods) or "none", "cpu_vendor": vendor}


def probe_host_facts(engine: str = "kvm") -> dict:
    """Detect the two host facts (see the module docstring) on `engine` (vmio_edu.kvm.host_facts)."""
    from vmio_edu.kvm.host_facts import host_facts
    return dict(host_facts(engine))


def load() -> dict:
    with open(FIXTURE) as f:
        return json.load(f)


def page_end_split(case: dict) -> list[int]:
    """Linux 3.7's batches for a `page_split` case (emulate.c:1286-1296): at most 1024 bytes and never past
    the page end, in elements."""
    kind, size, start, count = case["guest"]
    out, addr = [], 0x30000 + start
    while count:
        room = (0x1000 - (addr & 0xFFF)) // size or 1
        n = min(count, 1024 // size, room)
        out.append(n)
        count -= n
        addr += n * size
    return out


def first_difference(a: list[dict], b: list[dict]) -> str | None:
    """None if the streams are equal, else where and how they first differ (for a failure message)."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            diff = {k: (x.get(k), y.get(k)) for k in FIELDS if x.get(k) != y.get(k)}
            return f"exit {i}: {diff}"
    if len(a) != len(b):
        return f"lengths {len(a)} vs {len(b)}"
    return None


def as_json(obj: Any) -> str:
    return json.dumps(obj, indent=0, sort_keys=True)
