"""Byte provenance: the journey of one byte between the guest's buffer and the disk image, hop by hop.

    dbg.provenance(image_offset=0x800)      # where the image byte at 0x800 came from (or went to)
    dbg.provenance(guest_addr=0x10000)      # where the guest byte at 0x10000 went (or came from)

A write, in order (a read is the same in reverse, image first, guest last):

    layer      what                                              addr            offset
    guest      the guest buffer byte that `rep outsw` reads      its address     None
    vmx/kvm    the `rep outsw` element and its VM exit           the insn's RIP  element number
    kvm_run    the PIO data page of struct kvm_run               None            offset in the vCPU mmap
    qemu-ide   IDEState.io_buffer (ide_data_writew's data_ptr)   None            io_buffer offset
    qemu-block the QEMUIOVector element handed to bdrv_aio_writev None           offset in the element
    host       the pwrite(2) of aio_worker                       None            its file offset
    disk       the raw image                                     None            image offset

Every hop has `index`, the trace index where it happens: `dbg.goto(hop["index"])` shows that moment.

Nothing here knows the path in advance: each link is read from the recorded trace. The VM exits
(`kvm_run_exit` / `kvm_exit_handled` and the VMX `kvm_exit`), the element accesses QEMU made for each exit
(`cpu_out*`/`cpu_in*` entries), and four small point events the model emits for this purpose:
`guest_pio` (vmio_edu.trace.guest_pio: where the string instruction's element sits in guest memory),
`ide_pio_data` (the io_buffer offset of each data-port access, hw/ide/core.c), `ide_pio_qiov` (which
io_buffer bytes the QEMUIOVector covers, for which sectors) and `paio_rw_linear` (which iovec bytes each
pwrite/pread moves, to which file offset, block/raw-posix.c). The raw format maps image offsets to file
offsets one to one, so the last two hops share the number; the `host` hop is the system call moving the
byte, the `disk` hop the byte in the image.

On a virtio disk the byte takes another road (guest RAM → descriptor → QEMUIOVector → pwrite, no copy
before the system call): vmio_edu.trace.provenance_virtio, which `provenance` hands image and guest
bytes to when the trace holds virtio requests.

Events are read through the trace reader interface only: a sequence of `(kind, what, thread, depth,
payload)`.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..errors import VmioError
from ..linux.include.uapi.linux import kvm as K
from .tracepoint import REGISTRY

ENTER, LEAVE, POINT = 0, 1, 2
_PIO_FNS = {"cpu_outb", "cpu_outw", "cpu_outl", "cpu_inb", "cpu_inw", "cpu_inl"}
_SYSCALLS = {"sys_pwrite64": 1, "sys_pread64": 0}


class ProvenanceError(VmioError):
    """The byte asked about did not move through the I/O path in the recorded trace."""


@dataclass
class _Exit:
    n: int                       # its number in machine.exits
    thread: str
    run_enter: int               # the KVM_RUN that ran the guest up to this exit
    vmx_exit: int | None         # the VMX-level `kvm_exit` point (emulated engine), if any
    index: int                   # QEMU's `kvm_run_exit` point
    handled: int | None = None   # `kvm_exit_handled`
    next_run: int | None = None  # the next KVM_RUN: an IN's data reaches guest memory inside it
    next_run_leave: int | None = None
    pio: dict = field(default_factory=dict)  # the guest_pio fields
    elements: list[int] = field(default_factory=list)  # entry index of QEMU's access for each element


@dataclass
class _Data:
    index: int
    offset: int  # io_buffer offset
    size: int
    is_in: int
    exit: _Exit | None
    element: int


@dataclass
class _Rw:
    index: int
    thread: str
    iov_offset: int
    count: int
    pos: int
    is_write: int
    enter: int | None = None
    leave: int | None = None
    done: int = 0             # bytes the system call moved
    caller_leave: int | None = None


def _arg(tp: Any, payload: Any, name: str) -> Any:
    """The recorded value of argument `name` of an ENTER event (None if not recorded): payloads list the
    real signature's arguments in order, objects kept as None, so they are read by name, not position."""
    try:
        i = tp.argnames.index(name)
    except ValueError:
        return None
    return payload[i] if payload and i < len(payload) else None


