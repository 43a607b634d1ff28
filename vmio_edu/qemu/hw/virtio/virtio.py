"""hw/virtio/virtio.c (QEMU v1.6.1): virtqueues, the rings a virtio driver and device share in guest RAM.

A queue of `num` entries lives at the guest-physical address the driver wrote to QUEUE_PFN (legacy layout,
VIRTIO_PCI_VRING_ALIGN 4096):

    desc  = pa                       num x {u64 addr, u32 len, u16 flags, u16 next}   (16 bytes each)
    avail = pa + num*16              {u16 flags, u16 idx, u16 ring[num], u16 used_event}
    used  = align(avail + 4 + 2*num, 4096)   {u16 flags, u16 idx, {u32 id, u32 len} ring[num], u16 avail_event}

The driver puts a chain of descriptors (flags NEXT chains them, WRITE marks the device-writable ones) in
the table, its head's index into avail.ring[avail.idx % num], bumps avail.idx and kicks (QUEUE_NOTIFY).
The device (`virtqueue_pop`) walks avail from its private `last_avail_idx`, maps each descriptor's guest
memory in place, and later returns the head in the used ring (`virtqueue_push` = fill + flush) and
interrupts (`virtio_notify`). QEMU reads the rings with ldl_phys & co. on every access; nothing is cached.

Guest mistakes that make 1.6.1 print an error and `exit(1)` (a descriptor index past the table, a looped
chain, memory that can't be mapped) raise `VirtioExit` here: the VM is gone, nothing more is written.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Callable

from ....errors import GuestFault
from ....trace.tracepoint import tracepoint
from ...exec import (cpu_physical_memory_map, cpu_physical_memory_unmap, ldl_phys, ldq_phys, lduw_phys,
                     stl_phys, stw_phys)
from ...util.event_notifier_posix import EventNotifier
from ...util.iov import iovec

VIRTIO_PCI_VRING_ALIGN = 4096
VIRTIO_PCI_QUEUE_MAX = 64
VIRTQUEUE_MAX_SIZE = 1024
VIRTIO_NO_VECTOR = 0xFFFF

# include/hw/virtio/virtio.h
VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK = 1, 2, 4
VIRTIO_CONFIG_S_FAILED = 0x80
VIRTIO_F_NOTIFY_ON_EMPTY = 24
VIRTIO_RING_F_INDIRECT_DESC = 28
VIRTIO_RING_F_EVENT_IDX = 29
VIRTIO_F_BAD_FEATURE = 30
VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, VRING_DESC_F_INDIRECT = 1, 2, 4
VRING_USED_F_NO_NOTIFY = 1
VRING_AVAIL_F_NO_INTERRUPT = 1
VRING_DESC_SIZE = 16  # sizeof(VRingDesc)


class VirtioExit(GuestFault):
    """QEMU 1.6.1 calls error_report(...) then exit(1): the whole VM ends. The message is QEMU's."""

    def __init__(self, message: str):
        super().__init__(f"QEMU 1.6.1 stops with \"{message}\" and exit(1): the guest broke the virtio "
                         "ring protocol, and the VM ends there (nothing after this was written)")
        self.qemu_message = message


def error_report_exit(message: str) -> None:
    raise VirtioExit(message)


def vring_align(addr: int, align: int) -> int:
    return (addr + align - 1) & ~(align - 1)


@dataclass(eq=False)
class VRing:
    num: int = 0
    align: int = 0
    desc: int = 0
    avail: int = 0
    used: int = 0


@dataclass(eq=False)
class VirtQueueElement:
    """One popped request: its head index and the mapped device-readable (out) / -writable (in) buffers."""

    index: int = 0
    out_num: int = 0
    in_num: int = 0
    in_addr: list[int] = field(default_factory=list)
    out_addr: list[int] = field(default_factory=list)
    in_sg: list[iovec] = field(default_factory=list)
    out_sg: list[iovec] = field(default_factory=list)
    # model-only (byte provenance): the descriptor index behind each sg entry and the table they sit in
    # (the ring's descriptor table, or the indirect table the head points to)
    in_desc: list[int] = field(default_factory=list)
    out_desc: list[int] = field(default_factory=list)
    table: int = 0

    def view(self) -> dict:
        return {"index": self.index,
                "out": [{"addr": a, "len": v.iov_len} for a, v in zip(self.out_addr, self.out_sg)],
                "in": [{"addr": a, "len": v.iov_len} for a, v in zip(self.in_addr, self.in_sg)]}


