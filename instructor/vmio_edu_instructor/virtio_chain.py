"""virtio_chain: the reference, an oracle written apart from the public `expected` (its own vring parser, read
from the 0.9.5 layout: Linux 3.7 include/uapi/linux/virtio_ring.h and QEMU 1.6.1 hw/virtio/virtio.c, read
at tonyho/Linux-3.7-TQ2440 db95d3d8 and rzr/qemu 62ecc3a0), and the hidden cases: the u16 wrap of
avail->idx, a fresh ring, fragmented free lists, indirect tables, sectors above 2^32, both directions, kick
and no kick with and without event idx, VRING_USED_F_NO_NOTIFY set while event idx is on (it must be
ignored)."""
from __future__ import annotations

import struct

from vmio_edu.grading.virtio_chain import new_case

BODY = '''    base, num = vq["base"], vq["num"]
    avail = base + 16 * num
    used = (avail + 4 + 2 * num + 2 + 4095) & ~4095
    # virtio_blk_outhdr: u32 type, u32 ioprio, u64 sector
    struct.pack_into("<IIQ", mem, req["hdr"], 1 if req["write"] else 0, req["ioprio"], req["sector"])
    bufs = [(req["hdr"], 16, 0)]
    bufs += [(addr, sectors * 512, 0 if req["write"] else 2) for addr, sectors in req["segments"]]
    bufs += [(req["status"], 1, 2)]
    head = i = vq["free_head"]
    if vq["indirect"] is not None:
        # vring_add_indirect: the chain in the table, one ring descriptor pointing at it
        table = vq["indirect"]
        for k, (addr, length, flags) in enumerate(bufs):
            last = k == len(bufs) - 1
            struct.pack_into("<QIHH", mem, table + 16 * k, addr, length, flags | (0 if last else 1),
                             0 if last else k + 1)
        struct.pack_into("<QIH", mem, base + 16 * head, table, 16 * len(bufs), 4)
        i = struct.unpack_from("<H", mem, base + 16 * head + 14)[0]
        bufs = []
    for k, (addr, length, flags) in enumerate(bufs):
        flags |= 1 if k < len(bufs) - 1 else 0
        struct.pack_into("<QIH", mem, base + 16 * i, addr, length, flags)
        i = struct.unpack_from("<H", mem, base + 16 * i + 14)[0]
    old = struct.unpack_from("<H", mem, avail + 2)[0]
    struct.pack_into("<H", mem, avail + 4 + 2 * (old % num), head)
    new = (old + 1) & 0xFFFF
    struct.pack_into("<H", mem, avail + 2, new)
    if vq["event_idx"]:
        event = struct.unpack_from("<H", mem, used + 4 + 8 * num)[0]
        kick = (new - event - 1) & 0xFFFF < (new - old) & 0xFFFF
    else:
        kick = not struct.unpack_from("<H", mem, used)[0] & 1
    return {"free_head": i, "kick": kick}
'''

VRING_ALIGN = 4096


def _u(mem: bytes, at: int, size: int) -> int:
    return int.from_bytes(mem[at:at + size], "little")