class _Journeys:
    """One pass over the trace, linking what each byte-moving step did."""

    def __init__(self, events: Sequence) -> None:
        self.exits: list[_Exit] = []
        self.data: list[_Data] = []
        self.qiovs: list[tuple[int, dict]] = []
        self.rws: list[_Rw] = []
        open_exit: dict[str, _Exit] = {}
        last_run: dict[str, int] = {}
        vmx_exit: dict[str, int] = {}
        waiting_run: dict[str, _Exit] = {}  # exits whose next KVM_RUN is not seen yet, by thread
        running: dict[str, tuple[int, _Exit | None]] = {}  # thread -> (depth of the KVM_RUN frame, exit)
        pending_rw: dict[str, _Rw] = {}
        in_call: dict[str, tuple[_Rw, int]] = {}  # thread -> (rw, depth of the syscall's caller)
        for i in range(len(events)):
            kind, what, thread, depth, payload = events[i][:5]
            if kind == POINT:
                if what == "kvm_run_exit":
                    ex = _Exit(len(self.exits), thread, last_run.get(thread, i), vmx_exit.pop(thread, None), i)
                    self.exits.append(ex)
                    open_exit[thread] = ex
                elif what == "kvm_exit":
                    vmx_exit[thread] = i
                elif what == "guest_pio":
                    ex = open_exit.get(thread)
                    if ex is not None:
                        ex.pio = dict(payload)
                elif what == "kvm_exit_handled":
                    ex = open_exit.pop(thread, None)
                    if ex is not None:
                        ex.handled = i
                        waiting_run[thread] = ex
                elif what == "ide_pio_data":
                    f = dict(payload)
                    ex = open_exit.get(thread)
                    k = len(ex.elements) - 1 if ex is not None else -1
                    self.data.append(_Data(i, f["io_buffer_offset"], f["size"], f["is_in"],
                                           ex if k >= 0 else None, k))
                elif what == "ide_pio_qiov":
                    self.qiovs.append((i, dict(payload)))
                elif what == "paio_rw_linear":
                    f = dict(payload)
                    rw = _Rw(i, thread, f["iov_offset"], f["count"], f["pos"], f["is_write"])
                    self.rws.append(rw)
                    pending_rw[thread] = rw
                continue
            tp = REGISTRY[what]
            name = tp.name
            if kind == ENTER:
                if name == "kvm_vcpu_ioctl" and tp.layer == "qemu-cpu" and _arg(tp, payload, "type") == K.KVM_RUN:
                    last_run[thread] = i
                    ex = waiting_run.pop(thread, None)
                    if ex is not None:
                        ex.next_run = i
                    running[thread] = (depth, ex)
                elif name in _PIO_FNS or (name == "address_space_rw" and tp.stack != "1.6.1"):
                    # one element of the exit: cpu_out*/cpu_in* in QEMU 1.6.1; QEMU 10.2's kvm_handle_io
                    # calls address_space_rw per element (1.6.1's address_space_rw sits inside cpu_outw)
                    ex = open_exit.get(thread)
                    if ex is not None:
                        ex.elements.append(i)
                elif name in _SYSCALLS:
                    rw = pending_rw.pop(thread, None)
                    if rw is not None and rw.is_write == _SYSCALLS[name]:
                        rw.enter = i
                        in_call[thread] = (rw, depth - 1)
            else:
                if name == "kvm_vcpu_ioctl" and tp.layer == "qemu-cpu":
                    d, ex = running.pop(thread, (None, None))
                    if ex is not None and d == depth:
                        ex.next_run_leave = i
                elif thread in in_call:
                    rw, caller = in_call[thread]
                    if name in _SYSCALLS and rw.leave is None:
                        rw.leave = i
                        rw.done = payload if isinstance(payload, int) and payload > 0 else 0
                    elif depth <= caller:
                        rw.caller_leave = i
                        del in_call[thread]

    # -- finding ------------------------------------------------------------------------------------------
    def rw_for_image(self, offset: int, is_write: int) -> _Rw | None:
        """The last system call of that direction that moved the byte at file offset `offset`."""
        for rw in reversed(self.rws):
            if rw.is_write == is_write and rw.enter is not None and rw.pos <= offset < rw.pos + rw.done:
                return rw
        return None

    def qiov_before(self, index: int, iov_byte: int, pos: int) -> tuple[int, dict] | None:
        """The QEMUIOVector set up last before `index` whose sectors hold file offset `pos`."""
        j = bisect.bisect_left(self.qiovs, (index,))
        for qi, q in reversed(self.qiovs[:j]):
            lo = q["sector_num"] * 512
            if iov_byte < q["iov_len"] and lo <= pos < lo + q["nb_sectors"] * 512:
                return qi, q
        return None

    def data_access(self, lo: int, hi: int, offset: int, is_in: int, last: bool) -> _Data | None:
        """The io_buffer access (of direction is_in) covering `offset` between indices lo and hi: the last
        one (a write's data is the last stored before the request) or the first (a read's next fetch)."""
        seq = [d for d in self.data if lo < d.index < hi and d.is_in == is_in
               and d.offset <= offset < d.offset + d.size]
        if not seq:
            return None
        return seq[-1] if last else seq[0]