@dataclass(eq=False)
class VirtQueue:
    vring: VRing = field(default_factory=VRing)
    pa: int = 0
    last_avail_idx: int = 0
    signalled_used: int = 0
    signalled_used_valid: bool = False
    notification: bool = True
    queue_index: int = 0
    inuse: int = 0
    vector: int = VIRTIO_NO_VECTOR
    handle_output: Callable[[Any, "VirtQueue"], None] | None = None
    vdev: "VirtIODevice | None" = None
    guest_notifier: EventNotifier = field(default_factory=EventNotifier)
    host_notifier: EventNotifier = field(default_factory=EventNotifier)
    inflight: dict[int, VirtQueueElement] = field(default_factory=dict)  # model-only (for the view)

    def view(self) -> dict:
        """The queue as plain data, read straight from guest RAM (no trace events): the ring addresses,
        both indices, the avail and used ring entries, and every descriptor reachable from a head in
        either ring or in flight, with who owns it now:
          "device: available"  the driver published it (avail ring) and the device has not popped it;
          "device: in flight"  virtqueue_pop took it, the request is being served;
          "driver: used"       the device returned it (used ring); the driver reclaims it;
          "driver"             not handed over (free, or being filled by the driver)."""
        return virtqueue_view(self)


@dataclass(eq=False)
class VirtIODevice:
    """The transport-independent virtio device: status, features, ISR, config space and the queues."""

    name: str = ""
    device_id: int = 0
    status: int = 0
    isr: int = 0
    queue_sel: int = 0
    guest_features: int = 0
    config: bytearray = field(default_factory=bytearray)
    config_len: int = 0
    config_vector: int = VIRTIO_NO_VECTOR
    vq: list[VirtQueue] = field(default_factory=list)
    # The transport (virtio-pci): VirtioBusClass's notify and get_features, and its proxy.
    binding: Any = None
    binding_notify: Callable[[Any, int], None] | None = None
    binding_get_features: Callable[[Any], int] | None = None
    ram: Any = None  # model-only: guest RAM, so view() can read the rings without running the model
    # VirtioDeviceClass hooks
    get_config: Callable[["VirtIODevice", bytearray], None] | None = None
    set_config: Callable[["VirtIODevice", bytearray], None] | None = None
    get_features: Callable[["VirtIODevice", int], int] | None = None
    set_status: Callable[["VirtIODevice", int], None] | None = None
    reset: Callable[["VirtIODevice"], None] | None = None

    def view(self) -> dict:
        return {"name": self.name, "device_id": self.device_id, "status": self.status, "isr": self.isr,
                "queue_sel": self.queue_sel, "guest_features": self.guest_features,
                "queues": [q.view() for q in self.vq if q.vring.num and q.pa]}


# -- ring accessors (static inlines in virtio.c) ------------------------------------------------------------
def vring_desc_addr(desc_pa: int, i: int) -> int:
    return ldq_phys(desc_pa + VRING_DESC_SIZE * i)


def vring_desc_len(desc_pa: int, i: int) -> int:
    return ldl_phys(desc_pa + VRING_DESC_SIZE * i + 8)


def vring_desc_flags(desc_pa: int, i: int) -> int:
    return lduw_phys(desc_pa + VRING_DESC_SIZE * i + 12)


def vring_desc_next(desc_pa: int, i: int) -> int:
    return lduw_phys(desc_pa + VRING_DESC_SIZE * i + 14)


def vring_avail_flags(vq: VirtQueue) -> int:
    return lduw_phys(vq.vring.avail)


def vring_avail_idx(vq: VirtQueue) -> int:
    return lduw_phys(vq.vring.avail + 2)


def vring_avail_ring(vq: VirtQueue, i: int) -> int:
    return lduw_phys(vq.vring.avail + 4 + 2 * i)


def vring_used_event(vq: VirtQueue) -> int:
    return vring_avail_ring(vq, vq.vring.num)


def vring_used_ring_id(vq: VirtQueue, i: int, val: int) -> None:
    stl_phys(vq.vring.used + 4 + 8 * i, val)


