"""Byte provenance on the virtio-blk path: one byte between guest RAM and the disk image, hop by hop.

On IDE PIO a byte is copied four times (guest buffer → kvm_run page → io_buffer → pwrite). On virtio it is
copied once, by the system call: `virtqueue_pop` maps each descriptor's buffer in place, the request's
QEMUIOVector points into guest RAM, `bdrv_aio_multiwrite` may merge several requests' vectors into one,
and the pool worker's pwrite/pwritev reads the guest's pages. A write, in order (a read in reverse):

    layer       what                                                         addr          offset
    guest       the byte in guest RAM (a data descriptor's buffer)           guest-phys    None
    vmx/kvm     the driver's kick (the notify `out`: a VM exit, or ioeventfd) the out's RIP None
    qemu-virtio the descriptor virtqueue_pop mapped: VirtIOBlockReq.qiov     guest-phys    byte in request
    qemu-block  the bdrv_aio_writev request (merged by multiwrite or not)   None          byte in its qiov
    host        the pwrite/pwritev of aio_worker                             None          file offset
    disk        the raw image                                                None          image offset

What is not followed, and said so in the guest hop: which guest instruction stored the byte into the
buffer. vmio-edu records no guest memory stores (only the I/O instructions' exits), and on virtio no
I/O instruction touches the data.

The links are read from the recorded trace: the point events `virtio_blk_qiov` (hw/block/virtio-blk.c:
each element of a request's vector, its guest-physical address, descriptor and place in the request) and
`paio_rw_iov` (block/raw-posix.c: each guest-RAM iovec a system call moves, with its file offset), the
system calls' entries and returns, `bdrv_aio_writev`/`bdrv_aio_readv` entries, and the kick
(`virtio_queue_notify_vq`, with the VM exit or `ioeventfd_write` before it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from .tracepoint import REGISTRY

ENTER, LEAVE, POINT = 0, 1, 2
_SYSCALLS = {"sys_pwrite64": 1, "sys_pwritev": 1, "sys_pread64": 0, "sys_preadv": 0}


@dataclass
class _HostIov:
    index: int
    thread: str
    iov: int
    addr: int
    len: int
    pos: int
    is_write: int
    call: str = ""
    enter: int | None = None
    leave: int | None = None
    start: int = 0            # the file offset the system call starts at
    done: int = 0             # bytes the system call moved


@dataclass
class _Kick:
    index: int                # virtio_queue_notify_vq's entry
    thread: str
    exit_index: int | None = None   # kvm_run_exit of the notify (ioeventfd off)
    exit_n: int | None = None
    pio: dict | None = None
    ioeventfd: int | None = None    # ioeventfd_write's entry (emulated engine, ioeventfd on)


def _arg(tp: Any, payload: Any, name: str) -> Any:
    try:
        i = tp.argnames.index(name)
    except ValueError:
        return None
    return payload[i] if payload and i < len(payload) else None


class VirtioJourneys:
    """One pass over the trace, keeping what links a virtio byte's steps."""

    def __init__(self, events: Sequence) -> None:
        self.qiovs: list[tuple[int, dict, _Kick | None]] = []
        self.iovs: list[_HostIov] = []
        self.blockreqs: list[tuple[int, str, int, int]] = []  # (index, function, sector_num, nb_sectors)
        self.kicks: list[_Kick] = []
        pending: dict[str, list[_HostIov]] = {}
        in_call: dict[str, list[_HostIov]] = {}
        last_kick: dict[str, _Kick] = {}
        last_exit: dict[str, tuple[int, int, dict]] = {}  # thread → (index, exit number, guest_pio)
        last_ioeventfd: int | None = None
        n_exits = 0
        for i in range(len(events)):
            kind, what, thread, depth, payload = events[i][:5]
            if kind == POINT:
                if what == "kvm_run_exit":
                    last_exit[thread] = (i, n_exits, {})
                    n_exits += 1
                elif what == "guest_pio" and thread in last_exit:
                    last_exit[thread][2].update(dict(payload))
                elif what == "virtio_blk_qiov":
                    self.qiovs.append((i, dict(payload), last_kick.get(thread)))
                elif what == "paio_rw_iov":
                    f = dict(payload)
                    pending.setdefault(thread, []).append(
                        _HostIov(i, thread, f["iov"], f["addr"], f["len"], f["pos"], f["is_write"]))
                continue
            tp = REGISTRY[what]
            name = tp.name
            if kind == ENTER:
                if name in _SYSCALLS and pending.get(thread):
                    group = [h for h in pending.pop(thread) if h.is_write == _SYSCALLS[name]]
                    start = min((h.pos for h in group), default=0)
                    for h in group:
                        h.call, h.enter, h.start = name, i, start
                    in_call[thread] = group
                elif name in ("bdrv_aio_writev", "bdrv_aio_readv"):
                    self.blockreqs.append((i, name, _arg(tp, payload, "sector_num"), _arg(tp, payload, "nb_sectors")))
                elif name == "ioeventfd_write":
                    last_ioeventfd = i
                elif name == "virtio_queue_notify_vq":
                    k = _Kick(i, thread)
                    ex = last_exit.get(thread)
                    if thread.startswith("vcpu") and ex is not None:  # ioeventfd off: the notify exit
                        k.exit_index, k.exit_n, k.pio = ex
                    elif last_ioeventfd is not None:
                        k.ioeventfd = last_ioeventfd
                    self.kicks.append(k)
                    last_kick[thread] = k
            elif name in _SYSCALLS and thread in in_call:
                done = payload if isinstance(payload, int) and payload > 0 else 0
                for h in in_call.pop(thread):
                    h.leave, h.done = i, done
                    self.iovs.append(h)

    @property
    def present(self) -> bool:
        """Did any virtio request move data in this trace?"""
        return bool(self.qiovs)

    # -- finding ------------------------------------------------------------------------------------------
    def host_for_image(self, off: int, is_write: int) -> _HostIov | None:
        """The last system call of that direction that moved image byte `off`, and the iovec it was in."""
        for h in reversed(self.iovs):
            if h.is_write == is_write and h.pos <= off < h.pos + h.len and off < h.start + h.done:
                return h
        return None

    def request_for(self, h: _HostIov, off: int) -> tuple[int, dict, _Kick | None] | None:
        """The virtio request element (virtio_blk_qiov) before the system call whose guest buffer holds
        the byte and whose request puts it at image offset `off`."""
        gpa = h.addr + (off - h.pos)
        for qi, q, kick in reversed(self.qiovs):
            if qi > h.index or q["is_write"] != h.is_write:
                continue
            if q["addr"] <= gpa < q["addr"] + q["len"] and \
                    q["sector"] * 512 + q["offset"] + (gpa - q["addr"]) == off:
                return qi, q, kick
        return None

    def block_request(self, before: int, after: int, off: int, name: str) -> tuple[int, str, int, int] | None:
        for b in reversed(self.blockreqs):
            i, fn, sector, nb = b
            if after < i < before and fn == name and sector is not None and nb is not None \
                    and sector * 512 <= off < (sector + nb) * 512:
                return b
        return None


