"""Exercise: queue one virtio-blk request the way Linux 3.7's driver does, in guest memory.

The student writes the driver's side of a legacy (virtio 0.9.5) virtqueue, as QEMU 1.6.1's virtio-blk-pci and
Linux 3.7 share it: `do_req` (drivers/block/virtio_blk.c) builds header, data and status buffers,
`virtqueue_add_buf` (drivers/virtio/virtio_ring.c) takes descriptors off the free list, fills them and puts the
head in the avail ring, and `virtqueue_kick_prepare` decides whether the device needs a notify.

The function gets a `bytearray` standing for guest RAM, with a vring that has been in use (stale descriptors,
a free list threaded through the `next` fields, indices anywhere in 0..65535). A capture runs it (in the
sandbox when graded) and sends back only what changed; the grader rebuilds the memory and compares it, byte
for byte, with the expected memory (from the instructor's oracle when graded, from `expected` here for the
self-check). Every differing byte is put down to the part that owns it.
"""
from __future__ import annotations

import struct
from typing import Any

from .base import Exercise, Part, PartResult, StudentError, capture, fail_all, not_callable, rng, verdict

NAME = "virtio_chain"
RAM = 0x40000  # the guest RAM the function sees: 256 KiB from guest-physical 0
PAGE = 4096
ALIGN = 4096  # VIRTIO_PCI_VRING_ALIGN (QEMU hw/virtio/virtio.c:27; Linux include/uapi/linux/virtio_pci.h)
DESC = 16  # struct vring_desc {u64 addr; u32 len; u16 flags; u16 next}
F_NEXT, F_WRITE, F_INDIRECT = 1, 2, 4
USED_F_NO_NOTIFY = 1
AVAIL_F_NO_INTERRUPT = 1
T_IN, T_OUT = 0, 1
HDR = 16  # struct virtio_blk_outhdr {u32 type; u32 ioprio; u64 sector}
STATUS_OFFSET = 76  # the status byte: a u8 further on in the same struct virtblk_req
VBR = 96  # bytes of the request struct shown as stale memory around the header
SECTOR = 512
NUMS = (8, 16, 32, 64, 128, 128, 256)  # power-of-two ring sizes; QEMU 1.6.1 virtio-blk asks for 128
STALE_LENS = (HDR, 1, SECTOR, 4096, 2 * SECTOR, 3 * SECTOR, 5 * SECTOR, 8 * SECTOR)  # what old descriptors held


def layout(base: int, num: int) -> dict:
    """Where the parts of a legacy vring are (vring_init, include/uapi/linux/virtio_ring.h:132-140)."""
    avail = base + DESC * num
    used = (avail + 4 + 2 * num + 2 + ALIGN - 1) & ~(ALIGN - 1)
    return {"desc": base, "avail": avail, "avail_end": avail + 4 + 2 * num + 2, "used": used,
            "end": used + 4 + 8 * num + 2}


def flag_names(f: int) -> str:
    names = [n for bit, n in ((F_NEXT, "NEXT"), (F_WRITE, "WRITE"), (F_INDIRECT, "INDIRECT")) if f & bit]
    return f"{f:#x} ({'|'.join(names) or 'none'})"


