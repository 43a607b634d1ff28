"""Exercise: decode the bytes of the vCPU mmap (`struct kvm_run` and the PIO page) after KVM_RUN returns.

The oracle is the encoder: `make` fills the real ctypes `struct kvm_run` of
`vmio_edu.linux.include.uapi.linux.kvm` (Linux 3.7 include/uapi/linux/kvm.h:176-219) and the PIO page at
`KVM_PIO_PAGE_OFFSET * 4096`, so the fields are known by construction. The rest of the structure holds
plausible values and stale bytes from earlier exits, so only the right offsets and widths give the answer.
"""
from __future__ import annotations

import ctypes
from typing import Any

from ..linux.arch.x86.include.asm.kvm_host import KVM_PIO_PAGE_OFFSET
from ..linux.arch.x86.include.asm.page_types import PAGE_SIZE
from ..linux.include.uapi.linux import kvm as K
from .base import Exercise, Part, PartResult, StudentError, call, fail_all, hexs, not_callable, rng, verdict

NAME = "kvm_run"
MMAP_SIZE = 2 * PAGE_SIZE
DATA_OFFSET = KVM_PIO_PAGE_OFFSET * PAGE_SIZE
IO_PORTS = (0x1F0, 0x1F7, 0x1F2, 0x3F6, 0x80, 0x3F8, 0x70, 0x71, 0x60)


def random_exit(r, kind: str | None = None) -> dict:
    kind = kind or r.choice(("out", "out", "in", "in", "mmio"))
    if kind == "mmio":
        length = r.choice((1, 2, 4, 8))
        # 64-bit BARs and MMIO above 4 GiB are common: phys_addr is a u64
        f = {"exit_reason": K.KVM_EXIT_MMIO, "phys_addr": r.choice((0x400000, 0xFEBF0000 + 4 * r.randrange(64),
                                                                    0x1_0000_0000 + r.randrange(1 << 20) * 8,
                                                                    0xFD_0000_0000 + r.randrange(1 << 12) * 16)),
             "len": length, "is_write": r.random() < 0.6}
        f["value"] = r.getrandbits(8 * length) if f["is_write"] else None
        f["stale"] = r.getrandbits(64)  # what sits in data[] before QEMU answers a read
        return f
    size = r.choice((1, 2, 2, 4))
    if kind == "in" and r.random() < 0.5:
        count, size = r.choice((256, 128, 512, 88, 7)), 2
    else:
        count = 1 if r.random() < 0.7 else r.randrange(2, 6)
    f = {"exit_reason": K.KVM_EXIT_IO, "direction": kind, "size": size, "port": r.choice(IO_PORTS), "count": count,
         "data_offset": DATA_OFFSET}
    f["values"] = [r.getrandbits(8 * size) for _ in range(count)] if kind == "out" else None
    return f


def encode(f: dict, r, busy_header: bool = False) -> bytes:
    """The mmap as QEMU finds it: struct kvm_run in page 0, PIO data in page 1, noise elsewhere."""
    mem = bytearray(r.randbytes(MMAP_SIZE))
    run = K.kvm_run.from_buffer(mem)
    ctypes.memset(ctypes.addressof(run), 0, 32)  # the header fields, then plausible values
    # a header with every flag set catches reads wider than the field (a u64 exit_reason takes in bytes 12-13)
    run.request_interrupt_window = busy_header or r.random() < 0.3
    run.exit_reason = f["exit_reason"]
    run.ready_for_interrupt_injection = busy_header or r.random() < 0.5
    run.if_flag = busy_header or r.random() < 0.7
    run.cr8 = r.randrange(0, 16)
    run.apic_base = 0xFEE00900
    if f["exit_reason"] == K.KVM_EXIT_IO:
        io = run.u.io
        io.direction = K.KVM_EXIT_IO_IN if f["direction"] == "in" else K.KVM_EXIT_IO_OUT
        io.size, io.port, io.count, io.data_offset = f["size"], f["port"], f["count"], f["data_offset"]
        if f["values"] is not None:
            for i, v in enumerate(f["values"]):
                off = f["data_offset"] + i * f["size"]
                mem[off:off + f["size"]] = v.to_bytes(f["size"], "little")
    else:
        m = run.u.mmio
        m.phys_addr, m.len, m.is_write = f["phys_addr"], f["len"], f["is_write"]
        data = (f["value"] if f["is_write"] else f["stale"]) or 0
        full = data.to_bytes(8, "little")[:f["len"]] + r.randbytes(8 - f["len"])  # bytes past len are stale
        ctypes.memmove(ctypes.addressof(m.data), full, 8)
    return bytes(mem)


