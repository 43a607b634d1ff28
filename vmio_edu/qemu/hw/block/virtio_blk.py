"""hw/block/virtio-blk.c (QEMU v1.6.1): the virtio block device.

A request is one descriptor chain: a 16-byte header the device reads (struct virtio_blk_outhdr: u32 type,
u32 ioprio, u64 sector), the data buffers, and a 1-byte status the device writes last
(VIRTIO_BLK_S_OK 0, IOERR 1, UNSUPP 2). On a kick, on the thread that took it (the vCPU thread with
ioeventfd off, the main loop with it on):

    virtio_blk_handle_output: while virtio_blk_get_request (virtqueue_pop) finds a chain:
        virtio_blk_handle_request: read the header's type
            OUT (write): virtio_blk_handle_write queues it in the MultiReqBuffer
            IN  (read):  virtio_blk_handle_read → bdrv_aio_readv at once
            FLUSH:       virtio_blk_handle_flush: the queued writes, then bdrv_aio_flush (fdatasync)
    virtio_submit_multiwrite → bdrv_aio_multiwrite: sort the queued writes by sector, merge neighbours
        (and overlaps) into one request, and bdrv_aio_writev each: the same coroutine, raw, raw-posix,
        thread pool and pwritev as IDE's writes, but one request for many sectors.

Completion, on the main loop: bdrv_co_em_bh → (multiwrite_cb →) virtio_blk_rw_complete →
virtio_blk_req_complete: status byte, virtqueue_push (used ring), virtio_notify → INTx.
"""
from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, field
from typing import Any

from ....errors import VmioError
from ....trace.tracepoint import emit, tracepoint
from ...block import (BDRV_ACCT_FLUSH, BDRV_ACCT_READ, BDRV_ACCT_WRITE, BDRV_SECTOR_SIZE, BlockAcctCookie,
                      BlockRequest, bdrv_acct_done, bdrv_acct_start, bdrv_aio_flush, bdrv_aio_multiwrite,
                      bdrv_aio_readv, bdrv_enable_write_cache, bdrv_get_geometry, bdrv_getlength, bdrv_is_read_only,
                      bdrv_set_enable_write_cache)
from ...util.iov import QEMUIOVector, qemu_iovec_init_external
# (werror/rerror and the geometry guess live in the IDE model for now; QEMU has them in block.c and
# hw/block/hd-geometry.c)
from ..ide.core import BDRV_ACTION_IGNORE, BDRV_ACTION_REPORT, BDRV_ACTION_STOP, bdrv_error_action, \
    bdrv_get_error_action, hd_geometry_guess
from ..virtio.virtio import (VIRTIO_CONFIG_S_DRIVER_OK, VirtIODevice, VirtQueue, VirtQueueElement,
                             error_report_exit, virtio_add_queue, virtio_init, virtio_notify, virtqueue_pop,
                             virtqueue_push)

VIRTIO_ID_BLOCK = 2
# include/hw/virtio/virtio-blk.h
VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_GEOMETRY, VIRTIO_BLK_F_RO = 1, 2, 4, 5
VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_SCSI, VIRTIO_BLK_F_WCE = 6, 7, 9
VIRTIO_BLK_F_TOPOLOGY, VIRTIO_BLK_F_CONFIG_WCE = 10, 11
VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_SCSI_CMD = 0, 1, 2
VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_BARRIER = 4, 8, 0x80000000
VIRTIO_BLK_S_OK, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_UNSUPP = 0, 1, 2
VIRTIO_BLK_ID_BYTES = 20
OUTHDR_SIZE = 16  # sizeof(struct virtio_blk_outhdr)
INHDR_SIZE = 1  # sizeof(struct virtio_blk_inhdr)
CONFIG_SIZE = 33  # sizeof(struct virtio_blk_config), QEMU_PACKED
MULTIREQ_MAX = 32  # MultiReqBuffer.blkreq[32]


@dataclass(eq=False)
class BlockConf:
    """include/hw/block/block.h BlockConf: the drive's geometry and block sizes."""

    logical_block_size: int = 512
    physical_block_size: int = 512
    min_io_size: int = 0
    opt_io_size: int = 0
    cyls: int = 0
    heads: int = 0
    secs: int = 0


