"""The virtio part of the QEMUIOVector view (`stop.views["qiov"]`): which guest pages each request moves.

On virtio-blk no byte is copied into a device buffer: `virtqueue_pop` maps each descriptor of the chain in
place (hw/virtio/virtio.c `virtqueue_map_sg` → `cpu_physical_memory_map`), so a request's iovecs point into
guest RAM, and `virtio_blk_handle_request` wraps the data descriptors as the request's QEMUIOVector
(`qemu_iovec_init_external` over `elem.out_sg[1:]` for a write, `elem.in_sg[:in_num-1]` for a read;
hw/block/virtio-blk.c in QEMU v1.6.1). Writes of one kick then go to `bdrv_aio_multiwrite`, whose
`multiwrite_merge` (block.c) builds a new QEMUIOVector for each run of touching requests out of their
vectors' pieces (`qemu_iovec_concat`): the same guest pages, now one request. That merged vector is what
the coroutine, raw-posix and the pool worker's `pwritev` see.

This module lists, as plain data:
  * every virtio request the device holds (popped and not completed), with its qiov's iovecs as guest-
    physical addresses and the descriptor each came from;
  * every block-layer request made from a `bdrv_aio_multiwrite` batch (merged or not) that is still
    running, with its qiov's iovecs traced back to the virtio request and descriptor they cover;
  * a `bdrv_aio_multiwrite` call on a stack, with the requests it was handed.

Block requests are found where QEMU keeps them: the AIOCB each coroutine runs on (`bdrv_co_do_rw`'s
argument), a pending `bdrv_co_em_bh` bottom half's opaque, and the arguments of the block-layer calls on
every thread's stack. Nothing here calls a traced function.
"""
from __future__ import annotations

from typing import Any, Iterator

from .virtqueue_view import BLK_TYPES

BYTES_CAP = 4096


def _frames(m: Any) -> Iterator[Any]:
    """Every shadow-stack frame: each thread's stack and each live coroutine's own stack."""
    for t in m.sched.threads:
        yield from t.ctx.stack
    table = m.state.extra.get("coroutines")
    for co in (table.live if table is not None else []):
        yield from co.stack


def _arg(frame: Any, name: str) -> Any:
    """A frame's recorded argument by its real name (None when the trace point does not keep it)."""
    names = frame.tp.argnames
    if name not in names:
        return None
    i = names.index(name)
    return frame.args[i] if i < len(frame.args) else None


def _iov(v: Any, m: Any, origin: dict | None) -> dict:
    mem = v.mem()
    d = {"iov_len": v.iov_len, "iov_offset": v.iov_offset,
         "buffer": "guest RAM" if v.iov_base is m.ram else type(v.iov_base).__name__,
         "bytes": bytes(mem[:BYTES_CAP]).hex(), "truncated": v.iov_len > BYTES_CAP}
    if v.iov_base is m.ram:
        d["guest_phys"] = v.iov_offset  # mapped in place: the pointer is guest RAM + the guest-physical address
    if origin is not None:
        d.update(origin)
    return d


class _Requests:
    """The device's in-flight virtio requests and where each data byte of theirs sits."""

    def __init__(self, m: Any, dev: Any) -> None:
        self.m, self.dev = m, dev
        self.reqs = list(dev.inflight_reqs.values())
        self.origin: dict[int, dict] = {}  # id(iovec) → where it came from
        self.pieces: list[tuple[int, int, dict]] = []  # (guest_phys, len, origin) of every data buffer
        for req in self.reqs:
            elem = req.elem
            indirect = elem.table != dev.vq_blk.vring.desc  # the head points to a table of its own
            for sg, descs in ((elem.out_sg, elem.out_desc), (elem.in_sg, elem.in_desc)):
                for k, v in enumerate(sg):
                    o = {"head": elem.index, "sg_index": k}
                    if k < len(descs):  # the descriptor virtqueue_pop mapped this entry from
                        o["descriptor"] = descs[k]
                        if indirect:
                            o["indirect_table_of"] = elem.index
                    self.origin[id(v)] = o
            for v in req.qiov.iov[:req.qiov.niov]:
                if v.iov_base is m.ram:
                    self.pieces.append((v.iov_offset, v.iov_len, self.origin.get(id(v), {})))

    def origin_of(self, v: Any) -> dict | None:
        """Where an iovec's bytes come from: the same iovec (the request's own vector) or, for a merged
        vector's piece, the data buffer it lies in."""
        if id(v) in self.origin:
            return self.origin[id(v)]
        if v.iov_base is not self.m.ram:
            return None
        for start, n, o in self.pieces:
            if start <= v.iov_offset and v.iov_offset + v.iov_len <= start + n:
                return {**o, "offset_in_buffer": v.iov_offset - start}
        return None