def case(r, kind: str | None = None, busy_header: bool = False, **fields) -> dict:
    f = random_exit(r, kind)
    f.pop("stale", None)
    f.update(fields)
    if f["exit_reason"] == K.KVM_EXIT_IO and f["direction"] == "out" and "values" not in fields:
        f["values"] = [r.getrandbits(8 * f["size"]) for _ in range(f["count"])]
    if f["exit_reason"] == K.KVM_EXIT_MMIO and f["is_write"] and "value" not in fields:
        f["value"] = r.getrandbits(8 * f["len"])
    mem = encode(dict(f, stale=r.getrandbits(64)), r, busy_header)
    return {"fields": f, "mem": mem.hex()}


def make(seed: int) -> dict:
    r = rng(NAME, seed)
    mmio = case(r, "mmio", busy_header=True)
    if mmio["fields"]["phys_addr"] < 1 << 32:  # one address above 4 GiB in everyone's own cases
        mmio = case(r, "mmio", busy_header=True, phys_addr=0x1_0000_0000 + r.randrange(1 << 20) * 8)
    return {"seed": seed, "cases": [case(r, "out", busy_header=True, size=2, count=r.randrange(2, 6)),
                                    case(r, "in"), mmio]}


def hexdump(mem: bytes, start: int, n: int) -> str:
    lines = []
    for off in range(start, start + n, 16):
        row = mem[off:off + 16]
        lines.append(f"{off:04x}: " + " ".join(f"{b:02x}" for b in row))
    return "\n".join(lines)


def problem(p: dict) -> str:
    out = [f"**Your exits** (seed {p['seed']}). After three returns of KVM_RUN, QEMU's vCPU mmap held these "
           "bytes (the first 64 bytes of page 0, and the start of page 1):"]
    for i, c in enumerate(p["cases"]):
        mem = bytes.fromhex(c["mem"])
        out.append(f"\nExit {i + 1}:\n```\n{hexdump(mem, 0, 64)}\n...\n{hexdump(mem, DATA_OFFSET, 32)}\n```")
    out.append("""
Write `decode_kvm_run(mem)`, where `mem` is the whole mmap (`bytes`, two pages), returning a dict:
* always `exit_reason` (int);
* for `KVM_EXIT_IO` (2): `direction` (`"in"`/`"out"`), `size`, `port`, `count`, `data_offset`, and
  `values`: the `count` elements the guest sent (ints, little-endian) for an OUT, `None` for an IN
  (QEMU has not answered yet);
* for `KVM_EXIT_MMIO` (6): `phys_addr`, `len`, `is_write` (bool), and `values`: `[the value written]`
  for a write, `None` for a read.""")
    return "\n".join(out)


INTRO = """`struct kvm_run` (Linux 3.7 include/uapi/linux/kvm.h:176-219; `vmio_edu/linux/include/uapi/linux/kvm.py`),
x86, little-endian:

| offset | field | type |
|---|---|---|
| 0 | request_interrupt_window | u8 |
| 8 | exit_reason | u32 |
| 12 | ready_for_interrupt_injection | u8 |
| 13 | if_flag | u8 |
| 16 | cr8 | u64 |
| 24 | apic_base | u64 |
| 32 | the exit union: `io` or `mmio` | |
| 32 | io.direction (0 = `KVM_EXIT_IO_IN`, 1 = OUT) | u8 |
| 33 | io.size | u8 |
| 34 | io.port | u16 |
| 36 | io.count | u32 |
| 40 | io.data_offset (from the start of the mmap) | u64 |
| 32 | mmio.phys_addr | u64 |
| 40 | mmio.data | u8[8] |
| 48 | mmio.len | u32 |
| 52 | mmio.is_write | u8 |

Element `i` of a port transfer sits at `data_offset + i*size`: the PIO page, page 1 of the mmap
(`KVM_PIO_PAGE_OFFSET` = 1, so `data_offset` = 4096). Bytes outside the fields of this exit are left over
from earlier exits: don't read them. Python's `int.from_bytes(b, "little")` or `struct.unpack_from` help."""

TEMPLATE = '''def decode_kvm_run(mem: bytes) -> dict:
    """Decode struct kvm_run (page 0 of the vCPU mmap) and the data of the exit."""
    # YOUR CODE HERE
    raise NotImplementedError()
'''