@dataclass(eq=False)
class VirtIOBlock(VirtIODevice):
    """The virtio-blk device: the backend BDS, its geometry, the one request queue and stopped requests."""

    bs: Any = None
    conf: BlockConf = field(default_factory=BlockConf)
    vq_blk: VirtQueue | None = None  # s->vq (VirtIODevice.vq is the queue array)
    rq: "VirtIOBlockReq | None" = None  # requests stopped by werror=stop/enospc, retried on cont
    sector_mask: int = 0
    serial: str = ""
    scsi: bool = True  # the "scsi" property (on by default in 1.6.1 on Linux hosts)
    config_wce: bool = True
    original_wce: bool = True
    requests: int = 0  # model-only: requests handled, for views
    inflight_reqs: dict = field(default_factory=dict)  # model-only: head → VirtIOBlockReq (the qiov view)

    def view(self) -> dict:
        d = super().view()
        d.update({"capacity": bdrv_get_geometry(self.bs) if self.bs is not None else 0,
                  "geometry": {"cyls": self.conf.cyls, "heads": self.conf.heads, "secs": self.conf.secs},
                  "write_cache": bdrv_enable_write_cache(self.bs) if self.bs is not None else None,
                  "requests": self.requests})
        return d


@dataclass(eq=False)
class VirtIOBlockReq:
    """One request in flight: its popped element, the header (`out`) and status (`in_`) mappings, the
    data as a QEMUIOVector over the guest's own pages, and the accounting cookie."""

    dev: VirtIOBlock
    elem: VirtQueueElement = field(default_factory=VirtQueueElement)
    in_: Any = None  # iovec of struct virtio_blk_inhdr (the status byte)
    out: Any = None  # iovec of struct virtio_blk_outhdr
    qiov: QEMUIOVector = field(default_factory=QEMUIOVector)
    next: "VirtIOBlockReq | None" = None
    acct: BlockAcctCookie = field(default_factory=BlockAcctCookie)

    def header(self) -> tuple[int, int, int]:
        """(type, ioprio, sector) as the device reads them."""
        return struct.unpack("<IIQ", bytes(self.out.mem()[:OUTHDR_SIZE]))

    def view(self) -> dict:
        d = {"head": self.elem.index, "elem": self.elem.view(), "qiov_size": self.qiov.size}
        if self.out is not None:
            t, prio, sector = self.header()
            d.update(type=t, ioprio=prio, sector=sector)
        return d


@dataclass(eq=False)
class MultiReqBuffer:
    """The writes one kick collected, submitted together (at most 32)."""

    blkreq: list[BlockRequest] = field(default_factory=list)
    num_writes: int = 0


# -- completion ---------------------------------------------------------------------------------------------
@tracepoint("qemu-virtio", args=("req", "status"))
def virtio_blk_req_complete(req: VirtIOBlockReq, status: int) -> None:
    """Write the status byte, return the chain (used.len = data + status bytes) and interrupt."""
    s = req.dev
    req.in_.mem()[0] = status  # stb_p(&req->in->status, status)
    s.inflight_reqs.pop(req.elem.index, None)
    virtqueue_push(s.vq_blk, req.elem, req.qiov.size + INHDR_SIZE)
    virtio_notify(s, s.vq_blk)


@tracepoint("qemu-virtio", args=("req", "error", "is_read"))
def virtio_blk_handle_rw_error(req: VirtIOBlockReq, error: int, is_read: bool) -> bool:
    """rerror/werror: report (IOERR to the guest), ignore, or stop the VM and keep the request for 'cont'."""
    s = req.dev
    action = bdrv_get_error_action(s.bs, is_read, error)
    if action == BDRV_ACTION_STOP:
        req.next = s.rq
        s.rq = req
    elif action == BDRV_ACTION_REPORT:
        virtio_blk_req_complete(req, VIRTIO_BLK_S_IOERR)
        bdrv_acct_done(s.bs, req.acct)
    bdrv_error_action(s.bs, action, is_read, error)
    return action != BDRV_ACTION_IGNORE


@tracepoint("qemu-virtio", args=("opaque=req", "ret"))
def virtio_blk_rw_complete(req: VirtIOBlockReq, ret: int) -> None:
    """The block layer's callback (main loop): an error goes through the policy, else status OK."""
    if ret:
        is_read = not (req.header()[0] & VIRTIO_BLK_T_OUT)
        if virtio_blk_handle_rw_error(req, -ret, is_read):
            return
    virtio_blk_req_complete(req, VIRTIO_BLK_S_OK)
    bdrv_acct_done(req.dev.bs, req.acct)


