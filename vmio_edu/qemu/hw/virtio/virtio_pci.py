"""hw/virtio/virtio-pci.c (QEMU v1.6.1): virtio over PCI, the legacy ("0.9") interface.

virtio-blk-pci is PCI device 1af4:1001 (Red Hat/Qumranet), class 0x0100, subsystem id 2 (VIRTIO_ID_BLOCK),
INTA#. BAR 0 is an I/O window; its first 20 bytes are the virtio header, the device's config space follows:

    0  HOST_FEATURES  u32 r      8  QUEUE_PFN  u32 rw   14 QUEUE_SEL     u16 rw   18 STATUS u8 rw
    4  GUEST_FEATURES u32 rw    12  QUEUE_NUM  u16 r    16 QUEUE_NOTIFY  u16 w    19 ISR    u8 r (clears)
    20 device config (virtio-blk: capacity u64, size_max, seg_max, geometry, blk_size, ...)

Every guest access is one VM exit to `virtio_pci_config_write/read` (memory API) → `virtio_ioport_*`.
A write to QUEUE_NOTIFY runs the queue right there, on the vCPU thread, unless ioeventfd is on: then
DRIVER_OK registers the notify port with KVM_IOEVENTFD, KVM swallows the OUT and signals an eventfd, and
the main loop runs the queue (`virtio_queue_host_notifier_read`).

The model is `-device virtio-blk-pci,vectors=0`: no MSI-X table (QEMU's default of 2 vectors adds BAR 1
and moves the device config to offset 24 only once the guest enables MSI-X; a driver that doesn't, as here,
sees the same INTx device). ioeventfd is the `ioeventfd` property, on by default (with KVM).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ....errors import VmioError
from ....trace.tracepoint import tracepoint
from ...memory import MemoryRegion, MemoryRegionOps
from ..core.irq import qemu_set_irq
from ..pci.pci import (PCI_BASE_ADDRESS_SPACE_IO, PCI_COMMAND, PCI_COMMAND_MASTER, PCI_INTERRUPT_PIN,
                       PCI_SUBSYSTEM_ID, PCI_SUBSYSTEM_VENDOR_ID, PCIBus, PCIDevice, do_pci_register_device,
                       pci_default_write_config, pci_register_bar)
from .virtio import (VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_F_BAD_FEATURE, VIRTIO_F_NOTIFY_ON_EMPTY,
                     VIRTIO_PCI_QUEUE_MAX, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
                     VirtIODevice, virtio_config_readb, virtio_config_readl, virtio_config_readw,
                     virtio_config_writeb, virtio_config_writel, virtio_config_writew, virtio_get_queue,
                     virtio_queue_get_addr, virtio_queue_get_host_notifier, virtio_queue_get_num,
                     virtio_queue_notify, virtio_queue_set_addr, virtio_queue_set_host_notifier_fd_handler,
                     virtio_reset, virtio_set_features, virtio_set_status)

VIRTIO_PCI_HOST_FEATURES = 0
VIRTIO_PCI_GUEST_FEATURES = 4
VIRTIO_PCI_QUEUE_PFN = 8
VIRTIO_PCI_QUEUE_NUM = 12
VIRTIO_PCI_QUEUE_SEL = 14
VIRTIO_PCI_QUEUE_NOTIFY = 16
VIRTIO_PCI_STATUS = 18
VIRTIO_PCI_ISR = 19
VIRTIO_MSI_CONFIG_VECTOR = 20
VIRTIO_MSI_QUEUE_VECTOR = 22
VIRTIO_PCI_CONFIG_NOMSI = 20
VIRTIO_PCI_QUEUE_ADDR_SHIFT = 12
VIRTIO_PCI_FLAG_BUS_MASTER_BUG = 1 << 0
VIRTIO_PCI_FLAG_USE_IOEVENTFD = 1 << 1
VIRTIO_PCI_ABI_VERSION = 0

PCI_VENDOR_ID_REDHAT_QUMRANET = 0x1AF4
PCI_DEVICE_ID_VIRTIO_BLOCK = 0x1001
PCI_CLASS_STORAGE_SCSI = 0x0100

REGISTER_NAMES = {0: "HOST_FEATURES", 4: "GUEST_FEATURES", 8: "QUEUE_PFN", 12: "QUEUE_NUM", 14: "QUEUE_SEL",
                  16: "QUEUE_NOTIFY", 18: "STATUS", 19: "ISR"}


@dataclass(eq=False)
class VirtIOPCIProxy:
    """The PCI function a virtio device sits behind: config space, BAR 0 (`bar`) and the ioeventfd state."""

    pci_dev: PCIDevice = field(default_factory=PCIDevice)
    vdev: VirtIODevice | None = None
    bar: MemoryRegion | None = None
    flags: int = 0
    host_features: int = 0
    class_code: int = 0
    nvectors: int = 0
    ioeventfd_disabled: bool = False
    ioeventfd_started: bool = False

    def view(self) -> dict:
        return {"pci": self.pci_dev.view(), "host_features": self.host_features,
                "ioeventfd": bool(self.flags & VIRTIO_PCI_FLAG_USE_IOEVENTFD),
                "ioeventfd_started": self.ioeventfd_started,
                "bar0": self.pci_dev.io_regions[0].view(),
                "device": self.vdev.view() if self.vdev is not None else None}


@tracepoint("qemu-virtio", args=("d=proxy", "vector"))
def virtio_pci_notify(proxy: VirtIOPCIProxy, vector: int) -> None:
    """No MSI-X: INTA# follows ISR bit 0 (raised by virtio_notify, lowered by the driver's ISR read)."""
    qemu_set_irq(proxy.pci_dev.irq[0], proxy.vdev.isr & 1)