_last: tuple = (None, -1, None, None)  # (id(events), len, last event, _Journeys): one pass per recording


def _journeys(events: Sequence) -> _Journeys:
    """The links of `events`, computed once per recording (a panel asks about many bytes of one run)."""
    global _last
    n = len(events)
    tail = tuple(events[n - 1][:5]) if n else None
    key = (id(events), n, tail)
    if _last[:3] != key:
        _last = key + (_Journeys(events),)
    return _last[3]


# ==========================================================================================================
def _hop(layer: str, what: str, addr: int | None, offset: int | None, index: int | None) -> dict:
    return {"layer": layer, "what": what, "addr": addr, "offset": offset, "index": index}


def _exit_hops(j: _Journeys, d: _Data, byte: int, is_in: int) -> list[dict]:
    """Guest, exit and kvm_run hops for byte `byte` of io_buffer access `d`, in write order."""
    ex = d.exit
    if ex is None or d.element < 0:
        raise ProvenanceError(f"the io_buffer access at index {d.index} came from no VM exit in the trace")
    p, k = ex.pio, d.element
    size = p.get("size", d.size)
    within = byte - d.offset  # the byte's place in the element
    insn = ("rep insw" if is_in else "rep outsw") if size == 2 else ("string in" if is_in else "string out")
    if not p.get("string"):
        insn = "in" if is_in else "out"
    direction = "in" if is_in else "out"
    page = p.get("data_offset", 0) + k * size + within
    exit_what = (f"{insn} element {k} of {p.get('count', '?')}: VM exit #{ex.n} (KVM_EXIT_IO, {direction}, "
                 f"port {p.get('port', 0):#x}, size {size}, count {p.get('count', '?')})")
    hops_exit = _hop("vmx" if ex.vmx_exit is not None else "kvm", exit_what, p.get("insn"), k,
                     ex.vmx_exit if ex.vmx_exit is not None else ex.index)
    if is_in:
        page_index = ex.handled if ex.handled is not None else ex.elements[k]
        page_what = (f"struct kvm_run PIO data page: kvm_handle_io stored element {k} at run + "
                     f"data_offset ({p.get('data_offset', 0):#x}) + {k * size}")
    else:
        page_index = ex.elements[k]
        page_what = (f"struct kvm_run PIO data page: kvm_handle_io reads element {k} at run + "
                     f"data_offset ({p.get('data_offset', 0):#x}) + {k * size}")
    hop_page = _hop("kvm_run", page_what, None, page, page_index)
    if p.get("string"):
        addr = p["addr"] + k * p["step"] + within
        if is_in:
            idx = ex.next_run_leave if ex.next_run_leave is not None else ex.next_run
            if idx is None:
                raise ProvenanceError(f"the guest has not re-entered KVM_RUN after VM exit #{ex.n} in the "
                                      "recorded trace, so the rep insw has not stored the byte yet")
            gwhat = (f"guest memory at {addr:#x}: the {insn} at {p['insn']:#x} stores element {k} at "
                     f"ES:RDI + {k * p['step']} when KVM_RUN completes it (complete_userspace_io)")
        else:
            idx = ex.run_enter
            gwhat = (f"guest buffer at {addr:#x}: the {insn} at {p['insn']:#x} reads element {k} from "
                     f"DS:RSI")
        hop_guest = _hop("guest", gwhat, addr, None, idx)
    else:
        reg = "AL/AX/EAX"
        hop_guest = _hop("guest", f"guest register {reg} of the {insn} at {p.get('insn', 0):#x} (no guest "
                                  "memory: a plain in/out moves a register)", None, None,
                         ex.next_run if is_in else ex.run_enter)
        if is_in and hop_guest["index"] is None:
            hop_guest["index"] = ex.handled
    return [hop_guest, hops_exit, hop_page]