_last: tuple = (None, -1, None, None)


def virtio_journeys(events: Sequence) -> VirtioJourneys:
    """The links of `events`, computed once per recording."""
    global _last
    n = len(events)
    tail = tuple(events[n - 1][:5]) if n else None
    key = (id(events), n, tail)
    if _last[:3] != key:
        _last = key + (VirtioJourneys(events),)
    return _last[3]


def _hop(layer: str, what: str, addr: int | None, offset: int | None, index: int | None) -> dict:
    return {"layer": layer, "what": what, "addr": addr, "offset": offset, "index": index}


NOT_FOLLOWED = ("which guest instruction stored the byte there is not followed: vmio-edu records no guest "
                "memory stores, and on virtio no I/O instruction touches the data (the default virtio guest's "
                "buffer is filled by Machine before the guest starts)")


def _kick_hop(kick: _Kick | None, head: int) -> dict | None:
    if kick is None:
        return None
    if kick.exit_index is not None:
        p = kick.pio or {}
        return _hop("kvm", f"the driver's kick: out to port {p.get('port', 0):#x} (VIRTIO_PCI_QUEUE_NOTIFY) at "
                    f"{p.get('insn', 0):#x}: VM exit #{kick.exit_n} (KVM_EXIT_IO), then virtio_queue_notify_vq "
                    f"on {kick.thread} pops chain {head}", p.get("insn"), None, kick.exit_index)
    if kick.ioeventfd is not None:
        return _hop("kvm", f"the driver's kick: its notify `out` was handled in the kernel (ioeventfd_write "
                           f"signals the eventfd; no exit to QEMU); QEMU's main loop runs virtio_queue_notify_vq "
                           f"and pops chain {head}", None, None, kick.ioeventfd)
    return _hop("kvm", f"the driver's kick (real KVM: its notify `out` was handled in the kernel by the "
                       f"ioeventfd, opaque to userspace); QEMU's {kick.thread} thread runs "
                       f"virtio_queue_notify_vq and pops chain {head}", None, None, kick.index)