def vring_used_ring_len(vq: VirtQueue, i: int, val: int) -> None:
    stl_phys(vq.vring.used + 4 + 8 * i + 4, val)


def vring_used_idx(vq: VirtQueue) -> int:
    return lduw_phys(vq.vring.used + 2)


def vring_used_idx_set(vq: VirtQueue, val: int) -> None:
    stw_phys(vq.vring.used + 2, val)


def vring_avail_event(vq: VirtQueue, val: int) -> None:
    if not vq.notification:
        return
    stw_phys(vq.vring.used + 4 + 8 * vq.vring.num, val)


@tracepoint("qemu-virtio", args=("vq",))
def virtqueue_init(vq: VirtQueue) -> None:
    """Lay the three parts out from `pa` (the legacy layout)."""
    pa = vq.pa
    vq.vring.desc = pa
    vq.vring.avail = pa + vq.vring.num * VRING_DESC_SIZE
    vq.vring.used = vring_align(vq.vring.avail + 4 + 2 * vq.vring.num, vq.vring.align)


# -- the device side of the ring ----------------------------------------------------------------------------
@tracepoint("qemu-virtio", args=("vq", "elem", "len", "idx"))
def virtqueue_fill(vq: VirtQueue, elem: VirtQueueElement, len: int, idx: int) -> None:  # noqa: A002
    """Unmap the element's buffers and write {head, bytes written} into the used ring, `idx` entries past
    used.idx (not yet visible: virtqueue_flush publishes it)."""
    offset = 0
    for sg in elem.in_sg[:elem.in_num]:
        size = min(len - offset, sg.iov_len)
        cpu_physical_memory_unmap(sg, sg.iov_len, True, size)
        offset += size
    for sg in elem.out_sg[:elem.out_num]:
        cpu_physical_memory_unmap(sg, sg.iov_len, False, sg.iov_len)
    idx = (idx + vring_used_idx(vq)) % vq.vring.num
    vring_used_ring_id(vq, idx, elem.index)
    vring_used_ring_len(vq, idx, len)


@tracepoint("qemu-virtio", args=("vq", "count"))
def virtqueue_flush(vq: VirtQueue, count: int) -> None:
    """Publish `count` filled entries: used.idx += count (after the entries, smp_wmb in C)."""
    old = vring_used_idx(vq)
    new = (old + count) & 0xFFFF
    vring_used_idx_set(vq, new)
    vq.inuse -= count
    if _s16(new - vq.signalled_used) < ((new - old) & 0xFFFF):
        vq.signalled_used_valid = False


def _s16(v: int) -> int:
    v &= 0xFFFF
    return v - 0x10000 if v & 0x8000 else v


@tracepoint("qemu-virtio", args=("vq", "elem", "len"))
def virtqueue_push(vq: VirtQueue, elem: VirtQueueElement, len: int) -> None:  # noqa: A002
    """Return one request to the driver: fill its used entry and flush it at once."""
    vq.inflight.pop(elem.index, None)
    virtqueue_fill(vq, elem, len, 0)
    virtqueue_flush(vq, 1)


@tracepoint("qemu-virtio", args=("vq", "idx"))
def virtqueue_num_heads(vq: VirtQueue, idx: int) -> int:
    """How many chains the driver has published past `idx`; more than the ring holds is fatal."""
    num_heads = (vring_avail_idx(vq) - idx) & 0xFFFF
    if num_heads > vq.vring.num:
        error_report_exit(f"Guest moved used index from {idx} to {vring_avail_idx(vq)}")
    return num_heads


@tracepoint("qemu-virtio", args=("vq", "idx"))
def virtqueue_get_head(vq: VirtQueue, idx: int) -> int:
    head = vring_avail_ring(vq, idx % vq.vring.num)
    if head >= vq.vring.num:
        error_report_exit(f"Guest says index {head} is available")
    return head


@tracepoint("qemu-virtio", args=("desc_pa", "i", "max"))
def virtqueue_next_desc(desc_pa: int, i: int, max: int) -> int:  # noqa: A002
    """The next descriptor of a chain, or `max` at its end; a `next` past the table is fatal."""
    if not vring_desc_flags(desc_pa, i) & VRING_DESC_F_NEXT:
        return max
    nxt = vring_desc_next(desc_pa, i)
    if nxt >= max:
        error_report_exit(f"Desc next is {nxt}")
    return nxt


