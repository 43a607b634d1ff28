"""Byte provenance: Debugger.provenance follows one byte between the guest buffer and the image, on both
engines, and every hop's index is a moment the debugger can go to."""
import pytest

from vmio_edu.errors import VmioError
from vmio_edu.guest.programs import BUFFER2_ADDR, BUFFER_ADDR
from vmio_edu.trace.provenance import ProvenanceError

WRITE_LAYERS = ["guest", None, "kvm_run", "qemu-ide", "qemu-block", "host", "disk"]
KEYS = {"layer", "what", "addr", "offset", "index"}


def _check_shape(hops, layers):
    assert [h["layer"] for h in hops][0:1] == layers[0:1]
    assert len(hops) == len(layers)
    for h, want in zip(hops, layers):
        assert set(h) == KEYS
        assert isinstance(h["what"], str) and h["what"]
        assert isinstance(h["index"], int) and h["index"] >= 0
        if want is None:
            assert h["layer"] in ("vmx", "kvm")
        else:
            assert h["layer"] == want


def _image_byte(m, off):
    return m.image_bytes(off // 512)[off % 512]


@pytest.mark.parametrize("lba,sectors", [(0, 1), (7, 3)])
def test_write_provenance_from_image_offset(make, lba, sectors):
    m, dbg = make(op="write", lba=lba, sectors=sectors)
    assert dbg.cont().reason == "halted"
    for k in (0, 1, 511, 512 * (sectors - 1) + 300, 512 * sectors - 1):
        off = lba * 512 + k
        hops = dbg.provenance(image_offset=off)
        _check_shape(hops, WRITE_LAYERS)
        guest, disk = hops[0], hops[-1]
        # the guest byte sent is the image byte written, and it is the k-th byte of the guest's buffer
        assert guest["addr"] == BUFFER_ADDR + k
        assert m.read_guest(guest["addr"], 1)[0] == _image_byte(m, off)
        assert disk["offset"] == off and hops[-2]["offset"] == off
        # the io_buffer and iovec offsets are the byte's place in its sector (one sector per DRQ block)
        assert hops[3]["offset"] == k % 512 and hops[4]["offset"] == k % 512
        assert f"sector {lba + k // 512}" in hops[4]["what"]
        # the kvm_run offset lies in the PIO page, one byte of the word the exit carried
        exit_no = int(hops[1]["what"].split("VM exit #")[1].split()[0])
        x = m.exits[exit_no]
        assert (x.direction, x.port, x.size) == ("out", 0x1F0, 2)
        assert bytes.fromhex(x.data)[k % 2] == _image_byte(m, off)
        assert hops[2]["offset"] == 4096 + k % 2
        # in order: the guest's buffer first, the image last
        idx = [h["index"] for h in hops]
        assert idx == sorted(idx)


def test_hops_are_moments_to_go_to(make):
    m, dbg = make(op="write", lba=2, sectors=1)
    dbg.cont()
    off = 2 * 512 + 77
    hops = dbg.provenance(image_offset=off)
    want = m.read_guest(BUFFER_ADDR + 77, 1)[0]
    ide, disk, host = hops[3], hops[-1], hops[-2]
    stop = dbg.goto(ide["index"])
    assert stop.index == ide["index"] and stop.kind == "event"
    # the data-port write is about to store the word: after the next step io_buffer holds the byte
    stop = dbg.goto(disk["index"])
    assert stop.function == "sys_pwrite64" and stop.kind == "leave"
    assert _image_byte(m, off) == want
    stop = dbg.goto(host["index"])
    assert stop.function == "sys_pwrite64" and stop.kind == "enter" and stop.args["count"] == 512
    assert _image_byte(m, off) == 0  # not written yet: the image was blank
    # the guest hop: the byte is in the guest's buffer when the KVM_RUN that sends it begins
    stop = dbg.goto(hops[0]["index"])
    assert stop.function == "kvm_vcpu_ioctl" and m.read_guest(hops[0]["addr"], 1)[0] == want


def test_read_provenance_both_ways(make):
    m, dbg = make(op="both", lba=4, sectors=2)
    assert dbg.cont().reason == "halted"
    k = 512 + 33
    off = 4 * 512 + k
    by_image = dbg.provenance(image_offset=off, op="read")
    by_guest = dbg.provenance(guest_addr=BUFFER2_ADDR + k)
    assert by_image == by_guest
    _check_shape(by_image, list(reversed(WRITE_LAYERS)))
    assert by_image[0]["offset"] == off and by_image[-1]["addr"] == BUFFER2_ADDR + k
    assert m.read_guest(BUFFER2_ADDR + k, 1)[0] == _image_byte(m, off)
    exit_no = int(by_image[-2]["what"].split("VM exit #")[1].split()[0])
    x = m.exits[exit_no]
    element = by_image[-2]["offset"]
    assert (x.direction, x.port) == ("in", 0x1F0)
    assert bytes.fromhex(x.data)[element * 2 + k % 2] == _image_byte(m, off)
    assert by_image[-3]["offset"] == 4096 + element * 2 + k % 2
    # the image byte of an op="both" run: by default the write that put it there
    assert dbg.provenance(image_offset=off)[0]["layer"] == "guest"
    assert dbg.provenance(image_offset=off)[0]["addr"] == BUFFER_ADDR + k


def test_a_byte_that_never_moved(make):
    m, dbg = make(op="write", lba=3, sectors=1)
    dbg.cont()
    with pytest.raises(ProvenanceError, match="never moved.*written sectors 3-3"):
        dbg.provenance(image_offset=10 * 512)
    with pytest.raises(ProvenanceError, match="never moved"):
        dbg.provenance(guest_addr=BUFFER2_ADDR)
    with pytest.raises(ProvenanceError, match="read"):
        dbg.provenance(image_offset=3 * 512, op="read")
    with pytest.raises(VmioError, match="exactly one"):
        dbg.provenance()
    with pytest.raises(VmioError, match="non-negative int"):
        dbg.provenance(image_offset=-1)


def test_only_what_is_recorded_so_far(make):
    m, dbg = make(op="write", lba=1, sectors=1)
    dbg.break_at("ide_sector_write")
    dbg.cont()  # the guest filled io_buffer, nothing is written yet
    with pytest.raises(ProvenanceError, match="never moved"):
        dbg.provenance(image_offset=512)


def test_io_buffer_and_kvm_run_bytes_at_a_stop(make):
    m, dbg = make(op="both", lba=3, sectors=1)
    dbg.break_at("ide_sector_write")
    dbg.cont()  # io_buffer holds the sector the guest sent; nothing written yet
    with pytest.raises(ProvenanceError, match="never moved"):
        dbg.provenance(image_offset=3 * 512 + 40)  # (not written yet at this point of the recording)
    dbg.clear()
    dbg.cont()
    full = dbg.provenance(image_offset=3 * 512 + 40, op="write")
    dbg.goto(full[3]["index"] + 1)  # just after ide_data_writew stored that word
    hops = dbg.provenance(io_buffer_offset=40)
    assert hops == full
    # the PIO page byte of the exit that carried byte 41: element 0, byte 1 of the word
    dbg.goto(full[2]["index"])
    assert dbg.provenance(kvm_run_offset=full[2]["offset"]) == full
    # a read: after the whole run, io_buffer holds the sector read back
    dbg.goto(len(dbg.events) - 1)
    back = dbg.provenance(io_buffer_offset=40)
    assert back[0]["layer"] == "disk" and back[0]["offset"] == 3 * 512 + 40 and back[-1]["layer"] == "guest"
    with pytest.raises(VmioError, match="exactly one"):
        dbg.provenance(io_buffer_offset=1, kvm_run_offset=1)