# -- the problem generator ---------------------------------------------------------------------------------
class _Space:
    """Places non-overlapping regions in guest RAM."""

    def __init__(self, r) -> None:
        self.r, self.taken = r, [(0, 0x1000)]

    def take(self, size: int, align: int, lo: int = 0x1000, hi: int = RAM) -> int:
        for _ in range(1000):
            a = self.r.randrange(lo // align, (hi - size) // align + 1) * align
            if all(a + size <= s or a >= e for s, e in self.taken):
                self.taken.append((a, a + size))
                return a
        raise RuntimeError("no room in guest RAM")


def new_case(r, num: int | None = None, old: int | None = None, event_idx: bool | None = None,
             write: bool | None = None, nseg: int | None = None, sector: int | None = None,
             kick: bool | None = None, free_order: str = "shuffled", used_flags: int | None = None,
             avail_flags: int | None = None, indirect: bool | None = None) -> dict:
    """One request on a vring in use. `free_order`: "shuffled" (after out-of-order completions), "fresh" (as
    vring_new_virtqueue left it: i -> i+1) or "runs" (a few consecutive descriptors, then a jump).
    `indirect`: VIRTIO_RING_F_INDIRECT_DESC negotiated, with the table the driver kmalloc'ed for this request."""
    num = num or r.choice(NUMS)
    nseg = nseg or r.choice((1, 1, 2, 3))
    space = _Space(r)
    lay_size = layout(0, num)["end"]
    base = space.take(lay_size + PAGE, PAGE)
    lay = layout(base, num)
    vbr = space.take(VBR, 8)
    hdr = vbr + 16
    segs = []
    for _ in range(nseg):
        n = r.randrange(1, 9)
        segs.append([space.take(n * SECTOR, SECTOR), n])
    write = r.random() < 0.5 if write is None else write
    if sector is None:
        sector = r.choice((r.randrange(1 << 21), r.randrange(1 << 24), r.randrange(1 << 33)))
    req = {"write": write, "sector": sector, "ioprio": r.choice((0, 0, 0x4004, 0x2000 | r.randrange(8), 0x6000)),
           "hdr": hdr, "status": hdr + STATUS_OFFSET, "segments": segs}

    need = nseg + 2
    if indirect is None:
        indirect = r.random() < 0.3
    table = space.take(DESC * need, 8) if indirect else None
    nfree = r.randrange(need, num + 1) if num > need else num
    if free_order == "fresh":  # as vring_new_virtqueue chains them: i -> i + 1
        start = r.randrange(num)
        free = [(start + j) % num for j in range(nfree)]
    else:
        free = r.sample(range(num), nfree)
        if free_order == "runs":  # a few consecutive descriptors, then a jump
            k = r.randrange(need // 2 + 1, need)
            a = r.randrange(0, num - k)
            rest = [i for i in range(num) if not a <= i <= a + k]
            r.shuffle(rest)
            free = list(range(a, a + k)) + rest[:max(nfree - k, need - k)]
    mem = bytearray(lay["end"] - base)

    def put(addr: int, fmt: str, *vals: Any) -> None:
        struct.pack_into(fmt, mem, addr - base, *vals)

    for i in range(num):  # stale descriptors: what earlier requests left (one draw each: bits sliced)
        x = r.getrandbits(64)
        put(lay["desc"] + DESC * i, "<QIHH", max(0x1000, x & (RAM - 8)), STALE_LENS[(x >> 20) & 7], (x >> 24) & 3,
            (x >> 32) % num)
    for a, b in zip(free, free[1:]):
        put(lay["desc"] + DESC * a + 14, "<H", b)
    if old is None:
        old = r.choice((r.randrange(1 << 16), r.randrange(1 << 16), r.randrange(num), 0xFFFF - r.randrange(3)))
    put(lay["avail"], "<HH", r.choice((0, 0, 0, AVAIL_F_NO_INTERRUPT)) if avail_flags is None else avail_flags, old)
    put(lay["avail"] + 4, f"<{num}H", *(v & (num - 1) for v in struct.unpack(f"<{num}H", r.randbytes(2 * num))))
    put(lay["avail"] + 4 + 2 * num, "<H", (old - r.randrange(num)) & 0xFFFF)  # used_event
    if event_idx is None:
        event_idx = r.random() < 0.7  # QEMU 1.6.1 offers VIRTIO_RING_F_EVENT_IDX and Linux 3.7 takes it
    if kick is None:
        kick = r.random() < 0.6
    behind = 0 if kick else r.choice((1, 2, 3, r.randrange(1, 200)))
    uflags = (0 if kick else USED_F_NO_NOTIFY) if used_flags is None else used_flags
    if event_idx and used_flags is None:
        uflags = r.choice((0, USED_F_NO_NOTIFY))  # ignored with event idx
    inflight = r.randrange(0, min(num, 20))
    put(lay["used"], "<HH", uflags, (old - inflight) & 0xFFFF)
    for k in range(num):
        x = r.getrandbits(32)
        put(lay["used"] + 4 + 8 * k, "<II", x & (num - 1), (1, SECTOR + 1, 4096 + 1)[(x >> 16) % 3])
    avail_event = (old - behind) & 0xFFFF if event_idx else r.randrange(1 << 16)
    put(lay["used"] + 4 + 8 * num, "<H", avail_event)
    stale = r.randbytes(VBR)
    vq = {"base": base, "num": num, "free_head": free[0], "event_idx": event_idx, "indirect": table}
    fill = [[base, mem.hex()], [vbr, stale.hex()]]
    if table is not None:  # kmalloc'ed: whatever was there before
        fill.append([table, r.randbytes(DESC * need).hex()])
    return {"vq": vq, "req": req, "fill": fill}


def make(seed: int) -> dict:
    r = rng(NAME, seed)
    cases = [new_case(r, num=128, write=True, nseg=1, kick=True, event_idx=True, indirect=False),
             new_case(r, write=False, nseg=r.choice((2, 3)), free_order="runs", indirect=False),
             new_case(r, num=r.choice((8, 16)), old=0xFFFF, kick=r.random() < 0.5, event_idx=False, indirect=False),
             new_case(r, indirect=True)]
    return {"seed": seed, "cases": cases}


# -- memory: build it, run the function on it, compare ----------------------------------------------------
def memory(case: dict) -> bytearray:
    mem = bytearray(RAM)
    for addr, data in case["fill"]:
        data = bytes.fromhex(data) if isinstance(data, str) else data  # hex in the params, bytes on the wire
        mem[addr:addr + len(data)] = data
    return mem


def _runs(before: bytes, after: bytes) -> list[list]:
    """The changed bytes, as [address, bytes] runs (page by page, 64-byte chunk by chunk, then byte by byte;
    a run may go on across chunks)."""
    out: list[list] = []
    for page in range(0, len(after), PAGE):
        if before[page:page + PAGE] == after[page:page + PAGE]:
            continue
        for chunk in range(page, min(page + PAGE, len(after)), 64):
            end = min(chunk + 64, len(after))
            if before[chunk:end] == after[chunk:end]:
                continue
            i = chunk
            while i < end:
                if before[i] == after[i]:
                    i += 1
                    continue
                j = i
                while j < end and before[j] != after[j]:
                    j += 1
                if out and out[-1][0] + len(out[-1][1]) == i:
                    out[-1][1] += after[i:j]
                else:
                    out.append([i, bytes(after[i:j])])
                i = j
    return out


def capture_request(student: Any, data: dict) -> dict:
    """Sandbox side: guest RAM with the vring as it was, one call of the student's function, and what changed."""
    mem = memory(data)
    before = bytes(mem)
    result = student(mem, dict(data["vq"]), {**data["req"], "segments": [list(s) for s in data["req"]["segments"]]})
    if not isinstance(mem, bytearray) or len(mem) != RAM:
        return {"result": result, "resized": True, "writes": []}
    return {"result": result, "resized": False, "writes": _runs(before, bytes(mem))}


CAPTURES = {"request": capture_request}


def expected(case: dict) -> dict:
    """The memory writes, free_head and kick Linux 3.7 gives for one case (the rules in INTRO); the graded
    cases carry the instructor oracle's instead."""
    mem = memory(case)
    vq, req = case["vq"], case["req"]
    lay = layout(vq["base"], vq["num"])
    bufs = [(req["hdr"], HDR, 0)] + [(a, n * SECTOR, 0 if req["write"] else F_WRITE) for a, n in req["segments"]] \
        + [(req["status"], 1, F_WRITE)]
    writes = [[req["hdr"], struct.pack("<IIQ", T_OUT if req["write"] else T_IN, req["ioprio"], req["sector"]).hex()]]
    chain, i = [], vq["free_head"]
    if vq.get("indirect") is not None:  # vring_add_indirect: the whole chain in the table, one ring descriptor
        for pos, (where, size, wflag) in enumerate(bufs):
            last = pos == len(bufs) - 1
            writes.append([vq["indirect"] + DESC * pos, struct.pack(
                "<QIHH", where, size, wflag | (0 if last else F_NEXT), 0 if last else pos + 1).hex()])
        chain.append(i)
        writes.append([lay["desc"] + DESC * i, struct.pack("<QIH", vq["indirect"], DESC * len(bufs), F_INDIRECT).hex()])
        i = struct.unpack_from("<H", mem, lay["desc"] + DESC * i + 14)[0]
    for pos, (where, size, wflag) in enumerate(bufs if vq.get("indirect") is None else ()):
        chain.append(i)
        last = pos == len(bufs) - 1
        writes.append([lay["desc"] + DESC * i, struct.pack("<QIH", where, size, wflag | (0 if last else F_NEXT)).hex()])
        i = struct.unpack_from("<H", mem, lay["desc"] + DESC * i + 14)[0]
    old = struct.unpack_from("<H", mem, lay["avail"] + 2)[0]
    new = (old + 1) & 0xFFFF
    writes.append([lay["avail"] + 4 + 2 * (old % vq["num"]), struct.pack("<H", chain[0]).hex()])
    writes.append([lay["avail"] + 2, struct.pack("<H", new).hex()])
    if vq["event_idx"]:
        # vring_need_event (include/uapi/linux/virtio_ring.h:153-161), in u16 arithmetic; written inline: the
        # sandbox flags an answer whose helper has the same bytecode as a function of this module
        avail_event = struct.unpack_from("<H", mem, lay["used"] + 4 + 8 * vq["num"])[0]
        kick = (new - avail_event - 1) % 65536 < (new - old) % 65536
    else:
        kick = not struct.unpack_from("<H", mem, lay["used"])[0] & USED_F_NO_NOTIFY
    return {"writes": writes, "chain": chain, "free_head": i, "kick": kick}


def _apply(mem: bytearray, writes: list) -> None:
    for addr, data in writes:
        data = bytes.fromhex(data) if isinstance(data, str) else data
        mem[addr:addr + len(data)] = data


def _field_of(off: int) -> str:
    return "addr" if off < 8 else "len" if off < 12 else "flags" if off < 14 else "next"


def _owner(addr: int, case: dict, chain: list[int]) -> tuple[str, str, int | None]:
    """(part, what, address of the descriptor it is in, if any) for a byte of guest memory."""
    vq, req = case["vq"], case["req"]
    lay = layout(vq["base"], vq["num"])
    table, n = vq.get("indirect"), len(req["segments"]) + 2
    if table is not None and table <= addr < table + DESC * n:
        k, off = divmod(addr - table, DESC)
        field = _field_of(off)
        at = table + DESC * k
        if field == "next":
            return "chain", f"indirect[{k}].next (the table's own links: k + 1, 0 on the last)", at
        role = "header" if k == 0 else "status" if k == n - 1 else "data"
        return role, f"indirect[{k}].{field} ({_role_text(k, n)}, in the indirect table at {table:#x})", at
    if lay["desc"] <= addr < lay["avail"]:
        i, off = divmod(addr - lay["desc"], DESC)
        field = _field_of(off)
        at = lay["desc"] + DESC * i
        if table is not None and i in chain:
            return "chain", f"desc[{i}].{field} (the one ring descriptor: the indirect table)", at
        if i in chain and field != "next":
            k = chain.index(i)
            role = "header" if k == 0 else "status" if k == len(chain) - 1 else "data"
            return role, f"desc[{i}].{field} ({_role_text(k, len(chain))})", at
        if i in chain:
            return "chain", f"desc[{i}].next", at
        return "chain", f"desc[{i}] (not on the chain: the free list gives {chain})", None
    if lay["avail"] <= addr < lay["end"]:
        if addr < lay["avail"] + 2:
            return "avail", "avail->flags", None
        if addr < lay["avail"] + 4:
            return "avail", "avail->idx", None
        if addr < lay["avail_end"] - 2:
            return "avail", f"avail->ring[{(addr - lay['avail'] - 4) // 2}]", None
        if addr < lay["avail_end"]:
            return "avail", "used_event (after avail->ring)", None
        if addr < lay["used"]:
            return "avail", f"the padding before the used ring at {lay['used']:#x}", None
        return "avail", "the used ring (only the device writes it)", None
    if req["hdr"] <= addr < req["hdr"] + HDR:
        off = addr - req["hdr"]
        return "header", "the outhdr's " + ("type" if off < 4 else "ioprio" if off < 8 else "sector"), None
    for a, n in req["segments"]:
        if a <= addr < a + n * SECTOR:
            return "data", f"the data buffer at {a:#x} (the driver never touches the data)", None
    return "chain", f"guest memory at {addr:#x}, which this request does not own", None


def _role_text(k: int, n: int) -> str:
    return "the header" if k == 0 else "the status byte" if k == n - 1 else f"data segment {k}"


def _describe_desc(mem: bytes, at: int) -> str:
    a, n, f, nx = struct.unpack_from("<QIHH", mem, at)
    return f"addr={a:#x} len={n} flags={flag_names(f)} next={nx}"


def _compare(case: dict, want: dict, got: Any, fails: dict, label: str) -> None:
    if not isinstance(got, dict) or not isinstance(got.get("writes"), list):
        for k in fails:
            fails[k].append(f"{label}: the capture returned nothing usable")
        return
    if got.get("resized"):
        for k in ("header", "data", "status", "chain", "avail"):
            fails[k].append(f"{label}: your function changed the size of guest memory (a slice assignment of "
                            "another length?); write fields in place, e.g. with struct.pack_into")
    before = memory(case)
    mine = bytearray(before)
    try:
        for addr, data in got["writes"]:
            if not (isinstance(addr, int) and isinstance(data, bytes) and 0 <= addr and addr + len(data) <= RAM):
                raise ValueError
            mine[addr:addr + len(data)] = data
    except (TypeError, ValueError):
        for k in fails:
            fails[k].append(f"{label}: the capture's record of memory writes is unreadable")
        return
    ref = bytearray(before)
    _apply(ref, want["writes"])
    chain = want["chain"]
    status = case["req"]["status"]
    places = {x for a, d in want["writes"] for x in range(a, a + len(bytes.fromhex(d)))}
    places |= {x for a, d in got["writes"] for x in range(a, a + len(d))}
    seen: dict[tuple[str, str], tuple[int, int | None]] = {}
    for a in sorted(places):
        if a == status or mine[a] == ref[a]:
            continue  # the status byte is the device's to write
        part, what, desc_at = _owner(a, case, chain)
        seen.setdefault((part, what), (a, desc_at))
    lay = layout(case["vq"]["base"], case["vq"]["num"])
    for (part, what), (a, desc_at) in seen.items():
        if desc_at is not None:
            fails[part].append(f"{label}: {what} should be {_describe_desc(ref, desc_at)}, you left "
                               f"{_describe_desc(mine, desc_at)}; {_why(part, what)}")
        elif part == "header" and what.startswith("the outhdr"):
            w = struct.unpack_from("<IIQ", ref, case["req"]["hdr"])
            g = struct.unpack_from("<IIQ", mine, case["req"]["hdr"])
            fails[part].append(f"{label}: the outhdr at {case['req']['hdr']:#x} should be type={w[0]} ioprio="
                               f"{w[1]:#x} sector={w[2]}, you left type={g[0]} ioprio={g[1]:#x} sector={g[2]}; "
                               "u32 type (VIRTIO_BLK_T_OUT=1 for a write, T_IN=0 for a read), u32 ioprio, u64 sector")
        elif what == "avail->idx":
            at = lay["avail"] + 2
            w, g, o = (struct.unpack_from("<H", m, at)[0] for m in (ref, mine, before))
            fails[part].append(f"{label}: avail->idx should become {w}, you left {g}: the old idx {o} plus one, "
                               "as a u16 (65535 + 1 wraps to 0)")
        elif what.startswith("avail->ring"):
            at = a - (a - lay["avail"]) % 2
            w, g = struct.unpack_from("<H", ref, at)[0], struct.unpack_from("<H", mine, at)[0]
            o = struct.unpack_from("<H", before, lay["avail"] + 2)[0]
            fails[part].append(f"{label}: {what} should hold {w}, you left {g}; the head {chain[0]} goes in "
                               f"ring[old idx & (num - 1)] = ring[{o} & {case['vq']['num'] - 1}] = "
                               f"ring[{o % case['vq']['num']}], at avail + 4 + 2 * slot")
        else:
            fails[part].append(f"{label}: you changed {what}" + (f" at {a:#x}" if "at " not in what else ""))
    res = got.get("result")
    if not isinstance(res, dict):
        fails["chain"].append(f"{label}: return a dict with free_head and kick, got {type(res).__name__}")
        fails["kick"].append(f"{label}: return a dict with free_head and kick, got {type(res).__name__}")
        return
    if res.get("free_head") != want["free_head"] or isinstance(res.get("free_head"), bool):
        fails["chain"].append(f"{label}: free_head should be {want['free_head']} (desc[{chain[-1]}].next, where "
                              f"the free list goes on after the chain {chain}), you returned "
                              f"{res.get('free_head')!r:.40}")
    if res.get("kick") is not want["kick"]:
        fails["kick"].append(f"{label}: kick should be {want['kick']}, you returned {res.get('kick')!r:.40}; "
                             + _kick_why(case, before))


def _why(part: str, what: str) -> str:
    if "indirect table" in what and part == "chain":
        return ("with an indirect table the ring holds one descriptor: addr = the table, len = 16 * entries "
                "(bytes), flags INDIRECT only (vring_add_indirect); the free list moves on by its next")
    if what.startswith("indirect[") and part == "chain":
        return "inside the table, entry k links to k + 1 and the last one's next is 0"
    return {"header": "the header is device-readable: len 16, flags NEXT only",
            "data": "len is in bytes (sectors * 512); WRITE exactly when the device writes the buffer (a read), "
                    "NEXT on every descriptor but the last",
            "status": "the status byte is device-writable and ends the chain: len 1, flags WRITE, no NEXT",
            "chain": "descriptors come off the free list by following desc[i].next; next is never rewritten"}[part]


def _kick_why(case: dict, mem: bytes) -> str:
    vq = case["vq"]
    lay = layout(vq["base"], vq["num"])
    old = struct.unpack_from("<H", mem, lay["avail"] + 2)[0]
    if vq["event_idx"]:
        ev = struct.unpack_from("<H", mem, lay["used"] + 4 + 8 * vq["num"])[0]
        return (f"with VIRTIO_RING_F_EVENT_IDX, vring_need_event(avail_event={ev} read at used->ring[num], "
                f"{lay['used'] + 4 + 8 * vq['num']:#x}; new={(old + 1) & 0xFFFF}, old={old}) in u16 arithmetic")
    return (f"without event idx, kick unless used->flags (at {lay['used']:#x}, 4096-aligned after the avail ring) "
            "has VRING_USED_F_NO_NOTIFY")


# -- looking at a ring (the notebook's demo cell; not used by the checks) -------------------------------------
def try_case(seed: int, number: int = 1) -> tuple[bytearray, dict, dict]:
    """Guest RAM, vq and req of your case `number` (1-based, as in the problem's table), to call your function
    on by hand."""
    cases = make(int(seed))["cases"]
    if not 1 <= number <= len(cases):
        raise ValueError(f"case {number!r}: your problem has cases 1..{len(cases)}")
    c = cases[number - 1]
    return memory(c), dict(c["vq"]), {**c["req"], "segments": [list(s) for s in c["req"]["segments"]]}


def describe(mem: bytes, vq: dict) -> str:
    """The ring as the device sees it: avail idx, the last published head, and its chain read the way QEMU
    1.6.1's virtqueue_pop reads it (WRITE descriptors become in buffers, the others out buffers)."""
    num = vq["num"]
    lay = layout(vq["base"], num)
    aflags, idx = struct.unpack_from("<HH", mem, lay["avail"])
    uflags, uidx = struct.unpack_from("<HH", mem, lay["used"])
    slot = (idx - 1) & (num - 1)
    head = struct.unpack_from("<H", mem, lay["avail"] + 4 + 2 * slot)[0]
    lines = [f"desc table at {lay['desc']:#x}, avail ring at {lay['avail']:#x}, used ring at {lay['used']:#x}",
             f"avail: flags={aflags:#x} idx={idx}; used: flags={uflags:#x} idx={uidx} "
             f"avail_event={struct.unpack_from('<H', mem, lay['used'] + 4 + 8 * num)[0]}",
             f"last published head: avail->ring[{slot}] = {head}"]
    table, size, name = lay["desc"], num, "desc"
    if head < num:
        a, n, f, _nx = struct.unpack_from("<QIHH", mem, lay["desc"] + DESC * head)
        if f & F_INDIRECT:  # virtqueue_pop walks the table instead, from entry 0
            lines.append(f"  desc[{head}]: addr={a:#x} len={n} flags={flag_names(f)}  -> the indirect table")
            table, size, name, head = a, n // DESC, "indirect", 0
            if n % DESC or a + n > len(mem):
                lines.append("  (a bad indirect table: QEMU stops with 'Invalid size for indirect buffer table')")
                return "\n".join(lines)
    i, seen = head, set()
    while i < size and i not in seen and len(seen) < size:
        seen.add(i)
        a, n, f, nx = struct.unpack_from("<QIHH", mem, table + DESC * i)
        lines.append(f"  {name}[{i}]: addr={a:#x} len={n} flags={flag_names(f)} next={nx}  -> "
                     f"{'in (device writes)' if f & F_WRITE else 'out (device reads)'}")
        if not f & F_NEXT:
            break
        i = nx
    else:
        lines.append(f"  (the chain loops or leaves the table at {i}: QEMU would stop with 'Looped descriptor')")
    return "\n".join(lines)


DEMO_INTRO = """## Look at your ring (not graded)

Run your function on your case 1 by hand and read the ring back the way the device does: the head it finds
at `avail->ring[(idx - 1) % num]` and the chain it walks from there (`virtqueue_pop` follows NEXT and `next`;
WRITE descriptors become the device's *in* buffers). Change the case number to look at the others."""

DEMO = """# Not graded: your add_request on your case 1, then the ring as QEMU's virtqueue_pop would walk it.
from vmio_edu.grading import virtio_chain

mem, vq, req = virtio_chain.try_case(SEED, 1)
print(virtio_chain.describe(mem, vq))   # before: the ring as earlier requests left it
print(add_request(mem, vq, req))
print(virtio_chain.describe(mem, vq))   # after: your chain"""


PARTS = (
    Part("header", 1, "the virtio_blk_outhdr in memory and its descriptor (len 16, device-readable)"),
    Part("data", 1, "one descriptor per data segment: length in bytes, WRITE exactly for a read"),
    Part("status", 1, "the status byte's descriptor: len 1, WRITE, ends the chain"),
    Part("chain", 1, "descriptors taken from the free list by its next links (or one indirect descriptor); the "
                     "new free_head"),
    Part("avail", 1, "avail->ring[idx % num] = head, then idx + 1 as a u16; nothing else changed"),
    Part("kick", 1, "virtqueue_kick_prepare: event idx or VRING_USED_F_NO_NOTIFY"),
)


def check(answer: Any, params: dict, parts: list[str] | None = None, hidden: list | None = None) -> list[PartResult]:
    problem_ = not_callable(answer, EXERCISE.answer)
    if problem_:
        return fail_all(EXERCISE, parts, problem_)
    cases = list(params["cases"]) + list(hidden or [])
    fails: dict[str, list[str]] = {p.name: [] for p in PARTS}
    for n, c in enumerate(cases):
        req, vq = c["req"], c["vq"]
        label = (f"{'write' if req['write'] else 'read'} of sector {req['sector']} ({len(req['segments'])} "
                 f"segment(s)), ring of {vq['num']} at {vq['base']:#x}")
        want = c["want"] if "want" in c else expected(c)
        data = {"fill": [[a, bytes.fromhex(h)] for a, h in c["fill"]], "vq": vq, "req": req}
        try:
            got = capture(answer, "request", data, CAPTURES)
        except StudentError as e:
            for k in fails:
                fails[k].append(f"{label}: your function raised {e}")
            continue
        mine: dict[str, list[str]] = {p.name: [] for p in PARTS}
        _compare(c, want, got, mine, label)
        for k, msgs in mine.items():
            if msgs:
                fails[k].append(msgs[0] + (f" (and {len(msgs) - 1} more wrong field(s) in this case)"
                                           if len(msgs) > 1 else ""))
    return [verdict(p, fails[p.name], len(cases)) for p in PARTS if parts is None or p.name in parts]


def problem(p: dict) -> str:
    rows = []
    for i, c in enumerate(p["cases"]):
        vq, req = c["vq"], c["req"]
        segs = ", ".join(f"{a:#x}×{n}" for a, n in req["segments"])
        ind = f"{vq['indirect']:#x}" if vq.get("indirect") is not None else "-"
        rows.append(f"| {i + 1} | {vq['base']:#x} | {vq['num']} | {vq['free_head']} | {vq['event_idx']} | {ind} | "
                    f"{'write' if req['write'] else 'read'} | {req['sector']} | {req['ioprio']:#x} | {req['hdr']:#x} | "
                    f"{req['status']:#x} | {segs} |")
    return f"""**Your requests** (seed {p['seed']}). Each row is one call of your function on a vring that has been in
use for a while (stale descriptors, indices anywhere in 0..65535):

| # | vring base | num | free_head | event idx | indirect table | op | sector | ioprio | outhdr at | status at | segments (address×sectors) |
|---|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Write `add_request(mem, vq, req)`. `mem` is guest RAM from guest-physical address 0 (a `bytearray` of
{RAM:#x} bytes); change it in place. `vq` has `base`, `num`, `free_head`, `event_idx` and `indirect` (the
guest-physical address of an indirect table for this request, or `None`); `req` has `write`,
`sector`, `ioprio`, `hdr`, `status` and `segments` (a list of `[address, sectors]`). Fill in the header, take
descriptors off the free list, publish the head on the avail ring, and return
`{{"free_head": <where the free list now starts>, "kick": <whether virtqueue_kick_prepare says to notify>}}`."""


INTRO = """The ring lives in guest RAM, laid out by `vring_init` ([include/uapi/linux/virtio_ring.h:132-140](https://github.com/torvalds/linux/blob/v3.7/include/uapi/linux/virtio_ring.h#L132-L140)); QEMU 1.6.1
computes the same addresses from the page number the guest wrote to `VIRTIO_PCI_QUEUE_PFN` (`virtqueue_init`,
[hw/virtio/virtio.c:92-101](https://github.com/qemu/qemu/blob/v1.6.1/hw/virtio/virtio.c#L92-L101)). All fields are little-endian.

* the descriptor table at `base`: `num` × `struct vring_desc {u64 addr; u32 len; u16 flags; u16 next}` (16 bytes;
  flags `VRING_DESC_F_NEXT` = 1, `VRING_DESC_F_WRITE` = 2: the *device* writes this buffer);
* the avail ring right after it, at `base + 16 * num`: `u16 flags; u16 idx; u16 ring[num]; u16 used_event`;
* the used ring at the next 4096-byte boundary (`VIRTIO_PCI_VRING_ALIGN`) after the avail ring:
  `u16 flags; u16 idx; struct {u32 id; u32 len} ring[num]; u16 avail_event`.

What the driver does for one block request:

1. `do_req` ([drivers/block/virtio_blk.c:298-377](https://github.com/torvalds/linux/blob/v3.7/drivers/block/virtio_blk.c#L298-L377)) fills `struct virtio_blk_outhdr {u32 type; u32 ioprio; u64 sector}`
   (`type` = `VIRTIO_BLK_T_OUT` (1) for a write, `VIRTIO_BLK_T_IN` (0) for a read; `sector` in 512-byte sectors) and
   builds the buffer list: the header (16 bytes, device-readable), the data segments (device-readable for a
   write, device-writable for a read), and the 1-byte status, device-writable, last.
2. `virtqueue_add_buf` ([drivers/virtio/virtio_ring.c:252-289](https://github.com/torvalds/linux/blob/v3.7/drivers/virtio/virtio_ring.c#L252-L289)) takes descriptors off the **free list**, which is
   threaded through the `next` fields: start at `free_head`, and after filling descriptor `i` go on to
   `desc[i].next`. It sets `addr`, `len` (bytes) and `flags` (NEXT, plus WRITE for device-writable buffers),
   never rewrites `next`, and clears NEXT on the last one. The new `free_head` is the `next` of the last
   descriptor used. Then `avail->ring[avail->idx & (num - 1)] = head` and `avail->idx++`: a free-running u16
   that wraps from 65535 to 0.
3. `virtqueue_kick_prepare` ([virtio_ring.c:314-345](https://github.com/torvalds/linux/blob/v3.7/drivers/virtio/virtio_ring.c#L314-L345)), with `old` and `new` the avail idx before and after:
   with `VIRTIO_RING_F_EVENT_IDX` negotiated (QEMU 1.6.1 offers it), kick when
   `vring_need_event(avail_event, new, old)`: `(u16)(new - avail_event - 1) < (u16)(new - old)`, where
   `avail_event` is the u16 after the used ring's entries, which QEMU's `virtqueue_pop` updates
   ([hw/virtio/virtio.c:454-456](https://github.com/qemu/qemu/blob/v1.6.1/hw/virtio/virtio.c#L454-L456)); without it, kick unless the used ring's flags have `VRING_USED_F_NO_NOTIFY` (1).

QEMU reads the chain back in `virtqueue_pop` ([hw/virtio/virtio.c:440-509](https://github.com/qemu/qemu/blob/v1.6.1/hw/virtio/virtio.c#L440-L509)): WRITE descriptors become `in_sg`,
the others `out_sg`; `virtio_blk_handle_request` ([hw/block/virtio-blk.c:342-392](https://github.com/qemu/qemu/blob/v1.6.1/hw/block/virtio-blk.c#L342-L392)) takes the header from
the first out buffer and the status from the last byte of the last in buffer.

**Indirect descriptors.** QEMU 1.6.1 also offers `VIRTIO_RING_F_INDIRECT_DESC` ([include/hw/virtio/virtio.h:224-228](https://github.com/qemu/qemu/blob/v1.6.1/include/hw/virtio/virtio.h#L224-L228)),
and when it is negotiated Linux 3.7 puts every request of more than one buffer in an indirect table
(`virtqueue_add_buf` → `vring_add_indirect`, [virtio_ring.c:128-175](https://github.com/torvalds/linux/blob/v3.7/drivers/virtio/virtio_ring.c#L128-L175) and [229-235](https://github.com/torvalds/linux/blob/v3.7/drivers/virtio/virtio_ring.c#L229-L235)). When `vq["indirect"]`
is an address, the driver has `kmalloc`ed that table for this request: fill its entries 0..n-1 with the same
addr/len/flags as above and `next = k + 1` (the last one: no NEXT, `next = 0`); then take **one** descriptor
off the free list, `desc[free_head] = {addr: the table, len: 16 * n, flags: VRING_DESC_F_INDIRECT (4)}`
(`next` untouched), and move `free_head` on to its `next`. QEMU's `virtqueue_pop` then walks the table
instead of the ring ([hw/virtio/virtio.c:458-469](https://github.com/qemu/qemu/blob/v1.6.1/hw/virtio/virtio.c#L458-L469)). SeaBIOS does not take the feature; the course's own guest takes it with `Machine(disk="virtio", indirect=True)` (`vmio-edu trace --disk virtio --indirect`), and the panel's Virtqueue view opens its tables.

The device writes the status byte; the driver does not need to."""

TEMPLATE = '''import struct


def add_request(mem: bytearray, vq: dict, req: dict) -> dict:
    """Queue one virtio-blk request on the vring in `mem` (guest RAM): do_req + virtqueue_add_buf (directly in
    the ring, or through vq["indirect"]) + virtqueue_kick_prepare of Linux 3.7.
    Returns {"free_head": int, "kick": bool}."""
    # YOUR CODE HERE
    raise NotImplementedError()
'''

EXERCISE = Exercise(
    name=NAME, title="Build a virtio-blk descriptor chain in guest memory",
    goal="Put one block request on a legacy virtqueue as Linux 3.7's driver does: the `virtio_blk_outhdr`, a "
         "descriptor chain taken off the free list (header, data, status, with NEXT and WRITE exactly where they "
         "belong), the avail ring entry and index, and the decision whether to notify QEMU 1.6.1.",
    answer="add_request", parts=PARTS, make=make, problem=problem, check=check, template=TEMPLATE,
    intro=INTRO, pure=True, captures=CAPTURES, extra={"demo": {"intro": DEMO_INTRO, "code": DEMO}})