def _block_requests(m: Any) -> Iterator[tuple[Any, Any, int, int, Any, str]]:
    """(qiov, opaque, sector, nb_sectors, cb, where) of every block-layer request still running or being
    made: AIOCBs on coroutine stacks and in pending bottom halves, and bdrv_aio_writev/readv arguments."""
    for f in _frames(m):
        name = f.tp.name
        if name == "bdrv_co_do_rw" and (acb := _arg(f, "opaque")) is not None:
            yield acb.req.qiov, acb.opaque, acb.req.sector, acb.req.nb_sectors, acb.cb, \
                f"coroutine {getattr(acb, 'id', '?')} (bdrv_co_do_rw)"
        elif name in ("bdrv_aio_writev", "bdrv_aio_readv", "bdrv_co_aio_rw_vector"):
            qiov = _arg(f, "qiov")
            if qiov is not None:
                yield qiov, _arg(f, "opaque"), _arg(f, "sector_num"), _arg(f, "nb_sectors"), _arg(f, "cb"), name
    for bh in m.state.aio_context.first_bh:
        acb = bh.opaque
        if not bh.deleted and getattr(bh.cb, "__name__", "") == "bdrv_co_em_bh" and hasattr(acb, "req"):
            yield acb.req.qiov, acb.opaque, acb.req.sector, acb.req.nb_sectors, acb.cb, \
                "done: its bottom half bdrv_co_em_bh is scheduled"


def virtio_qiov_requests(m: Any) -> list[dict]:
    """The virtio entries of the qiov view (see the module docstring); [] on an IDE machine."""
    from ..qemu.block import MultiwriteCB
    proxy = getattr(m, "virtio", None)
    dev = getattr(proxy, "vdev", None)
    if dev is None or not hasattr(dev, "inflight_reqs"):
        return []
    known = _Requests(m, dev)
    out: list[dict] = []

    # block-layer requests: which virtio requests each serves
    serving: dict[int, str] = {}  # id(VirtIOBlockReq) → how it is being served
    seen: set[int] = set()
    for qiov, opaque, sector, nb, cb, where in _block_requests(m):
        if id(qiov) in seen:
            continue
        seen.add(id(qiov))
        if isinstance(opaque, MultiwriteCB):
            merged = any(c.get("free_qiov") is qiov for c in opaque.callbacks[:opaque.num_callbacks])
            parts = [c["opaque"] for c in opaque.callbacks[:opaque.num_callbacks]
                     if _covers(sector, nb, c["opaque"])]
            heads = [r.elem.index for r in parts]
            kind = "merged by multiwrite_merge" if merged else "not merged"
            for r in parts:
                serving[id(r)] = (f"written by the bdrv_aio_multiwrite request at sector {sector} "
                                  f"({nb} sectors, {kind}; {where})")
            out.append({"owner": f"bdrv_aio_multiwrite write at sector {sector}, {nb} sectors ({kind})",
                        "kind": "multiwrite", "merged": merged, "sector": sector, "nb_sectors": nb,
                        "virtio_heads": heads, "where": where, "niov": qiov.niov, "size": qiov.size,
                        "nalloc": qiov.nalloc,
                        "iov": [_iov(v, m, known.origin_of(v)) for v in qiov.iov[:qiov.niov]]})
        elif any(opaque is r for r in known.reqs):
            serving[id(opaque)] = f"read by bdrv_aio_readv ({where})"

    # calls on a stack: a bdrv_aio_multiwrite with the batch it was handed (merging happens in place), the
    # request virtio-blk is dispatching, and the MultiReqBuffer it queues writes in
    dispatching: set[int] = set()
    for f in _frames(m):
        name = f.tp.name
        if name == "bdrv_aio_multiwrite":
            reqs, num = _arg(f, "reqs"), _arg(f, "num_reqs")
            batch = [r.opaque for r in (reqs or [])[:num or 0] if r.opaque is not None]
            for r in batch:
                serving.setdefault(id(r), "handed to bdrv_aio_multiwrite (being merged and submitted)")
        elif name in ("virtio_blk_handle_request", "virtio_blk_handle_write", "virtio_blk_handle_read"):
            if (req := _arg(f, "req")) is not None:
                dispatching.add(id(req))

    rq = []
    r = dev.rq
    while r is not None:
        rq.append(r)
        r = r.next
    for req in known.reqs:
        t, _prio, sector = req.header() if req.out is not None else (None, None, None)
        if any(req is x for x in rq):
            state = "stopped by werror/rerror=stop: kept in s->rq until the VM continues"
        elif id(req) in serving:
            state = serving[id(req)]
        elif id(req) in dispatching:
            state = "being dispatched by virtio_blk_handle_request"
        elif t is not None and t & 1 and not t & 4:
            state = "queued in the MultiReqBuffer for virtio_submit_multiwrite"
        else:
            state = "being dispatched by virtio_blk_handle_request"
        q = req.qiov
        out.insert(0, {"owner": f"virtio-blk request, chain head {req.elem.index} (VirtIOBlockReq.qiov)",
                       "kind": "virtio", "head": req.elem.index, "type": t,
                       "type_name": BLK_TYPES.get((t or 0) & 0x7FFFFFFF, f"unknown ({t})") if t is not None else None,
                       "sector": sector, "state": state, "niov": q.niov, "size": q.size,
                       "iov": [_iov(v, m, known.origin_of(v)) for v in q.iov[:q.niov]]})
    out.sort(key=lambda e: (e["kind"] != "virtio", e.get("head", 0), e.get("sector") or 0))
    return out


def _covers(sector: int, nb: int, req: Any) -> bool:
    """Does the block request [sector, sector + nb) hold (part of) this virtio request's sectors?"""
    s = req.header()[2]
    n = req.qiov.size // 512
    return s < sector + nb and sector < s + max(n, 1)