def _write_journey(j: _Journeys, rw: _Rw, image_offset: int) -> list[dict]:
    iov_byte = rw.iov_offset + (image_offset - rw.pos)
    q = j.qiov_before(rw.index, iov_byte, image_offset)
    if q is None:
        raise ProvenanceError(f"the pwrite at index {rw.enter} has no QEMUIOVector from the IDE device "
                              "before it in the trace")
    qi, qf = q
    io_off = qf["io_buffer_offset"] + iov_byte
    lo = max((x for x, _ in j.qiovs if x < qi), default=-1)
    d = j.data_access(lo, qi, io_off, 0, last=True)
    if d is None:
        raise ProvenanceError(f"no data-port write filled io_buffer offset {io_off} before the "
                              f"QEMUIOVector at index {qi}")
    hops = _exit_hops(j, d, io_off, 0)
    hops += [
        _hop("qemu-ide", f"IDEState.io_buffer[{io_off}]: ide_data_writew stores the word at data_ptr "
                         f"{d.offset}", None, io_off, d.index),
        _hop("qemu-block", f"QEMUIOVector element {qf['iov']} (io_buffer + {qf['io_buffer_offset']}, "
                           f"{qf['iov_len']} bytes) for sector {qf['sector_num']}: byte {iov_byte}",
             None, iov_byte, qi),
        _hop("host", f"pwrite(fd, iov[{qf['iov']}] + {rw.iov_offset}, {rw.count}, {rw.pos:#x}): byte "
                     f"{image_offset - rw.pos} goes to file offset {image_offset:#x}", None, image_offset,
             rw.enter),
        _hop("disk", f"the raw image at offset {image_offset:#x} (sector {image_offset // 512}, byte "
                     f"{image_offset % 512})", None, image_offset, rw.leave),
    ]
    return hops


def _read_journey(j: _Journeys, rw: _Rw, image_offset: int) -> list[dict]:
    iov_byte = rw.iov_offset + (image_offset - rw.pos)
    q = j.qiov_before(rw.index, iov_byte, image_offset)
    if q is None:
        raise ProvenanceError(f"the pread at index {rw.enter} has no QEMUIOVector from the IDE device "
                              "before it in the trace")
    qi, qf = q
    io_off = qf["io_buffer_offset"] + iov_byte
    hi = min((x for x, _ in j.qiovs if x > rw.index), default=1 << 62)
    d = j.data_access(rw.leave or rw.index, hi, io_off, 1, last=False)
    if d is None:
        raise ProvenanceError(f"the guest never read io_buffer offset {io_off} through the data port after "
                              f"the pread at index {rw.enter} (in the recorded trace)")
    hops = [
        _hop("disk", f"the raw image at offset {image_offset:#x} (sector {image_offset // 512}, byte "
                     f"{image_offset % 512})", None, image_offset, rw.enter),
        _hop("host", f"pread(fd, iov[{qf['iov']}] + {rw.iov_offset}, {rw.count}, {rw.pos:#x}): file offset "
                     f"{image_offset:#x} lands at byte {iov_byte} of the iovec", None, image_offset, rw.leave),
        _hop("qemu-block", f"QEMUIOVector element {qf['iov']} (io_buffer + {qf['io_buffer_offset']}, "
                           f"{qf['iov_len']} bytes) for sector {qf['sector_num']}: byte {iov_byte}",
             None, iov_byte, rw.caller_leave if rw.caller_leave is not None else rw.leave),
        _hop("qemu-ide", f"IDEState.io_buffer[{io_off}]: ide_data_readw returns the word at data_ptr "
                         f"{d.offset}", None, io_off, d.index),
    ]
    g, e, page = _exit_hops(j, d, io_off, 1)
    return hops + [page, e, g]


