"""The Virtqueue view: a virtio-blk queue as the guest's RAM holds it, and who owns each descriptor now.

A legacy virtio queue is three arrays in guest RAM (the layout of Linux v3.7 include/uapi/linux/virtio_ring.h,
https://github.com/torvalds/linux/blob/v3.7/include/uapi/linux/virtio_ring.h, which QEMU 1.6.1's
hw/virtio/virtio.c reads with vring_desc_*/vring_avail_*/vring_used_* accessors):

* the descriptor table: `num` entries of {u64 addr, u32 len, u16 flags, u16 next} (16 bytes);
* the avail ring, written by the driver: {u16 flags, u16 idx, u16 ring[num]}: heads of chains it offers;
* the used ring, written by the device, 4096-aligned after it: {u16 flags, u16 idx, {u32 id, u32 len}[num]}.

The indices run freely (mod 2^16); slot = index mod num. A chain is the driver's until its head appears in
the avail ring; then the device's: "available" until `virtqueue_pop` takes it (the device's
`last_avail_idx` passes it), "in flight" while the request runs, until `virtqueue_push` puts it in the used
ring; then it is the driver's again ("used": to reclaim in the interrupt handler).

A virtio-blk request is a chain of a header (struct virtio_blk_outhdr {u32 type, u32 ioprio, u64 sector},
device-readable), the data buffers, and a 1-byte status the device writes (Linux v3.7
include/uapi/linux/virtio_blk.h). This module reads bytes only: it calls no traced function.
"""
from __future__ import annotations

import struct
from collections import Counter
from typing import Any

VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, VRING_DESC_F_INDIRECT = 1, 2, 4
VRING_AVAIL_F_NO_INTERRUPT = 1
VRING_USED_F_NO_NOTIFY = 1
VIRTIO_PCI_VRING_ALIGN = 4096
VIRTIO_RING_F_EVENT_IDX = 29  # feature bit (include/uapi/linux/virtio_ring.h)
DESC = struct.Struct("<QIHH")
OUTHDR = struct.Struct("<IIQ")
BLK_TYPES = {0: "VIRTIO_BLK_T_IN", 1: "VIRTIO_BLK_T_OUT", 2: "VIRTIO_BLK_T_SCSI_CMD", 4: "VIRTIO_BLK_T_FLUSH",
             8: "VIRTIO_BLK_T_GET_ID"}
BLK_STATUS = {0: "VIRTIO_BLK_S_OK", 1: "VIRTIO_BLK_S_IOERR", 2: "VIRTIO_BLK_S_UNSUPP"}
MAX_CHAINS = 8  # most recent chains shown
PREVIEW = 8  # bytes of each data buffer shown (the view must fit the panel's views column)


def vring_layout(pfn: int, num: int) -> dict[str, int]:
    """Where a legacy queue's three parts sit, from the PFN the guest wrote to VIRTIO_PCI_QUEUE_PFN."""
    desc = pfn << 12
    avail = desc + 16 * num
    used = (avail + 4 + 2 * num + 2 + VIRTIO_PCI_VRING_ALIGN - 1) & ~(VIRTIO_PCI_VRING_ALIGN - 1)
    return {"desc": desc, "avail": avail, "used": used}


def _flags(value: int, names: tuple[tuple[str, int], ...]) -> list[str]:
    return [n for n, bit in names if value & bit]


_DESC_FLAGS = (("NEXT", VRING_DESC_F_NEXT), ("WRITE", VRING_DESC_F_WRITE), ("INDIRECT", VRING_DESC_F_INDIRECT))


def _read(mem: Any, addr: int, n: int) -> bytes | None:
    """n bytes of guest RAM at addr, or None when they are not all in RAM (a bad descriptor)."""
    if addr < 0 or addr + n > len(mem):
        return None
    return bytes(mem[addr:addr + n])