@tracepoint("qemu-virtio", args=("sg", "addr", "num_sg", "is_write"))
def virtqueue_map_sg(sg: list[iovec], addr: list[int], num_sg: int, is_write: bool) -> None:
    """Map each buffer in place (guest RAM): a buffer that is not (all) RAM is fatal."""
    for i in range(num_sg):
        plen = [sg[i].iov_len]
        mapped = cpu_physical_memory_map(addr[i], plen, is_write)
        if mapped is None or plen[0] != sg[i].iov_len:
            error_report_exit("virtio: trying to map MMIO memory")
        sg[i] = mapped


@tracepoint("qemu-virtio", args=("vq", "elem"))
def virtqueue_pop(vq: VirtQueue, elem: VirtQueueElement) -> int:
    """Take the next published chain: collect its descriptors into out_sg (device reads) and in_sg
    (device writes, VRING_DESC_F_WRITE), map them, and return how many there were (0: ring empty)."""
    desc_pa = vq.vring.desc
    if not virtqueue_num_heads(vq, vq.last_avail_idx):
        return 0
    elem.out_num = elem.in_num = 0
    elem.in_addr, elem.out_addr, elem.in_sg, elem.out_sg = [], [], [], []
    elem.in_desc, elem.out_desc = [], []
    max_ = vq.vring.num
    i = head = virtqueue_get_head(vq, vq.last_avail_idx)
    vq.last_avail_idx = (vq.last_avail_idx + 1) & 0xFFFF
    if vq.vdev.guest_features & (1 << VIRTIO_RING_F_EVENT_IDX):
        vring_avail_event(vq, vring_avail_idx(vq))
    if vring_desc_flags(desc_pa, i) & VRING_DESC_F_INDIRECT:
        if vring_desc_len(desc_pa, i) % VRING_DESC_SIZE:
            error_report_exit("Invalid size for indirect buffer table")
        max_ = vring_desc_len(desc_pa, i) // VRING_DESC_SIZE
        desc_pa = vring_desc_addr(desc_pa, i)
        i = 0
    while True:
        if vring_desc_flags(desc_pa, i) & VRING_DESC_F_WRITE:
            if elem.in_num >= VIRTQUEUE_MAX_SIZE:
                error_report_exit("Too many write descriptors in indirect table")
            elem.in_addr.append(vring_desc_addr(desc_pa, i))
            elem.in_sg.append(iovec(None, vring_desc_len(desc_pa, i)))
            elem.in_desc.append(i)
            elem.in_num += 1
        else:
            if elem.out_num >= VIRTQUEUE_MAX_SIZE:
                error_report_exit("Too many read descriptors in indirect table")
            elem.out_addr.append(vring_desc_addr(desc_pa, i))
            elem.out_sg.append(iovec(None, vring_desc_len(desc_pa, i)))
            elem.out_desc.append(i)
            elem.out_num += 1
        if elem.in_num + elem.out_num > max_:  # more descriptors than the table holds: a loop
            error_report_exit("Looped descriptor")
        i = virtqueue_next_desc(desc_pa, i, max_)
        if i == max_:
            break
    elem.table = desc_pa
    virtqueue_map_sg(elem.in_sg, elem.in_addr, elem.in_num, True)
    virtqueue_map_sg(elem.out_sg, elem.out_addr, elem.out_num, False)
    elem.index = head
    vq.inuse += 1
    vq.inflight[head] = elem
    return elem.in_num + elem.out_num


# -- notifications ----------------------------------------------------------------------------------------
@tracepoint("qemu-virtio", args=("vdev", "vector"))
def virtio_notify_vector(vdev: VirtIODevice, vector: int) -> None:
    """Hand the interrupt to the transport (virtio-pci: INTx, as no MSI-X is in use)."""
    if vdev.binding_notify is not None:
        vdev.binding_notify(vdev.binding, vector)


@tracepoint("qemu-virtio", args=("event", "new", "old"))
def vring_need_event(event: int, new: int, old: int) -> bool:
    return ((new - event - 1) & 0xFFFF) < ((new - old) & 0xFFFF)