def provenance(events: Sequence, *, image_offset: int | None = None, guest_addr: int | None = None,
               io_buffer_offset: int | None = None, kvm_run_offset: int | None = None,
               op: str | None = None, at: int | None = None, disk: str | None = None) -> list[dict]:
    """The hops of one byte's journey (see the module doc), from a recorded trace.

    Give one of:
      image_offset      a byte of the disk image;
      guest_addr        a guest linear address;
      io_buffer_offset  a byte of IDEState.io_buffer (also the QEMUIOVector's offset: its one element
                        covers io_buffer from 0), as it is at trace index `at`;
      kvm_run_offset    a byte of the vCPU's kvm_run mmap (the PIO data page), as it is at index `at`.
    `op` ("write" or "read") picks the direction when an image or guest byte went both ways; by default
    an image byte's journey is the last write that put it there (else the last read of it), a guest
    byte's the last read that stored into it (else the last write that sent it). `at` (default: the end
    of the trace) is the moment whose io_buffer / kvm_run bytes are meant. `disk` ("ide" or "virtio",
    the machine's) saves looking for virtio requests in an IDE machine's trace; None looks.
    """
    given = {k: v for k, v in (("image_offset", image_offset), ("guest_addr", guest_addr),
                               ("io_buffer_offset", io_buffer_offset), ("kvm_run_offset", kvm_run_offset))
             if v is not None}
    if len(given) != 1:
        raise VmioError("provenance needs exactly one of image_offset=…, guest_addr=…, io_buffer_offset=… "
                        "or kvm_run_offset=…")
    if op not in (None, "write", "read"):
        raise VmioError(f"op must be 'write', 'read' or None, not {op!r}")
    (what, value), = given.items()
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise VmioError(f"{what} must be a non-negative int, not {value!r}")
    from . import provenance_virtio as pv
    vj = pv.virtio_journeys(events) if disk != "ide" else None
    if vj is not None and vj.present:  # a virtio disk: the byte is copied once, by the system call (vmio_edu.trace.provenance_virtio)
        if image_offset is not None:
            return pv.from_image(vj, image_offset, op)
        if guest_addr is not None:
            return pv.from_guest(vj, guest_addr, op)
        raise ProvenanceError(f"{what}: on the virtio path no byte passes through IDEState.io_buffer or the "
                              "kvm_run PIO data page (virtqueue_pop maps the guest's buffers in place); ask "
                              "about image_offset=… or guest_addr=… instead")
    j = _journeys(events)
    if image_offset is not None:
        return _from_image(j, image_offset, op)
    if guest_addr is not None:
        return _from_guest(j, guest_addr, op)
    at = len(events) - 1 if at is None else at
    if io_buffer_offset is not None:
        return _from_io_buffer(j, io_buffer_offset, at)
    return _from_kvm_run(j, kvm_run_offset, at)


def _from_io_buffer(j: _Journeys, off: int, at: int) -> list[dict]:
    """io_buffer[off] at index `at` holds what was stored there last: a data-port write (a write's
    journey) or a pread into the iovec over it (a read's)."""
    d = next((x for x in reversed(j.data) if x.index <= at and not x.is_in
              and x.offset <= off < x.offset + x.size), None)
    fill = None
    for rw in reversed(j.rws):
        if rw.is_write or rw.leave is None or rw.leave > at:
            continue
        q = j.qiov_before(rw.index, 0, rw.pos)
        if q is not None and q[1]["io_buffer_offset"] <= off < q[1]["io_buffer_offset"] + q[1]["iov_len"]:
            iov_byte = off - q[1]["io_buffer_offset"]
            if rw.iov_offset <= iov_byte < rw.iov_offset + rw.done:
                fill = (rw, rw.pos + iov_byte - rw.iov_offset)
                break
    if fill is not None and (d is None or fill[0].leave > d.index):
        return _read_journey(j, fill[0], fill[1])
    if d is not None:
        return _write_from_data(j, d, off)
    raise ProvenanceError(f"nothing was stored at io_buffer[{off}] up to index {at}: that byte never moved")