@tracepoint("qemu-virtio", args=("d=proxy",))
def virtio_pci_get_features(proxy: VirtIOPCIProxy) -> int:
    return proxy.host_features


@tracepoint("qemu-virtio", args=("proxy", "n", "assign", "set_handler"))
def virtio_pci_set_host_notifier_internal(proxy: VirtIOPCIProxy, n: int, assign: bool, set_handler: bool) -> int:
    """Create queue n's host notifier (an eventfd), watch it from the main loop, and ask KVM to signal it
    on a 2-byte write of n to QUEUE_NOTIFY (memory_region_add_eventfd → KVM_IOEVENTFD); or undo that."""
    from ...memory import memory_region_add_eventfd, memory_region_del_eventfd
    from ...util.event_notifier_posix import event_notifier_cleanup, event_notifier_init
    vq = virtio_get_queue(proxy.vdev, n)
    notifier = virtio_queue_get_host_notifier(vq)
    if assign:
        r = event_notifier_init(notifier, False)
        if r < 0:
            raise VmioError(f"virtio_pci_set_host_notifier_internal: unable to init event notifier: {r}")
        virtio_queue_set_host_notifier_fd_handler(vq, True, set_handler)
        memory_region_add_eventfd(proxy.bar, VIRTIO_PCI_QUEUE_NOTIFY, 2, True, n, notifier)
    else:
        memory_region_del_eventfd(proxy.bar, VIRTIO_PCI_QUEUE_NOTIFY, 2, True, n, notifier)
        virtio_queue_set_host_notifier_fd_handler(vq, False, False)
        event_notifier_cleanup(notifier)
    return 0


@tracepoint("qemu-virtio", args=("proxy",))
def virtio_pci_start_ioeventfd(proxy: VirtIOPCIProxy) -> None:
    if not proxy.flags & VIRTIO_PCI_FLAG_USE_IOEVENTFD or proxy.ioeventfd_disabled or proxy.ioeventfd_started:
        return
    for n in range(VIRTIO_PCI_QUEUE_MAX):
        if not virtio_queue_get_num(proxy.vdev, n):
            continue
        virtio_pci_set_host_notifier_internal(proxy, n, True, True)
    proxy.ioeventfd_started = True


@tracepoint("qemu-virtio", args=("proxy",))
def virtio_pci_stop_ioeventfd(proxy: VirtIOPCIProxy) -> None:
    if not proxy.ioeventfd_started:
        return
    for n in range(VIRTIO_PCI_QUEUE_MAX):
        if not virtio_queue_get_num(proxy.vdev, n):
            continue
        virtio_pci_set_host_notifier_internal(proxy, n, False, False)
    proxy.ioeventfd_started = False


