"""The virtio exercises' rules against the real thing: the model's virtio-blk device and its virtio guest
(issue 14) run a batch, and the exits QEMU saw, the ISR reads and the rings left in guest RAM must be what
the instructor's model and vring parser say. Skipped until the tree has the virtio device
(`Machine(disk="virtio")`, branch v-device)."""
from __future__ import annotations

import inspect

import pytest

from vmio_edu.grading import virtio_chain as vc
import vmio_edu_instructor.virtio_chain as chain_material
import vmio_edu_instructor.virtio_exits as exits_material

NUM = 128  # the queue size the device offers (hw/block/virtio-blk.c:710)


def _machine_class():
    from vmio_edu import Machine
    if "disk" not in inspect.signature(Machine).parameters:
        pytest.skip("no virtio-blk device in this tree yet (issue 14: Machine(disk='virtio'), branch v-device)")
    return Machine


def _batches(sectors: int, per_request: int, depth: int) -> list[int]:
    """The guest's batches: requests of per_request sectors (0: one request), depth per kick (0: as many
    as fit, num / 3 chains)."""
    n = -(-sectors // per_request) if per_request else 1
    size = min(depth or NUM // 3, NUM // 3)
    return [min(size, n - i) for i in range(0, n, size)]


@pytest.mark.parametrize("op,sectors,per_request,depth,ioeventfd,polling", [
    ("write", 8, 2, 2, False, False),
    ("write", 8, 2, 2, True, False),
    ("read", 6, 1, 0, False, True),
    ("write", 5, 0, 0, False, False),
    ("read", 4, 1, 1, False, False),
    ("write", 3, 1, 3, True, True),
])
def test_exits_and_rings_of_a_real_run(op, sectors, per_request, depth, ioeventfd, polling):
    Machine = _machine_class()
    with Machine(disk="virtio", ioeventfd=ioeventfd, op=op, sectors=sectors, per_request=per_request,
                 depth=depth, polling=polling, engine="unicorn") as m:
        m.run()
        result = m.guest_result()
        assert result["done"] and result["outcome"] == 0, result
        io = [e for e in m.exits if e.reason == "IO"]
        base = result["iobase"]
        notify = [e for e in io if e.port == base + 16 and e.direction == "out"]
        isr = [e for e in io if e.port == base + 19 and e.direction == "in"]
        ram = bytes(m.read_guest(0, 0x60000))
    batches = _batches(sectors, per_request, depth)
    n = sum(batches)
    # the model, batch by batch (the guest acks no ring features: no event idx)
    want_notify, lo, hi, idx = 0, 0, 0, 0
    for k in batches:
        b = {"requests": k, "sectors": per_request or sectors, "op": op, "submit": "batch", "ioeventfd": ioeventfd,
             "mode": "poll" if polling else "interrupt", "idx": idx, "num": NUM, "event_idx": False}
        together = exits_material.oracle(dict(b, completion="together"))
        apart = exits_material.oracle(dict(b, completion="apart"))
        assert together["notify_exits"] == apart["notify_exits"]
        want_notify += together["notify_exits"]
        lo, hi = lo + together["isr_exits"], hi + apart["isr_exits"]
        idx = together["used_idx"]
    assert len(notify) == want_notify == result["kicks"] * (not ioeventfd)
    assert lo <= len(isr) <= hi and len(isr) == result["irqs"]
    # the rings in guest RAM, read by the instructor's parser at the 0.9.5 layout
    vring = 0x50000
    ring = chain_material.parse_vring(ram, vring, NUM)
    assert ring["used"]["at"] == vc.layout(vring, NUM)["used"]
    assert ring["avail"]["idx"] == ring["used"]["idx"] == idx == n
    for slot in range(n):
        descs = [ring["desc"][i] for i in chain_material.walk_chain(ring, ring["avail"]["ring"][slot])]
        assert [d["len"] for d in descs[::len(descs) - 1]] == [16, 1]
        assert descs[0]["flags"] == vc.F_NEXT and descs[-1]["flags"] == vc.F_WRITE
        data_write = [bool(d["flags"] & vc.F_WRITE) for d in descs[1:-1]]
        assert data_write == [op == "read"] * len(data_write) and sum(d["len"] for d in descs[1:-1]) % 512 == 0