def parse_vring(mem: bytes, base: int, num: int) -> dict:
    """Read a legacy vring out of guest memory: desc[num] at base (16 bytes each), the avail ring after it, the
    used ring at the next VRING_ALIGN boundary after avail->ring[num] and used_event."""
    if num <= 0 or num & (num - 1):
        raise ValueError(f"ring size {num} is not a power of two")
    desc = [{"addr": a, "len": n, "flags": f, "next": x}
            for a, n, f, x in struct.iter_unpack("<QIHH", bytes(mem[base:base + 16 * num]))]
    a = base + 16 * num
    avail = {"at": a, "flags": _u(mem, a, 2), "idx": _u(mem, a + 2, 2),
             "ring": list(struct.unpack_from(f"<{num}H", mem, a + 4)), "used_event": _u(mem, a + 4 + 2 * num, 2)}
    u = -(-(a + 2 * (3 + num)) // VRING_ALIGN) * VRING_ALIGN
    used = {"at": u, "flags": _u(mem, u, 2), "idx": _u(mem, u + 2, 2),
            "ring": list(struct.iter_unpack("<II", bytes(mem[u + 4:u + 4 + 8 * num]))),
            "avail_event": _u(mem, u + 4 + 8 * num, 2)}
    return {"desc": desc, "avail": avail, "used": used}


def read_request(mem: bytes, ring: dict, head: int) -> list[dict]:
    """The descriptors of the request at `head` as QEMU's virtqueue_pop collects them: through an indirect
    table (entries from 0, by NEXT/next within it) when the head has VRING_DESC_F_INDIRECT."""
    d = ring["desc"][head]
    if not d["flags"] & 4:
        return [ring["desc"][i] for i in walk_chain(ring, head)]
    if d["len"] % 16:
        raise ValueError("Invalid size for indirect buffer table")
    table = [dict(zip(("addr", "len", "flags", "next"), e))
             for e in struct.iter_unpack("<QIHH", bytes(mem[d["addr"]:d["addr"] + d["len"]]))]
    return [table[i] for i in walk_chain({"desc": table}, 0)]


def walk_chain(ring: dict, head: int) -> list[int]:
    """The descriptor indices of the chain at `head`, as virtqueue_pop follows them (NEXT, then next)."""
    out, i = [head], head
    while ring["desc"][i]["flags"] & 1:
        i = ring["desc"][i]["next"]
        if i in out or len(out) > len(ring["desc"]):
            raise ValueError("looped descriptor chain")
        out.append(i)
    return out


def _ram(case: dict) -> bytearray:
    mem = bytearray(0x40000)
    for at, h in case["fill"]:
        b = bytes.fromhex(h)
        mem[at:at + len(b)] = b
    return mem


def oracle(case: dict) -> dict:
    """What Linux 3.7 leaves in memory for this case, as writes, plus the chain, free_head and kick."""
    vq, req = case["vq"], case["req"]
    num = vq["num"]
    before = parse_vring(_ram(case), vq["base"], num)
    buffers = [(req["hdr"], 16, False)] + [(a, 512 * n, not req["write"]) for a, n in req["segments"]] + \
        [(req["status"], 1, True)]
    writes = [[req["hdr"], (int(req["write"]).to_bytes(4, "little") + req["ioprio"].to_bytes(4, "little")
                            + req["sector"].to_bytes(8, "little")).hex()]]

    def entry(addr: int, length: int, flags: int) -> bytes:
        return addr.to_bytes(8, "little") + length.to_bytes(4, "little") + flags.to_bytes(2, "little")

    flags = [(2 if device_writes else 0) | (1 if pos + 1 < len(buffers) else 0)
             for pos, (_a, _l, device_writes) in enumerate(buffers)]
    table = vq.get("indirect")
    if table is None:
        chain, i = [], vq["free_head"]
        for _ in buffers:  # the free list, followed through the old next fields
            chain.append(i)
            i = before["desc"][i]["next"]
        for d, (addr, length, _w), f in zip(chain, buffers, flags):
            writes.append([vq["base"] + 16 * d, entry(addr, length, f).hex()])
    else:  # one ring descriptor for the table; the table's entries link 0 -> 1 -> ... and end with next 0
        chain = [vq["free_head"]]
        i = before["desc"][chain[0]]["next"]
        for k, ((addr, length, _w), f) in enumerate(zip(buffers, flags)):
            link = k + 1 if k + 1 < len(buffers) else 0
            writes.append([table + 16 * k, (entry(addr, length, f) + link.to_bytes(2, "little")).hex()])
        writes.append([vq["base"] + 16 * chain[0], entry(table, 16 * len(buffers), 4).hex()])
    old = before["avail"]["idx"]
    new = (old + 1) % 65536
    a = before["avail"]["at"]
    writes.append([a + 4 + 2 * (old % num), chain[0].to_bytes(2, "little").hex()])
    writes.append([a + 2, new.to_bytes(2, "little").hex()])
    if vq["event_idx"]:
        ev = before["used"]["avail_event"]
        kick = (new - ev - 1) % 65536 < (new - old) % 65536
    else:
        kick = not before["used"]["flags"] & 1
    return {"writes": writes, "chain": chain, "free_head": i, "kick": kick}


def complete(params: dict) -> dict:
    for c in params["cases"]:
        c["want"] = oracle(c)
    return params


def hidden(r, params: dict) -> list:
    cases = [new_case(r, old=0xFFFF, event_idx=True, kick=True),            # idx wraps; kick needs the u16 sums
             new_case(r, old=0xFFFF, event_idx=False, kick=False, write=False, indirect=False),
             new_case(r, old=0, num=8, kick=True, event_idx=True),
             new_case(r, old=r.randrange(1, 1 << 16), num=256, nseg=3, kick=True, event_idx=True),
             new_case(r, num=128, free_order="fresh", nseg=2, write=True, indirect=False),
             new_case(r, num=64, free_order="runs", nseg=3, write=False, indirect=False),
             new_case(r, sector=r.randrange(1 << 32, 1 << 40), write=True),
             new_case(r, sector=(1 << 32) + r.randrange(1 << 20), write=False, nseg=2),
             new_case(r, event_idx=True, kick=True, used_flags=1, old=r.randrange(100, 60000)),  # NO_NOTIFY ignored
             new_case(r, event_idx=True, kick=False, used_flags=0),
             new_case(r, old=0, event_idx=True, kick=False),  # avail_event behind 0 wraps to 65535 and up
             new_case(r, event_idx=False, kick=True, avail_flags=1),
             new_case(r, num=16, nseg=3, free_order="shuffled", write=False, old=15, indirect=False),
             new_case(r, indirect=True, nseg=1, write=True),
             new_case(r, indirect=True, nseg=3, write=False, old=0xFFFF),
             new_case(r, indirect=True, num=8, free_order="fresh")]
    cases += [new_case(r) for _ in range(8)]
    for c in cases:
        c["want"] = oracle(c)
    return cases