def _descriptor_hop(qi: int, q: dict, gpa: int) -> dict:
    table = (f"indirect table at {q['table']:#x}" if q["indirect"] else f"descriptor table at {q['table']:#x}")
    within = q["offset"] + gpa - q["addr"]
    verb = "the device reads it there" if q["is_write"] else "the device stores into it there"
    return _hop("qemu-virtio",
                f"virtqueue_pop mapped descriptor {q['desc']} of chain {q['head']} ({table}: addr "
                f"{q['addr']:#x}, len {q['len']}) in place: element {q['iov']} of VirtIOBlockReq.qiov, byte "
                f"{within} of the request for sector {q['sector']}; {verb}", gpa, within, qi)


def _block_hop(j: VirtioJourneys, h: _HostIov, off: int, qi: int, q: dict) -> dict | None:
    name = "bdrv_aio_writev" if h.is_write else "bdrv_aio_readv"
    b = j.block_request(h.index, qi, off, name)
    if b is None:
        return None
    bi, fn, sector, nb = b
    merged = (sector, nb * 512) != (q["sector"], q["size"])  # not the request's own range: multiwrite merged it
    how = ("merged by bdrv_aio_multiwrite (multiwrite_merge) with the other requests of its kick: a new "
           "QEMUIOVector made of their guest buffers" if merged and h.is_write else
           "the request's own QEMUIOVector")
    return _hop("qemu-block", f"{fn}(sector {sector}, {nb} sectors), {how}: byte {off - sector * 512}, in "
                              f"iovec {h.iov} (guest RAM {h.addr:#x}, {h.len} bytes)", None, off - sector * 512, bi)


def _call(h: _HostIov) -> str:
    return h.call.replace("sys_", "").replace("64", "")


def _host_hop(h: _HostIov, off: int) -> dict:
    call = _call(h)
    verb = "goes to" if h.is_write else "comes from"
    return _hop("host", f"{call}(fd, …, {h.start:#x}) by aio_worker: iovec {h.iov} (guest RAM {h.addr:#x}) byte "
                        f"{off - h.pos} {verb} file offset {off:#x}", None, off, h.enter if h.is_write else h.leave)


def _disk_hop(off: int, index: int | None) -> dict:
    return _hop("disk", f"the raw image at offset {off:#x} (sector {off // 512}, byte {off % 512})", None, off,
                index)