@tracepoint("qemu-virtio", args=("opaque=proxy", "addr", "val"))
def virtio_ioport_write(proxy: VirtIOPCIProxy, addr: int, val: int) -> None:
    """A guest write to the virtio header."""
    vdev = proxy.vdev
    if addr == VIRTIO_PCI_GUEST_FEATURES:
        if val & (1 << VIRTIO_F_BAD_FEATURE):  # a driver that doesn't negotiate: assume nothing
            val = 0  # virtio_bus_get_vdev_bad_features: virtio-blk has no bad_features hook
        virtio_set_features(vdev, val)
    elif addr == VIRTIO_PCI_QUEUE_PFN:
        pa = val << VIRTIO_PCI_QUEUE_ADDR_SHIFT
        if pa == 0:
            virtio_pci_stop_ioeventfd(proxy)
            virtio_reset(vdev)
        else:
            virtio_queue_set_addr(vdev, vdev.queue_sel, pa)
    elif addr == VIRTIO_PCI_QUEUE_SEL:
        if val < VIRTIO_PCI_QUEUE_MAX:
            vdev.queue_sel = val
    elif addr == VIRTIO_PCI_QUEUE_NOTIFY:
        if val < VIRTIO_PCI_QUEUE_MAX:
            virtio_queue_notify(vdev, val)
    elif addr == VIRTIO_PCI_STATUS:
        if not val & VIRTIO_CONFIG_S_DRIVER_OK:
            virtio_pci_stop_ioeventfd(proxy)
        virtio_set_status(vdev, val & 0xFF)
        if val & VIRTIO_CONFIG_S_DRIVER_OK:
            virtio_pci_start_ioeventfd(proxy)
        if vdev.status == 0:
            virtio_reset(vdev)
        if val & VIRTIO_CONFIG_S_DRIVER_OK and not proxy.pci_dev.config[PCI_COMMAND] & PCI_COMMAND_MASTER:
            proxy.flags |= VIRTIO_PCI_FLAG_BUS_MASTER_BUG  # Linux before 2.6.34 forgot bus mastering
    # the MSI vector registers need MSI-X enabled (they sit past the header then); anything else is
    # QEMU's error_report("virtio_ioport_write: unexpected address ...") and is ignored


@tracepoint("qemu-virtio", args=("proxy", "addr"))
def virtio_ioport_read(proxy: VirtIOPCIProxy, addr: int) -> int:
    """A guest read of the virtio header. Reading ISR returns it, clears it and lowers INTx."""
    vdev = proxy.vdev
    ret = 0xFFFFFFFF
    if addr == VIRTIO_PCI_HOST_FEATURES:
        ret = proxy.host_features
    elif addr == VIRTIO_PCI_GUEST_FEATURES:
        ret = vdev.guest_features
    elif addr == VIRTIO_PCI_QUEUE_PFN:
        ret = virtio_queue_get_addr(vdev, vdev.queue_sel) >> VIRTIO_PCI_QUEUE_ADDR_SHIFT
    elif addr == VIRTIO_PCI_QUEUE_NUM:
        ret = virtio_queue_get_num(vdev, vdev.queue_sel)
    elif addr == VIRTIO_PCI_QUEUE_SEL:
        ret = vdev.queue_sel
    elif addr == VIRTIO_PCI_STATUS:
        ret = vdev.status
    elif addr == VIRTIO_PCI_ISR:
        ret = vdev.isr
        vdev.isr = 0
        qemu_set_irq(proxy.pci_dev.irq[0], 0)
    return ret


@tracepoint("qemu-virtio", args=("opaque=proxy", "addr", "size"))
def virtio_pci_config_read(proxy: VirtIOPCIProxy, addr: int, size: int) -> int:
    """BAR 0 read: the header (any width: the value is cut to the access by the memory API), or the
    device config past it (virtio_config_readb/w/l)."""
    config = VIRTIO_PCI_CONFIG_NOMSI
    if addr < config:
        return virtio_ioport_read(proxy, addr)
    addr -= config
    if size == 1:
        return virtio_config_readb(proxy.vdev, addr)
    if size == 2:
        return virtio_config_readw(proxy.vdev, addr)
    return virtio_config_readl(proxy.vdev, addr)


@tracepoint("qemu-virtio", args=("opaque=proxy", "addr", "val", "size"))
def virtio_pci_config_write(proxy: VirtIOPCIProxy, addr: int, val: int, size: int) -> None:
    config = VIRTIO_PCI_CONFIG_NOMSI
    if addr < config:
        virtio_ioport_write(proxy, addr, val)
        return
    addr -= config
    if size == 1:
        virtio_config_writeb(proxy.vdev, addr, val)
    elif size == 2:
        virtio_config_writew(proxy.vdev, addr, val)
    else:
        virtio_config_writel(proxy.vdev, addr, val)


virtio_pci_config_ops = MemoryRegionOps(virtio_pci_config_read, virtio_pci_config_write,
                                        impl_min_access_size=1, impl_max_access_size=4)


@tracepoint("qemu-virtio", args=("pci_dev", "address", "val", "len"))
def virtio_write_config(pci_dev: PCIDevice, address: int, val: int, len: int) -> None:  # noqa: A002
    """Config-space write; clearing bus mastering stops the device (DRIVER_OK off), as 1.6.1 does."""
    proxy = pci_dev.owner
    pci_default_write_config(pci_dev, address, val, len)
    if address <= PCI_COMMAND < address + len and not pci_dev.config[PCI_COMMAND] & PCI_COMMAND_MASTER \
            and not proxy.flags & VIRTIO_PCI_FLAG_BUS_MASTER_BUG:
        virtio_pci_stop_ioeventfd(proxy)
        virtio_set_status(proxy.vdev, proxy.vdev.status & ~VIRTIO_CONFIG_S_DRIVER_OK)