@tracepoint("qemu-virtio", args=("vdev", "vq"))
def vring_notify(vdev: VirtIODevice, vq: VirtQueue) -> bool:
    """Does the driver want this interrupt? Without EVENT_IDX: unless avail.flags has NO_INTERRUPT (a
    polling driver sets it); with NOTIFY_ON_EMPTY acked, always when the queue ran empty."""
    if vdev.guest_features & (1 << VIRTIO_F_NOTIFY_ON_EMPTY) and not vq.inuse \
            and vring_avail_idx(vq) == vq.last_avail_idx:
        return True
    if not vdev.guest_features & (1 << VIRTIO_RING_F_EVENT_IDX):
        return not vring_avail_flags(vq) & VRING_AVAIL_F_NO_INTERRUPT
    v = vq.signalled_used_valid
    vq.signalled_used_valid = True
    old = vq.signalled_used
    new = vq.signalled_used = vring_used_idx(vq)
    return not v or vring_need_event(vring_used_event(vq), new, old)


@tracepoint("qemu-virtio", args=("vdev", "vq"))
def virtio_notify(vdev: VirtIODevice, vq: VirtQueue) -> None:
    """Interrupt the driver about used entries, if it wants one: ISR bit 0, then the transport's line."""
    if not vring_notify(vdev, vq):
        return
    vdev.isr |= 0x01
    virtio_notify_vector(vdev, vq.vector)


@tracepoint("qemu-virtio", args=("vq",))
def virtio_queue_notify_vq(vq: VirtQueue) -> None:
    """The driver kicked this queue: run the device's handler (virtio-blk: virtio_blk_handle_output)."""
    if vq.vring.desc:
        vq.handle_output(vq.vdev, vq)


@tracepoint("qemu-virtio", args=("vdev", "n"))
def virtio_queue_notify(vdev: VirtIODevice, n: int) -> None:
    virtio_queue_notify_vq(vdev.vq[n])


# -- device state the transport sets ------------------------------------------------------------------------
@tracepoint("qemu-virtio", args=("vdev", "val"))
def virtio_set_status(vdev: VirtIODevice, val: int) -> None:
    if vdev.set_status is not None:
        vdev.set_status(vdev, val)
    vdev.status = val


@tracepoint("qemu-virtio", args=("vdev", "val"))
def virtio_set_features(vdev: VirtIODevice, val: int) -> int:
    """Keep the features the transport offers; -1 if the driver asked for more."""
    supported = vdev.binding_get_features(vdev.binding)
    bad = bool(val & ~supported)
    vdev.guest_features = val & supported
    return -1 if bad else 0


@tracepoint("qemu-virtio", args=("opaque=vdev",))
def virtio_reset(vdev: VirtIODevice) -> None:
    """Status 0 (or PFN 0): forget the features, the ISR and every queue's rings."""
    virtio_set_status(vdev, 0)
    if vdev.reset is not None:
        vdev.reset(vdev)
    vdev.guest_features = 0
    vdev.queue_sel = 0
    vdev.status = 0
    vdev.isr = 0
    vdev.config_vector = VIRTIO_NO_VECTOR
    virtio_notify_vector(vdev, vdev.config_vector)
    for vq in vdev.vq:
        vq.vring.desc = vq.vring.avail = vq.vring.used = 0
        vq.last_avail_idx = 0
        vq.pa = 0
        vq.vector = VIRTIO_NO_VECTOR
        vq.signalled_used = 0
        vq.signalled_used_valid = False
        vq.notification = True
        vq.inflight.clear()


def _config_read(vdev: VirtIODevice, addr: int, size: int) -> int:
    if addr + size > vdev.config_len:
        return 0xFFFFFFFF
    vdev.get_config(vdev, vdev.config)
    return int.from_bytes(vdev.config[addr:addr + size], "little")