def vring_view(mem: Any, *, num: int, desc: int, avail: int, used: int, last_avail_idx: int | None = None,
               in_flight: list[int] | None = None, driver_last_used: int | None = None, queue: int = 0,
               is_blk: bool = True, event_idx: bool = False) -> dict:
    """The queue's state as plain data (see the module docstring).

    mem:              guest RAM (bytes-like, guest-physical address = offset)
    num, desc, avail, used: the queue's size and its three parts' guest-physical addresses
    last_avail_idx:   the device's next avail index to pop (VirtQueue.last_avail_idx), if known
    in_flight:        heads the device popped and has not pushed yet, if known (else worked out from the rings)
    driver_last_used: the driver's next used index to reclaim (vring_virtqueue.last_used_idx), if known
    event_idx:        VIRTIO_RING_F_EVENT_IDX was negotiated: the word after each ring is live (used_event
                      after the avail ring: "interrupt me when used.idx passes it"; avail_event after the
                      used ring: "notify me when avail.idx passes it")
    """
    head = _read(mem, avail, 4)
    uhead = _read(mem, used, 4)
    if num <= 0 or head is None or uhead is None or _read(mem, desc, 16 * num) is None:
        return {"queue": queue, "num": num, "addresses": {"desc": desc, "avail": avail, "used": used},
                "error": "the queue's rings are not inside guest RAM"}
    a_flags, a_idx = struct.unpack("<HH", head)
    u_flags, u_idx = struct.unpack("<HH", uhead)
    avail_ring = [struct.unpack_from("<H", mem, avail + 4 + 2 * s)[0] for s in range(num)]
    used_ring = [struct.unpack_from("<II", mem, used + 4 + 8 * s) for s in range(num)]

    n_avail = min(a_idx, num)  # entries the driver has written (the last num of them)
    n_used = min(u_idx, num)
    avail_entries = [{"index": i, "slot": i % num, "head": avail_ring[i % num]} for i in range(a_idx - n_avail, a_idx)]
    used_entries = [{"index": i, "slot": i % num, "id": used_ring[i % num][0], "len": used_ring[i % num][1]}
                    for i in range(u_idx - n_used, u_idx)]

    # who owns what: by the free-running indices (see the module docstring)
    popped_to = a_idx if last_avail_idx is None else last_avail_idx
    if in_flight is None:
        popped = Counter(e["head"] for e in avail_entries if e["index"] < popped_to)
        pushed = Counter(e["id"] for e in used_entries)
        flying = set((popped - pushed).elements())
    else:
        flying = set(in_flight)
    reclaim_from = driver_last_used
    state_of: dict[int, str] = {}
    for e in used_entries:
        done = reclaim_from is not None and e["index"] < reclaim_from
        state_of[e["id"]] = "free" if done else "used"
    for e in avail_entries:
        h = e["head"]
        if last_avail_idx is not None and e["index"] >= last_avail_idx:
            state_of[h] = "available"
        elif h in flying:
            state_of[h] = "in flight"
    for e in avail_entries:
        e["state"] = state_of.get(e["head"], "used")
    for e in used_entries:
        e["state"] = state_of.get(e["id"], "used")

    chains = []
    heads = list(dict.fromkeys(e["head"] for e in reversed(avail_entries)))[:MAX_CHAINS][::-1]
    for h in heads:
        st = state_of.get(h, "used")
        chain = _chain(mem, desc, num, h, is_blk)
        chain.update(state=st, owner="device" if st in ("available", "in flight") else "driver")
        for d in chain["descriptors"]:
            d["owner"] = chain["owner"]
            if d.get("role") == "status" and chain["owner"] == "device":
                d["status_name"] = "pending: the device writes it on completion (virtio_blk_req_complete)"
        chains.append(chain)
    events = {}
    if event_idx and _read(mem, used + 4 + 8 * num, 2) is not None:
        events = {"used_event": struct.unpack_from("<H", mem, avail + 4 + 2 * num)[0],
                  "avail_event": struct.unpack_from("<H", mem, used + 4 + 8 * num)[0]}
    return {
        "queue": queue, "num": num, "event_idx": event_idx,
        "addresses": {"desc": desc, "avail": avail, "used": used},
        "avail": {"flags": a_flags, "flags_set": _flags(a_flags, (("NO_INTERRUPT", VRING_AVAIL_F_NO_INTERRUPT),)),
                  "idx": a_idx, "ring": avail_entries,
                  **({"used_event": events["used_event"]} if events else {})},
        "used": {"flags": u_flags, "flags_set": _flags(u_flags, (("NO_NOTIFY", VRING_USED_F_NO_NOTIFY),)),
                 "idx": u_idx, "ring": used_entries,
                 **({"avail_event": events["avail_event"]} if events else {})},
        "device": {"last_avail_idx": last_avail_idx, "in_flight": sorted(flying)},
        "driver": {"last_used_idx": driver_last_used},
        "chains": chains,
        "note": ("a chain is the driver's until its head is in the avail ring, then the device's until "
                 "virtqueue_push puts it in the used ring"),
    }


def _walk(mem: Any, table: int, size: int, start: int, where: str) -> tuple[list[dict], str | None]:
    """The descriptors of one table from `start` by their NEXT flags, as virtqueue_pop follows them, stopping
    at an index past the table or a loop (QEMU 1.6.1 stops the VM with an error there)."""
    out: list[dict] = []
    seen: set[int] = set()
    i = start
    while True:
        if i >= size:
            return out, f"descriptor index {i} is past the {where} ({size} entries)"
        if i in seen:
            return out, f"the chain loops back to descriptor {i}"
        seen.add(i)
        if _read(mem, table + 16 * i, 16) is None:
            return out, f"descriptor {i} of the {where} is not in guest RAM"
        addr, length, flags, nxt = DESC.unpack_from(mem, table + 16 * i)
        out.append({"index": i, "addr": addr, "len": length, "flags": flags,
                    "flags_set": _flags(flags, _DESC_FLAGS), "next": nxt if flags & VRING_DESC_F_NEXT else None,
                    "writer": "device" if flags & VRING_DESC_F_WRITE else "driver"})
        if not flags & VRING_DESC_F_NEXT:
            return out, None
        i = nxt