def write_journey(j: VirtioJourneys, h: _HostIov, off: int) -> list[dict]:
    from .provenance import ProvenanceError
    r = j.request_for(h, off)
    if r is None:
        raise ProvenanceError(f"the {h.call} at index {h.enter} wrote image offset {off:#x} from guest RAM "
                              f"{h.addr + off - h.pos:#x}, but no virtio request before it maps that byte")
    qi, q, kick = r
    gpa = h.addr + (off - h.pos)
    hops = [_hop("guest", f"guest RAM at {gpa:#x}: byte {gpa - q['addr']} of the buffer of descriptor {q['desc']} "
                          f"(chain {q['head']}); {NOT_FOLLOWED}", gpa, None, qi)]
    k = _kick_hop(kick, q["head"])
    if k is not None:
        hops[0]["index"] = k["index"]  # the byte was there when the driver handed the chain over
        hops.append(k)
    hops.append(_descriptor_hop(qi, q, gpa))
    b = _block_hop(j, h, off, qi, q)
    if b is not None:
        hops.append(b)
    hops += [_host_hop(h, off), _disk_hop(off, h.leave)]
    return hops


def read_journey(j: VirtioJourneys, h: _HostIov, off: int) -> list[dict]:
    from .provenance import ProvenanceError
    r = j.request_for(h, off)
    if r is None:
        raise ProvenanceError(f"the {h.call} at index {h.enter} read image offset {off:#x} into guest RAM "
                              f"{h.addr + off - h.pos:#x}, but no virtio request before it maps that byte")
    qi, q, kick = r
    gpa = h.addr + (off - h.pos)
    hops = [_disk_hop(off, h.enter), _host_hop(h, off)]
    b = _block_hop(j, h, off, qi, q)
    if b is not None:
        hops.append(b)
    hops.append(_descriptor_hop(qi, q, gpa))
    k = _kick_hop(kick, q["head"])
    if k is not None:
        hops.append(k)
    hops.append(_hop("guest", f"guest RAM at {gpa:#x}: byte {gpa - q['addr']} of the buffer of descriptor "
                              f"{q['desc']} (chain {q['head']}), stored by the {_call(h)} "
                              "itself (no copy after it); the driver sees it once the used ring says the "
                              "chain is done", gpa, None, h.leave))
    return hops


def from_image(j: VirtioJourneys, off: int, op: str | None) -> list[dict]:
    from .provenance import ProvenanceError
    tries = {"write": (1,), "read": (0,), None: (1, 0)}[op]
    for is_write in tries:
        h = j.host_for_image(off, is_write)
        if h is not None:
            return write_journey(j, h, off) if is_write else read_journey(j, h, off)
    moved = sorted({(h.pos // 512, (h.pos + h.len - 1) // 512, h.is_write) for h in j.iovs})
    seen = ", ".join(f"{'written' if w else 'read'} sectors {a}-{b}" for a, b, w in moved) or "no disk I/O"
    kind = {"write": "wrote", "read": "read", None: "wrote or read"}[op]
    raise ProvenanceError(f"no virtio request's pwrite/pread in the recorded trace {kind} image offset {off:#x} "
                          f"(sector {off // 512}): that byte never moved. The recorded run has {seen}.")


def from_guest(j: VirtioJourneys, gpa: int, op: str | None) -> list[dict]:
    """A guest-physical byte: the last read that stored into it (else the last write that sent it)."""
    from .provenance import ProvenanceError
    tries = {"write": (1,), "read": (0,), None: (0, 1)}[op]
    for is_write in tries:
        for qi, q, _kick in reversed(j.qiovs):
            if q["is_write"] != is_write or not q["addr"] <= gpa < q["addr"] + q["len"]:
                continue
            off = q["sector"] * 512 + q["offset"] + gpa - q["addr"]
            for h in j.iovs:
                if h.index > qi and h.is_write == is_write and h.addr <= gpa < h.addr + h.len \
                        and h.pos + gpa - h.addr == off and off < h.start + h.done:
                    return write_journey(j, h, off) if is_write else read_journey(j, h, off)
    kind = {"write": "sent from", "read": "stored into", None: "sent from or stored into"}[op]
    raise ProvenanceError(f"no virtio request in the recorded trace {kind} guest address {gpa:#x}: no data "
                          "descriptor's buffer held it (or its request did not reach the disk yet)")
