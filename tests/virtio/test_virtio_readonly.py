"""A read-only image on virtio: QEMU 1.6.1 offers VIRTIO_BLK_F_RO, the Linux 3.7-style guest obeys it (set_disk_ro
in virtblk_probe; a writer is refused with EACCES before any request), and a write request that reaches the device
anyway gets VIRTIO_BLK_S_IOERR (bdrv_co_do_writev's -EACCES, reported under the default werror=enospc)."""
import errno
import json

import pytest

from kvm_policy import require_kvm
from vmio_edu import Machine
from vmio_edu.cli import main
from vmio_edu.guest.virtio_guest import OUTCOME_OK, OUTCOME_DEVICE_ERROR, OUTCOME_READ_ONLY
from vmio_edu.trace.tracepoint import REGISTRY

VIRTIO_BLK_F_RO = 5
VIRTIO_BLK_S_IOERR = 1


def _calls(m, name):
    out = []
    for e in m.trace.events:
        if e.kind == 0 and REGISTRY[e.what].name == name:
            out.append(dict(zip(REGISTRY[e.what].argnames, e.payload)))
    return out


def _engine(engine):
    if engine == "kvm":
        require_kvm()


@pytest.mark.parametrize("engine", ["unicorn", "kvm"])
@pytest.mark.parametrize("op", ["write", "both"])
def test_the_guest_refuses_to_write_a_read_only_disk(engine, op):
    _engine(engine)
    with Machine(disk="virtio", op=op, sectors=4, readonly=True, ioeventfd=False, engine=engine,
                 record=True) as m:
        m.run()
        r = m.guest_result()
        assert r["done"] and r["read_only"] == 1 and r["outcome"] == OUTCOME_READ_ONLY
        assert (r["requests"], r["kicks"], r["error"]) == (0, 0, 0)  # nothing was sent
        assert r["features"] >> VIRTIO_BLK_F_RO & 1  # QEMU offered it (virtio_blk_get_features)
        assert m.virtio.vdev.guest_features >> VIRTIO_BLK_F_RO & 1  # and the driver took it
        assert m.image_changes() == []
        assert not any(x.port == 0xC010 for x in m.exits)  # no kick
        assert _calls(m, "virtio_blk_handle_write") == [] and _calls(m, "bdrv_aio_multiwrite") == []


@pytest.mark.parametrize("engine", ["unicorn", "kvm"])
def test_a_read_only_disk_still_reads(engine):
    _engine(engine)
    with Machine(disk="virtio", op="read", lba=1, sectors=3, readonly=True, engine=engine) as m:
        m.run()
        r = m.guest_result()
        assert (r["outcome"], r["read_only"], r["requests"]) == (OUTCOME_OK, 1, 1)
        assert r["read_back"] == m.image_bytes(1, 3)


@pytest.mark.parametrize("engine", ["unicorn", "kvm"])
def test_a_write_that_reaches_the_device_gets_ioerr(engine):
    # op=1 sends one raw VIRTIO_BLK_T_OUT request past the driver's check (as a write through a raw O_RDWR open
    # of /dev/vda could in Linux 3.7): QEMU 1.6.1's bdrv_co_do_writev refuses it with -EACCES, and
    # virtio_blk_handle_rw_error reports it (werror=enospc: only ENOSPC stops the VM)
    _engine(engine)
    with Machine(disk="virtio", op=1, sectors=2, readonly=True, engine=engine, record=True) as m:
        m.run()
        r = m.guest_result()
        assert (r["outcome"], r["status"], r["error"]) == (OUTCOME_DEVICE_ERROR, VIRTIO_BLK_S_IOERR, 1)
        assert [c["ret"] for c in _calls(m, "virtio_blk_rw_complete")] == [-errno.EACCES]
        assert [(c["error"], c["is_read"]) for c in _calls(m, "virtio_blk_handle_rw_error")] == [(errno.EACCES, 0)]
        assert [c["status"] for c in _calls(m, "virtio_blk_req_complete")] == [VIRTIO_BLK_S_IOERR]
        assert m.image_changes() == []


def test_a_writable_disk_is_not_read_only():
    with Machine(disk="virtio", op="write", sectors=2) as m:
        m.run()
        r = m.guest_result()
        assert r["read_only"] == 0 and not r["features"] >> VIRTIO_BLK_F_RO & 1
        assert r["outcome"] == OUTCOME_OK and m.image_changes() == [0, 1]


def test_trace_readonly_says_why_nothing_was_written(capsys):
    rc = main(["trace", "--disk", "virtio", "--readonly", "--sectors", "2", "--format", "json"])
    r = json.loads(capsys.readouterr().out)
    assert rc == 1 and r["guest"]["read_only"] == 1  # 1: the image check failed and r["guest"]["outcome"] == OUTCOME_READ_ONLY
    assert not r["check"]["ok"] and r["check"]["sectors_changed"] == [] and r["check"]["sectors_written"] == []
    (problem,) = r["check"]["problems"]
    assert "VIRTIO_BLK_F_RO" in problem and "EACCES" in problem