@tracepoint("qemu-virtio", args=("d=proxy",))
def virtio_pci_device_plugged(proxy: VirtIOPCIProxy, vdev: VirtIODevice, many_ioeventfds: bool = True) -> None:
    """Wire the device to the PCI function: subsystem ids, INTA#, BAR 0 sized to header + config
    (rounded up to a power of two), ioeventfd off if the kernel can't take many (kvm_has_many_ioeventfds),
    and the host features (the device's plus NOTIFY_ON_EMPTY/BAD_FEATURE)."""
    proxy.vdev = vdev
    vdev.binding, vdev.binding_notify, vdev.binding_get_features = proxy, virtio_pci_notify, virtio_pci_get_features
    config = proxy.pci_dev.config
    config[PCI_SUBSYSTEM_VENDOR_ID:PCI_SUBSYSTEM_VENDOR_ID + 2] = config[0:2]
    config[PCI_SUBSYSTEM_ID:PCI_SUBSYSTEM_ID + 2] = vdev.device_id.to_bytes(2, "little")
    config[PCI_INTERRUPT_PIN] = 1
    proxy.pci_dev.config_write = virtio_write_config
    size = VIRTIO_PCI_CONFIG_NOMSI + vdev.config_len
    if size & (size - 1):
        size = 1 << size.bit_length()
    proxy.bar = MemoryRegion("virtio-pci", size, virtio_pci_config_ops, proxy)
    pci_register_bar(proxy.pci_dev, 0, PCI_BASE_ADDRESS_SPACE_IO, proxy.bar)
    if not many_ioeventfds:
        proxy.flags &= ~VIRTIO_PCI_FLAG_USE_IOEVENTFD
    proxy.host_features |= 1 << VIRTIO_F_NOTIFY_ON_EMPTY
    proxy.host_features |= 1 << VIRTIO_F_BAD_FEATURE
    proxy.host_features = vdev.get_features(vdev, proxy.host_features)


@tracepoint("qemu-virtio", args=())
def virtio_blk_pci_init(bus: PCIBus, devfn: int, vdev: VirtIODevice, ioeventfd: bool = True,
                        many_ioeventfds: bool = True) -> VirtIOPCIProxy:
    """`-device virtio-blk-pci,vectors=0,ioeventfd=on|off` at slot devfn>>3: the PCI function (class
    SCSI storage, ABI version 0), then the block device plugged behind it."""
    proxy = VirtIOPCIProxy()
    proxy.pci_dev.owner = proxy
    # DEFINE_VIRTIO_COMMON_FEATURES: indirect_desc and event_idx on
    proxy.host_features = (1 << VIRTIO_RING_F_INDIRECT_DESC) | (1 << VIRTIO_RING_F_EVENT_IDX)
    if ioeventfd:
        proxy.flags |= VIRTIO_PCI_FLAG_USE_IOEVENTFD
    do_pci_register_device(proxy.pci_dev, bus, "virtio-blk-pci", devfn, PCI_VENDOR_ID_REDHAT_QUMRANET,
                           PCI_DEVICE_ID_VIRTIO_BLOCK, PCI_CLASS_STORAGE_SCSI, revision=VIRTIO_PCI_ABI_VERSION)
    virtio_pci_device_plugged(proxy, vdev, many_ioeventfds)
    return proxy


@tracepoint("qemu-virtio", args=("pci_dev=proxy",))
def virtio_pci_exit(proxy: VirtIOPCIProxy) -> None:
    """QEMU exiting: the host notifiers' eventfds close (the VM fd, and with it KVM's ioeventfd
    registrations, goes with the process)."""
    from ...util.event_notifier_posix import event_notifier_cleanup
    for vq in proxy.vdev.vq:
        if vq.host_notifier.rfd >= 0:
            event_notifier_cleanup(vq.host_notifier)
    proxy.ioeventfd_started = False


@tracepoint("qemu-virtio", args=("qdev=proxy",))
def virtio_pci_reset(proxy: VirtIOPCIProxy) -> None:
    virtio_pci_stop_ioeventfd(proxy)
    virtio_reset(proxy.vdev)
    proxy.flags &= ~VIRTIO_PCI_FLAG_BUS_MASTER_BUG


def register_name(addr: int) -> str:
    """The header register at BAR offset `addr` (for views)."""
    return REGISTER_NAMES.get(addr, f"config+{addr - VIRTIO_PCI_CONFIG_NOMSI}" if addr >= 20 else "?")