def _from_kvm_run(j: _Journeys, off: int, at: int) -> list[dict]:
    """The PIO data page byte at index `at`: an element of the last I/O exit that used it."""
    for ex in reversed(j.exits):
        p = ex.pio
        if ex.index > at or not p or "data_offset" not in p:
            continue
        lo = p["data_offset"]
        if not lo <= off < lo + p["count"] * p["size"]:
            continue
        k, within = divmod(off - lo, p["size"])
        hits = [d for d in j.data if d.exit is ex and d.element == k]
        if not hits:
            raise ProvenanceError(f"element {k} of VM exit #{ex.n} reached no device (port {p['port']:#x})")
        d = hits[0]
        return _read_from_data(j, d, d.offset + within) if p["is_in"] else _write_from_data(j, d, d.offset + within)
    raise ProvenanceError(f"no I/O exit up to index {at} used kvm_run byte {off:#x}: that byte never moved")


def _from_image(j: _Journeys, off: int, op: str | None) -> list[dict]:
    tries = {"write": (1,), "read": (0,), None: (1, 0)}[op]
    for is_write in tries:
        rw = j.rw_for_image(off, is_write)
        if rw is not None:
            return _write_journey(j, rw, off) if is_write else _read_journey(j, rw, off)
    moved = sorted({(rw.pos // 512, (rw.pos + max(rw.done, 1) - 1) // 512, rw.is_write) for rw in j.rws})
    seen = ", ".join(f"{'written' if w else 'read'} sectors {a}-{b}" for a, b, w in moved) or "no disk I/O"
    kind = {"write": "wrote", "read": "read", None: "wrote or read"}[op]
    raise ProvenanceError(f"no pwrite/pread in the recorded trace {kind} image offset {off:#x} (sector "
                          f"{off // 512}): that byte never moved. The recorded run has {seen}"
                          f"{'' if j.rws else ' yet'}.")


def _from_guest(j: _Journeys, addr: int, op: str | None) -> list[dict]:
    tries = {"write": (0,), "read": (1,), None: (1, 0)}[op]
    for is_in in tries:
        for ex in reversed(j.exits):
            p = ex.pio
            if not p.get("string") or p.get("is_in") != is_in:
                continue
            step, size = p["step"], p["size"]
            k, within = _element_at(p["addr"], step, size, p["count"], addr)
            if k is None:
                continue
            hits = [d for d in j.data if d.exit is ex and d.element == k]
            if not hits:
                continue  # an element no device took (e.g. the data port was closed)
            d = hits[0]
            byte = d.offset + within
            if is_in:
                return _read_from_data(j, d, byte)
            return _write_from_data(j, d, byte)
    kind = {"write": "sent from", "read": "stored into", None: "sent from or stored into"}[op]
    raise ProvenanceError(f"no string I/O instruction in the recorded trace {kind} guest address "
                          f"{addr:#x}: that byte never moved through the I/O path")


def _element_at(base: int, step: int, size: int, count: int, addr: int) -> tuple[int | None, int]:
    for k in range(count):
        a = base + k * step
        if a <= addr < a + size:
            return k, addr - a
    return None, 0


def _write_from_data(j: _Journeys, d: _Data, byte: int) -> list[dict]:
    # the first QEMUIOVector after the access that covers it, then the pwrite that moved its byte
    for qi, q in j.qiovs:
        if qi > d.index and q["io_buffer_offset"] <= byte < q["io_buffer_offset"] + q["iov_len"]:
            iov_byte = byte - q["io_buffer_offset"]
            for rw in j.rws:
                if rw.index > qi and rw.is_write and rw.iov_offset <= iov_byte < rw.iov_offset + rw.done:
                    return _write_journey(j, rw, rw.pos + iov_byte - rw.iov_offset)
            break
    raise ProvenanceError(f"the guest byte reached io_buffer[{byte}] (index {d.index}) but no pwrite wrote it "
                          "to the image in the recorded trace")


def _read_from_data(j: _Journeys, d: _Data, byte: int) -> list[dict]:
    for qi, q in reversed(j.qiovs):
        if qi < d.index and q["io_buffer_offset"] <= byte < q["io_buffer_offset"] + q["iov_len"]:
            iov_byte = byte - q["io_buffer_offset"]
            for rw in j.rws:
                if rw.index > qi and not rw.is_write and rw.iov_offset <= iov_byte < rw.iov_offset + rw.done:
                    return _read_journey(j, rw, rw.pos + iov_byte - rw.iov_offset)
            break
    raise ProvenanceError(f"io_buffer[{byte}] (index {d.index}) was filled by no pread in the recorded trace")