PARTS = (
    Part("exit_reason", 1, "exit_reason, the u32 at offset 8"),
    Part("io", 2, "the io member at offset 32: direction, size, port, count, data_offset"),
    Part("values", 1, "the data: OUT elements in the PIO page, the MMIO write value"),
    Part("mmio", 1, "the mmio member at offset 32: phys_addr, len, is_write"),
)
WHERE = {"exit_reason": "u32 at offset 8", "direction": "u8 at offset 32 (0 = IN, 1 = OUT)",
         "size": "u8 at offset 33", "port": "u16 at offset 34", "count": "u32 at offset 36",
         "data_offset": "u64 at offset 40", "phys_addr": "u64 at offset 32", "len": "u32 at offset 48",
         "is_write": "u8 at offset 52"}


def _eq(key: str, got: Any, want: Any) -> bool:
    if key == "is_write":
        return isinstance(got, (bool, int)) and bool(got) == want
    if key == "direction":
        return isinstance(got, str) and got.strip().lower() == want
    if key == "values":
        if want is None:
            return got is None
        return isinstance(got, (list, tuple)) and [int(x) if isinstance(x, int) else x for x in got] == want
    return isinstance(got, int) and not isinstance(got, bool) and got == want


def _values_why(f: dict) -> str:
    if f["exit_reason"] == K.KVM_EXIT_MMIO:
        return ("a read has no value yet" if not f["is_write"]
                else f"the value is the first len={f['len']} bytes of mmio.data (offset 40), little-endian; "
                "len is the u32 at offset 48")
    if f["direction"] == "in":
        return "an IN exit has no data yet: QEMU fills the PIO page before the next KVM_RUN"
    return (f"{f['count']} elements of {f['size']} bytes from data_offset={f['data_offset']:#x}, "
            "element i at data_offset + i*size, each little-endian")


def check(answer: Any, params: dict, parts: list[str] | None = None, hidden: list | None = None) -> list[PartResult]:
    problem_ = not_callable(answer, EXERCISE.answer)
    if problem_:
        return fail_all(EXERCISE, parts, problem_)
    cases = list(params["cases"]) + list(hidden or [])
    fails: dict[str, list[str]] = {p.name: [] for p in PARTS}
    counts = {p.name: 0 for p in PARTS}
    for n, c in enumerate(cases):
        f = c["fields"]
        is_io = f["exit_reason"] == K.KVM_EXIT_IO
        label = (f"exit {n + 1} ({'IO ' + f['direction'] + ' port ' + hex(f['port']) if is_io else 'MMIO'})")
        relevant = [k for k in ("exit_reason", "values", "io" if is_io else "mmio") if parts is None or k in parts]
        if not relevant:
            continue
        for k in relevant:
            counts[k] += 1
        try:
            got = call(answer, bytes.fromhex(c["mem"]))
        except StudentError as e:
            got = f"your function raised {e}"
        if not isinstance(got, dict):
            msg = got if isinstance(got, str) else f"expected a dict, got {type(got).__name__}"
            for k in relevant:
                fails[k].append(f"{label}: {msg}")
            continue
        keys = {"exit_reason": ["exit_reason"], "values": ["values"],
                "io": ["direction", "size", "port", "count", "data_offset"],
                "mmio": ["phys_addr", "len", "is_write"]}
        want_all = dict(f, values=f["values"] if is_io else ([f["value"]] if f["is_write"] else None))
        for part in relevant:
            for key in keys[part]:
                if key not in got:
                    fails[part].append(f"{label}: the dict has no key {key!r}")
                elif not _eq(key, got[key], want_all[key]):
                    why = _values_why(f) if key == "values" else f"it is the {WHERE[key]}"
                    fails[part].append(f"{label}: {key} should be {hexs(want_all[key])}, you returned "
                                       f"{hexs(got[key])}; {why}")
    return [verdict(p, fails[p.name], counts[p.name]) for p in PARTS if parts is None or p.name in parts]


EXERCISE = Exercise(
    name=NAME, title="Decode struct kvm_run",
    goal="Read `struct kvm_run` and the PIO data page straight from the bytes QEMU sees after KVM_RUN, with "
         "the real offsets of Linux 3.7's kvm.h, and find where the guest's data is.",
    answer="decode_kvm_run", parts=PARTS, make=make, problem=problem, check=check, template=TEMPLATE,
    intro=INTRO, pure=True)