def _config_write(vdev: VirtIODevice, addr: int, data: int, size: int) -> None:
    if addr + size > vdev.config_len:
        return
    vdev.config[addr:addr + size] = (data & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
    if vdev.set_config is not None:
        vdev.set_config(vdev, vdev.config)


@tracepoint("qemu-virtio", args=("vdev", "addr"))
def virtio_config_readb(vdev: VirtIODevice, addr: int) -> int:
    return _config_read(vdev, addr, 1)


@tracepoint("qemu-virtio", args=("vdev", "addr"))
def virtio_config_readw(vdev: VirtIODevice, addr: int) -> int:
    return _config_read(vdev, addr, 2)


@tracepoint("qemu-virtio", args=("vdev", "addr"))
def virtio_config_readl(vdev: VirtIODevice, addr: int) -> int:
    return _config_read(vdev, addr, 4)


@tracepoint("qemu-virtio", args=("vdev", "addr", "data"))
def virtio_config_writeb(vdev: VirtIODevice, addr: int, data: int) -> None:
    _config_write(vdev, addr, data, 1)


@tracepoint("qemu-virtio", args=("vdev", "addr", "data"))
def virtio_config_writew(vdev: VirtIODevice, addr: int, data: int) -> None:
    _config_write(vdev, addr, data, 2)


@tracepoint("qemu-virtio", args=("vdev", "addr", "data"))
def virtio_config_writel(vdev: VirtIODevice, addr: int, data: int) -> None:
    _config_write(vdev, addr, data, 4)


@tracepoint("qemu-virtio", args=("vdev", "n", "addr"))
def virtio_queue_set_addr(vdev: VirtIODevice, n: int, addr: int) -> None:
    vdev.vq[n].pa = addr
    virtqueue_init(vdev.vq[n])


@tracepoint("qemu-virtio", args=("vdev", "n"))
def virtio_queue_get_addr(vdev: VirtIODevice, n: int) -> int:
    return vdev.vq[n].pa


@tracepoint("qemu-virtio", args=("vdev", "n"))
def virtio_queue_get_num(vdev: VirtIODevice, n: int) -> int:
    return vdev.vq[n].vring.num


@tracepoint("qemu-virtio", args=("vdev", "n"))
def virtio_queue_vector(vdev: VirtIODevice, n: int) -> int:
    return vdev.vq[n].vector if n < VIRTIO_PCI_QUEUE_MAX else VIRTIO_NO_VECTOR


@tracepoint("qemu-virtio", args=("vdev", "n"))
def virtio_get_queue(vdev: VirtIODevice, n: int) -> VirtQueue:
    return vdev.vq[n]


@tracepoint("qemu-virtio", args=("vq",))
def virtio_queue_get_host_notifier(vq: VirtQueue) -> EventNotifier:
    return vq.host_notifier


@tracepoint("qemu-virtio", args=("vdev", "queue_size", "handle_output"))
def virtio_add_queue(vdev: VirtIODevice, queue_size: int,
                     handle_output: Callable[[VirtIODevice, VirtQueue], None]) -> VirtQueue:
    """The first unused queue gets `queue_size` entries and the device's kick handler."""
    for vq in vdev.vq:
        if vq.vring.num == 0:
            break
    else:
        raise RuntimeError("virtio_add_queue: no free queue (QEMU aborts)")
    if queue_size > VIRTQUEUE_MAX_SIZE:
        raise RuntimeError("virtio_add_queue: queue too large (QEMU aborts)")
    vq.vring.num = queue_size
    vq.vring.align = VIRTIO_PCI_VRING_ALIGN
    vq.handle_output = handle_output
    return vq


@tracepoint("qemu-virtio", args=("vdev", "name", "device_id", "config_size"))
def virtio_init(vdev: VirtIODevice, name: str, device_id: int, config_size: int) -> None:
    vdev.device_id, vdev.status, vdev.isr, vdev.queue_sel = device_id, 0, 0, 0
    vdev.config_vector = VIRTIO_NO_VECTOR
    vdev.vq = [VirtQueue(queue_index=i, vdev=vdev) for i in range(VIRTIO_PCI_QUEUE_MAX)]
    vdev.name = name
    vdev.config_len = config_size
    vdev.config = bytearray(config_size)


# -- ioeventfd: the kick as an eventfd the main loop reads (virtio_pci_set_host_notifier_internal) ---------
@tracepoint("qemu-virtio", args=("n",))
def virtio_queue_host_notifier_read(n: EventNotifier) -> None:
    """The main loop saw the queue's ioeventfd readable (KVM wrote it when the guest kicked): clear it
    and run the queue, on the main-loop thread instead of the vCPU's."""
    vq = n.container
    from ...util.event_notifier_posix import event_notifier_test_and_clear
    if event_notifier_test_and_clear(n):
        virtio_queue_notify_vq(vq)


@tracepoint("qemu-virtio", args=("vq", "assign", "set_handler"))
def virtio_queue_set_host_notifier_fd_handler(vq: VirtQueue, assign: bool, set_handler: bool) -> None:
    """Watch (or stop watching) the queue's host notifier from the main loop; on unassign, run a kick
    that may already be pending."""
    from ...util.event_notifier_posix import event_notifier_set_handler
    vq.host_notifier.container = vq
    if assign and set_handler:
        event_notifier_set_handler(vq.host_notifier, virtio_queue_host_notifier_read)
    else:
        event_notifier_set_handler(vq.host_notifier, None)
    if not assign:
        virtio_queue_host_notifier_read(vq.host_notifier)


# -- the view ---------------------------------------------------------------------------------------------
def _walk(ram: Any, table: int, head: int, num: int) -> list[dict]:
    """The chain from `head` in the descriptor table at `table` (num entries), stopping at a loop."""
    chain, i, seen = [], head, set()
    while i < num and i not in seen:
        seen.add(i)
        addr, length, flags, nxt = struct.unpack_from("<QIHH", ram, table + VRING_DESC_SIZE * i)
        chain.append({"i": i, "addr": addr, "len": length, "flags": flags, "next": nxt,
                      "write": bool(flags & VRING_DESC_F_WRITE)})
        if not flags & VRING_DESC_F_NEXT:
            break
        i = nxt
    return chain


def virtqueue_view(vq: VirtQueue) -> dict:
    """See VirtQueue.view. Reads guest RAM directly (the debugger's kernel thread, model parked)."""
    ram = vq.vdev.ram if vq.vdev is not None else None
    num = vq.vring.num
    out = {"index": vq.queue_index, "num": num, "pa": vq.pa, "desc": vq.vring.desc, "avail": vq.vring.avail,
           "used": vq.vring.used, "last_avail_idx": vq.last_avail_idx, "inuse": vq.inuse,
           "in_flight": sorted(vq.inflight)}
    if ram is None or not vq.pa or vq.vring.used + 4 + 8 * num > len(ram):
        return out

    def u16(a: int) -> int:
        return struct.unpack_from("<H", ram, a)[0]

    avail_flags, avail_idx = u16(vq.vring.avail), u16(vq.vring.avail + 2)
    used_flags, used_idx = u16(vq.vring.used), u16(vq.vring.used + 2)
    avail_ring = [u16(vq.vring.avail + 4 + 2 * i) for i in range(num)]
    used_ring = [struct.unpack_from("<II", ram, vq.vring.used + 4 + 8 * i) for i in range(num)]
    pending = [avail_ring[(vq.last_avail_idx + k) % num] for k in range((avail_idx - vq.last_avail_idx) & 0xFFFF)
               if k < num]
    recent_used = [used_ring[(used_idx - 1 - k) % num][0] for k in range(min(num, used_idx))]
    owner: dict[int, str] = {}
    chains: list[dict] = []
    for head, who in [(h, "device: available") for h in pending] + \
            [(h, "device: in flight") for h in sorted(vq.inflight)] + [(h, "driver: used") for h in recent_used]:
        if head >= num or head in owner:
            continue
        chain = _walk(ram, vq.vring.desc, head, num)
        for d in chain:
            owner.setdefault(d["i"], who)
            d["owner"] = who
            if d["flags"] & VRING_DESC_F_INDIRECT and d["len"] % VRING_DESC_SIZE == 0 \
                    and d["addr"] + d["len"] <= len(ram):  # the table the descriptor points at
                d["table"] = _walk(ram, d["addr"], 0, d["len"] // VRING_DESC_SIZE)
        chains.append({"head": head, "owner": who, "descriptors": chain})
    out.update({
        "avail_ring": {"flags": avail_flags, "idx": avail_idx,
                       "ring": [avail_ring[k % num] for k in range(max(0, avail_idx - num), avail_idx)]},
        "used_ring": {"flags": used_flags, "idx": used_idx,
                      "ring": [{"id": used_ring[k % num][0], "len": used_ring[k % num][1]}
                               for k in range(max(0, used_idx - num), used_idx)]},
        "chains": chains,
        "owner": {i: owner.get(i, "driver") for i in range(num)},
    })
    return out