def _chain(mem: Any, desc: int, num: int, head: int, is_blk: bool) -> dict:
    """Follow a chain from `head`. A VRING_DESC_F_INDIRECT descriptor points to a table of its own (len / 16
    descriptors) that holds the request's chain from its entry 0: the outer descriptor is shown with the
    role "indirect table", its entries after it (`in_table`: the outer index)."""
    out, problem = _walk(mem, desc, num, head, "table")
    parts = out
    if out and out[0]["flags"] & VRING_DESC_F_INDIRECT and problem is None:
        outer = out[0]
        outer["role"] = "indirect table"
        inner, problem = _walk(mem, outer["addr"], outer["len"] // 16, 0, "indirect table")
        for d in inner:
            d["in_table"] = outer["index"]
        parts = inner
        out = [outer] + inner
    if is_blk:
        _blk_roles(mem, parts)
    chain = {"head": head, "descriptors": out}
    if problem:
        chain["problem"] = problem
    return chain


def _blk_roles(mem: Any, descs: list[dict]) -> None:
    """Name each part of a virtio-blk request and decode what it holds now."""
    for n, d in enumerate(descs):
        d["role"] = "header" if n == 0 else "status" if n == len(descs) - 1 and len(descs) > 1 else "data"
        if d["role"] == "header" and d["len"] >= OUTHDR.size:
            raw = _read(mem, d["addr"], OUTHDR.size)
            if raw is not None:
                t, prio, sector = OUTHDR.unpack(raw)
                d["header"] = {"type": t, "type_name": BLK_TYPES.get(t & 0x7FFFFFFF, f"unknown ({t})"),
                               "ioprio": prio, "sector": sector}
        elif d["role"] == "status" and d["len"] >= 1:
            raw = _read(mem, d["addr"], 1)
            if raw is not None:
                d["status"] = raw[0]
                d["status_name"] = BLK_STATUS.get(raw[0], "not written yet" if raw[0] == 0xFF else "?")
        elif d["role"] == "data":
            raw = _read(mem, d["addr"], min(PREVIEW, d["len"]))
            if raw is not None:
                d["bytes"] = raw.hex()


# ==========================================================================================================
# The view of a machine
# ==========================================================================================================
def find_virtio_blk(m: Any) -> Any:
    """The machine's virtio-blk device (its VirtIODevice), or None for an IDE machine."""
    proxy = getattr(m, "virtio", None)  # the VirtIOPCIProxy (Machine(disk="virtio"))
    return None if proxy is None else getattr(proxy, "vdev", None)


def driver_last_used(m: Any) -> int | None:
    """The guest driver's last_used_idx (Linux's vring_virtqueue.last_used_idx), where the guest says where
    it keeps it (the virtio guest's DRV + D_LAST_USED), else None."""
    sym = getattr(getattr(m, "program", None), "symbols", None) or {}
    if "DRV" not in sym or "D_LAST_USED" not in sym:
        return None
    addr = sym["DRV"] + sym["D_LAST_USED"]
    return struct.unpack_from("<I", m.ram, addr)[0] & 0xFFFF


def machine_virtqueue_view(m: Any) -> dict:
    """`stop.views["virtqueue"]`: every queue the driver has set up, read from guest RAM."""
    dev = find_virtio_blk(m)
    if dev is None:
        return {"present": False, "note": "this machine's disk is IDE: no virtqueue (Machine(disk=\"virtio\") "
                                          "has one)"}
    queues = []
    last_used = driver_last_used(m)
    for i, vq in enumerate(dev.vq):
        vring = vq.vring
        if not vring.num or not vq.pa:
            continue  # not set up by the driver (VIRTIO_PCI_QUEUE_PFN still 0)
        queues.append(vring_view(m.ram, num=vring.num, desc=vring.desc, avail=vring.avail, used=vring.used,
                                 last_avail_idx=vq.last_avail_idx, in_flight=sorted(vq.inflight),
                                 driver_last_used=last_used, queue=i,
                                 event_idx=bool(dev.guest_features >> VIRTIO_RING_F_EVENT_IDX & 1)))
    return {"present": True, "device": dev.name or "virtio-blk", "status": dev.status, "isr": dev.isr,
            "queues": queues,
            "note": "" if queues else "the driver has not set up a queue yet (VIRTIO_PCI_QUEUE_PFN is 0)"}