@tracepoint("qemu-virtio", args=("opaque=req", "ret"))
def virtio_blk_flush_complete(req: VirtIOBlockReq, ret: int) -> None:
    """The flush finished (main loop): an error goes through werror (as a write), else status OK."""
    if ret:
        if virtio_blk_handle_rw_error(req, -ret, False):
            return
    virtio_blk_req_complete(req, VIRTIO_BLK_S_OK)
    bdrv_acct_done(req.dev.bs, req.acct)


# -- taking requests off the queue --------------------------------------------------------------------------
@tracepoint("qemu-virtio", args=("s",))
def virtio_blk_alloc_request(s: VirtIOBlock) -> VirtIOBlockReq:
    return VirtIOBlockReq(dev=s)


@tracepoint("qemu-virtio", args=("s",))
def virtio_blk_get_request(s: VirtIOBlock) -> VirtIOBlockReq | None:
    """The next chain off the queue as a request, or None when the driver published no more."""
    req = virtio_blk_alloc_request(s)
    if not virtqueue_pop(s.vq_blk, req.elem):
        return None
    return req


@tracepoint("qemu-virtio", args=("req",))
def virtio_blk_handle_scsi(req: VirtIOBlockReq) -> None:
    """SCSI passthrough (VIRTIO_BLK_T_SCSI_CMD). A chain without room for the SCSI headers is IOERR; a
    raw image file takes no SG_IO ioctl, so a well-formed one fails there: UNSUPP, errors = 255."""
    status = VIRTIO_BLK_S_OK
    if req.elem.out_num < 2 or req.elem.in_num < 3:
        virtio_blk_req_complete(req, VIRTIO_BLK_S_IOERR)
        return
    scsi = req.elem.in_sg[req.elem.in_num - 2]  # struct virtio_scsi_inhdr: errors, data_len, sense_len, residual
    status = VIRTIO_BLK_S_UNSUPP  # !blk.scsi, bidirectional, or bdrv_ioctl(SG_IO) failing on a plain file
    if scsi.iov_len >= 4:
        scsi.mem()[0:4] = struct.pack("<I", 255)
    virtio_blk_req_complete(req, status)


@tracepoint("qemu-virtio", args=("bs", "mrb"))
def virtio_submit_multiwrite(bs: Any, mrb: MultiReqBuffer) -> None:
    """Send the collected writes as one bdrv_aio_multiwrite; on failure complete those it refused."""
    if not mrb.num_writes:
        return
    ret = bdrv_aio_multiwrite(bs, mrb.blkreq, mrb.num_writes)
    if ret != 0:
        for r in mrb.blkreq[:mrb.num_writes]:
            if r.error:
                virtio_blk_rw_complete(r.opaque, -errno.EIO)
    mrb.blkreq = []
    mrb.num_writes = 0


@tracepoint("qemu-virtio", args=("req", "mrb"))
def virtio_blk_handle_flush(req: VirtIOBlockReq, mrb: MultiReqBuffer) -> None:
    """VIRTIO_BLK_T_FLUSH: first send the writes collected so far, then flush the drive
    (bdrv_aio_flush → fdatasync on a pool worker); the status comes in virtio_blk_flush_complete."""
    bdrv_acct_start(req.dev.bs, req.acct, 0, BDRV_ACCT_FLUSH)
    virtio_submit_multiwrite(req.dev.bs, mrb)
    bdrv_aio_flush(req.dev.bs, virtio_blk_flush_complete, req)


@tracepoint("qemu-virtio", args=("req", "mrb"))
def virtio_blk_handle_write(req: VirtIOBlockReq, mrb: MultiReqBuffer) -> None:
    """Queue the write in the MultiReqBuffer (submitting first if it holds 32 already). A sector or
    size not in whole logical blocks fails the request with -EIO at once."""
    sector = req.header()[2]
    bdrv_acct_start(req.dev.bs, req.acct, req.qiov.size, BDRV_ACCT_WRITE)
    if sector & req.dev.sector_mask:
        virtio_blk_rw_complete(req, -errno.EIO)
        return
    if req.qiov.size % req.dev.conf.logical_block_size:
        virtio_blk_rw_complete(req, -errno.EIO)
        return
    if mrb.num_writes == MULTIREQ_MAX:
        virtio_submit_multiwrite(req.dev.bs, mrb)
    mrb.blkreq.append(BlockRequest(sector, req.qiov.size // BDRV_SECTOR_SIZE, req.qiov,
                                   cb=virtio_blk_rw_complete, opaque=req))
    mrb.num_writes += 1


@tracepoint("qemu-virtio", args=("req",))
def virtio_blk_handle_read(req: VirtIOBlockReq) -> None:
    """Start the read at once: bdrv_aio_readv straight into the guest's buffers."""
    sector = req.header()[2]
    bdrv_acct_start(req.dev.bs, req.acct, req.qiov.size, BDRV_ACCT_READ)
    if sector & req.dev.sector_mask:
        virtio_blk_rw_complete(req, -errno.EIO)
        return
    if req.qiov.size % req.dev.conf.logical_block_size:
        virtio_blk_rw_complete(req, -errno.EIO)
        return
    bdrv_aio_readv(req.dev.bs, sector, req.qiov, req.qiov.size // BDRV_SECTOR_SIZE, virtio_blk_rw_complete, req)


def _emit_qiov(req: VirtIOBlockReq, addrs: list[int], descs: list[int], is_write: bool) -> None:
    """For byte provenance (vmio_edu.trace.provenance_virtio): one point event per element of the
    request's QEMUIOVector, naming the guest-physical buffer and the descriptor it was mapped from.
    Not part of QEMU: virtio-blk keeps only the iovecs (host pointers into guest RAM)."""
    offset = 0
    indirect = int(req.elem.table != req.dev.vq_blk.vring.desc)
    for k, v in enumerate(req.qiov.iov[:req.qiov.niov]):
        emit("virtio_blk_qiov", "qemu-virtio", head=req.elem.index, iov=k, addr=addrs[k], len=v.iov_len,
             desc=descs[k] if k < len(descs) else -1, table=req.elem.table, indirect=indirect,
             sector=req.header()[2], offset=offset, size=req.qiov.size, is_write=int(is_write))
        offset += v.iov_len


@tracepoint("qemu-virtio", args=("req", "mrb"))
def virtio_blk_handle_request(req: VirtIOBlockReq, mrb: MultiReqBuffer) -> None:
    """Check the chain's shape (fatal if the header or status don't fit), then dispatch on the type."""
    if req.elem.out_num < 1 or req.elem.in_num < 1:
        error_report_exit("virtio-blk missing headers")
    if req.elem.out_sg[0].iov_len < OUTHDR_SIZE or req.elem.in_sg[req.elem.in_num - 1].iov_len < INHDR_SIZE:
        error_report_exit("virtio-blk header not in correct element")
    req.out = req.elem.out_sg[0]
    req.in_ = req.elem.in_sg[req.elem.in_num - 1]
    req.dev.requests += 1
    req.dev.inflight_reqs[req.elem.index] = req
    type_ = req.header()[0]
    if type_ & VIRTIO_BLK_T_FLUSH:
        virtio_blk_handle_flush(req, mrb)
    elif type_ & VIRTIO_BLK_T_SCSI_CMD:
        virtio_blk_handle_scsi(req)
    elif type_ & VIRTIO_BLK_T_GET_ID:
        # NB: the serial is NUL-terminated only when shorter than the buffer (strncpy)
        buf = req.elem.in_sg[0]
        n = min(buf.iov_len, VIRTIO_BLK_ID_BYTES)
        serial = req.dev.serial.encode()[:n]
        buf.mem()[:n] = serial + bytes(n - len(serial))
        virtio_blk_req_complete(req, VIRTIO_BLK_S_OK)
    elif type_ & VIRTIO_BLK_T_OUT:
        qemu_iovec_init_external(req.qiov, req.elem.out_sg[1:], req.elem.out_num - 1)
        _emit_qiov(req, req.elem.out_addr[1:], req.elem.out_desc[1:], True)
        virtio_blk_handle_write(req, mrb)
    elif type_ in (VIRTIO_BLK_T_IN, VIRTIO_BLK_T_BARRIER):  # T_IN is 0, so it can't be tested with &
        qemu_iovec_init_external(req.qiov, req.elem.in_sg[:req.elem.in_num - 1], req.elem.in_num - 1)
        _emit_qiov(req, req.elem.in_addr[:req.elem.in_num - 1], req.elem.in_desc[:req.elem.in_num - 1], False)
        virtio_blk_handle_read(req)
    else:
        virtio_blk_req_complete(req, VIRTIO_BLK_S_UNSUPP)


@tracepoint("qemu-virtio", args=("vdev", "vq"))
def virtio_blk_handle_output(vdev: VirtIOBlock, vq: VirtQueue) -> None:
    """The queue's kick handler: take every published request, then submit the collected writes."""
    s = vdev
    mrb = MultiReqBuffer()
    while (req := virtio_blk_get_request(s)) is not None:
        virtio_blk_handle_request(req, mrb)
    virtio_submit_multiwrite(s.bs, mrb)


# -- config space, features, status -------------------------------------------------------------------------
@tracepoint("qemu-virtio", args=("vdev", "config"))
def virtio_blk_update_config(vdev: VirtIOBlock, config: bytearray) -> None:
    """struct virtio_blk_config: capacity in 512-byte sectors, seg_max 126, geometry, block size, wce."""
    s = vdev
    blk_size = s.conf.logical_block_size
    capacity = bdrv_get_geometry(s.bs)
    secs = s.conf.secs
    if s.conf.heads and secs and bdrv_getlength(s.bs) // s.conf.heads // secs % blk_size:
        secs &= ~s.sector_mask
    cfg = struct.pack("<QIIHBBIBBHIB", capacity, 0, 128 - 2, s.conf.cyls, s.conf.heads, secs, blk_size,
                      (s.conf.physical_block_size // blk_size).bit_length() - 1, 0,
                      s.conf.min_io_size // blk_size, s.conf.opt_io_size // blk_size,
                      1 if bdrv_enable_write_cache(s.bs) else 0)
    config[:CONFIG_SIZE] = cfg


@tracepoint("qemu-virtio", args=("vdev", "config"))
def virtio_blk_set_config(vdev: VirtIOBlock, config: bytearray) -> None:
    bdrv_set_enable_write_cache(vdev.bs, config[CONFIG_SIZE - 1] != 0)


@tracepoint("qemu-virtio", args=("vdev", "features"))
def virtio_blk_get_features(vdev: VirtIOBlock, features: int) -> int:
    s = vdev
    features |= (1 << VIRTIO_BLK_F_SEG_MAX) | (1 << VIRTIO_BLK_F_GEOMETRY) | (1 << VIRTIO_BLK_F_TOPOLOGY)
    features |= (1 << VIRTIO_BLK_F_BLK_SIZE) | (1 << VIRTIO_BLK_F_SCSI)
    if s.config_wce:
        features |= 1 << VIRTIO_BLK_F_CONFIG_WCE
    if bdrv_enable_write_cache(s.bs):
        features |= 1 << VIRTIO_BLK_F_WCE
    if bdrv_is_read_only(s.bs):
        features |= 1 << VIRTIO_BLK_F_RO
    return features


@tracepoint("qemu-virtio", args=("vdev", "status"))
def virtio_blk_set_status(vdev: VirtIOBlock, status: int) -> None:
    """At DRIVER_OK, a driver that did not take CONFIG_WCE gets the write cache its WCE bit asked for
    (a driver without WCE = no flush command = writethrough)."""
    if not status & VIRTIO_CONFIG_S_DRIVER_OK:
        return
    features = vdev.guest_features
    if not features & (1 << VIRTIO_BLK_F_CONFIG_WCE):
        bdrv_set_enable_write_cache(vdev.bs, bool(features & (1 << VIRTIO_BLK_F_WCE)))


@tracepoint("qemu-virtio", args=("vdev",))
def virtio_blk_reset(vdev: VirtIOBlock) -> None:
    bdrv_set_enable_write_cache(vdev.bs, vdev.original_wce)


@tracepoint("qemu-virtio", args=())
def virtio_blk_device_init(bs: Any, serial: str = "") -> VirtIOBlock:
    """virtio_blk_device_init: the device on drive `bs`, one queue of 128 entries."""
    if bs is None:
        raise VmioError("virtio-blk: drive property not set")
    s = VirtIOBlock()
    virtio_init(s, "virtio-blk", VIRTIO_ID_BLOCK, CONFIG_SIZE)
    s.get_config, s.set_config = virtio_blk_update_config, virtio_blk_set_config
    s.get_features, s.set_status, s.reset = virtio_blk_get_features, virtio_blk_set_status, virtio_blk_reset
    s.bs, s.serial = bs, serial
    s.original_wce = bdrv_enable_write_cache(bs)
    s.conf.cyls, s.conf.heads, s.conf.secs = hd_geometry_guess(bs)  # blkconf_geometry: no -drive cyls=
    s.rq = None
    s.sector_mask = s.conf.logical_block_size // BDRV_SECTOR_SIZE - 1
    s.vq_blk = virtio_add_queue(s, 128, virtio_blk_handle_output)
    return s
