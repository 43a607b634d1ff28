"""Issue 14: a guest that breaks the virtio rules gets QEMU 1.6.1's answer: a status byte for a bad
request (IOERR/UNSUPP), QEMU's exit(1) message for a broken ring, and nothing else is written."""
import pytest

from kvm_policy import require_kvm
from vmio_edu import Machine
from vmio_edu.errors import GuestFault, VmioError
from vmio_edu.machine import make_pattern
from vmio_edu.qemu.hw.virtio.virtio import VirtioExit

VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_UNSUPP = 1, 2
FILL = b"\xa5" * 512


@pytest.fixture
def image(tmp_path):
    """A 1 MiB image whose every sector holds 0xa5, so a stray write shows."""
    path = tmp_path / "disk.img"
    path.write_bytes(FILL * 2048)
    return str(path)


def _unchanged(path):
    with open(path, "rb") as f:
        return f.read() == FILL * 2048


def _run(image, engine="unicorn", **kw):
    with Machine(disk="virtio", image=image, engine=engine, ioeventfd=False, **kw) as m:
        m.run()
        return m.guest_result()


def _looped(image):
    return _run(image, op="write", sectors=2, fault="loop")  # the status descriptor chains back to the head


def _bad_head(image):
    return _run(image, op="write", sectors=2, fault="bad_head")  # avail ring names descriptor 128 of 128


def _out_of_ram_twice(image):
    # Two reads whose data descriptors lie past RAM: the first gets 1.6.1's one bounce buffer (held until
    # its read completes); the second, popped in the same kick, finds it taken and can't be mapped.
    return _run(image, op="read", sectors=2, per_request=1, depth=2, fault="desc_out_of_ram")


def _zero_len(image):
    # 1.6.1's address_space_map returns NULL for a zero length (exec.c:2166), so virtqueue_map_sg stops
    return _run(image, op="write", sectors=2, fault="zero_len")


@pytest.mark.parametrize("guest,message", [
    (_looped, "Looped descriptor"),
    (_zero_len, "virtio: trying to map MMIO memory"),
    (_bad_head, "Guest says index 128 is available"),
    (_out_of_ram_twice, "virtio: trying to map MMIO memory"),
])
def test_a_broken_ring_is_qemus_exit_1_and_nothing_is_written(image, guest, message):
    with pytest.raises(VirtioExit) as e:
        guest(image)
    assert e.value.qemu_message == message and message in str(e.value) and "exit(1)" in str(e.value)
    assert _unchanged(image)


@pytest.mark.usefixtures("need_kvm")
def test_a_broken_ring_on_the_real_engine(image):
    with pytest.raises(VirtioExit, match="Looped descriptor"):
        _run(image, engine="kvm", op="write", sectors=2, fault="loop")
    assert _unchanged(image)


def test_a_long_buffer_out_of_ram_stops_before_1_6_1s_bounce_buffer_overrun(image):
    with pytest.raises(GuestFault, match=r"8192 bytes at 0x40000000.*bounce buffer.*undefined behaviour"):
        _run(image, op="write", sectors=16, fault="desc_out_of_ram")
    assert _unchanged(image)


def test_a_short_buffer_out_of_ram_goes_through_the_bounce_buffer(image):
    # 1.6.1's address_space_map bounces one non-RAM buffer through a page of its own, read from
    # unassigned memory (0): the write "works" and puts zeros on the disk. That is what 1.6.1 does.
    r = _run(image, op="write", lba=3, sectors=1, fault="desc_out_of_ram")
    assert (r["outcome"], r["status"], r["requests"]) == (0, 0, 1)
    with open(image, "rb") as f:
        data = f.read()
    assert data[3 * 512:4 * 512] == bytes(512)
    assert data[:3 * 512] + data[4 * 512:] == FILL * 2047


@pytest.mark.parametrize("engine", ["unicorn", "kvm"])
@pytest.mark.parametrize("req_type,status", [(0x10, VIRTIO_BLK_S_UNSUPP), (2, VIRTIO_BLK_S_IOERR)])
def test_a_bad_request_type_gets_a_status_byte(image, engine, req_type, status):
    # 0x10: no such type -> UNSUPP. 2 (SCSI_CMD) with a plain 3-descriptor chain: too few descriptors
    # for the SCSI headers -> IOERR. The guest goes on and finishes.
    if engine == "kvm":
        require_kvm()
    r = _run(image, engine=engine, op=req_type, sectors=1)
    assert (r["done"], r["outcome"], r["status"], r["error"], r["requests"]) == (True, 1, status, 1, 1)
    assert r["sectors_done"] == 0
    assert _unchanged(image)


@pytest.mark.parametrize("op,lba,sectors", [("write", 2040, 16), ("read", 2047, 2), ("read", 5000, 1)])
def test_a_sector_past_the_end_is_ioerr(image, op, lba, sectors):
    # bdrv_check_request refuses the whole request (-EIO); werror=enospc / rerror=report both report
    # EIO: the guest gets VIRTIO_BLK_S_IOERR and not one sector is written.
    r = _run(image, op=op, lba=lba, sectors=sectors)
    assert (r["done"], r["outcome"], r["status"], r["error"]) == (True, 1, VIRTIO_BLK_S_IOERR, 1)
    assert _unchanged(image)
    if op == "read":
        # the guest's buffer still holds what the host put there before the start: nothing was read in
        assert r["read_back"] == make_pattern(0, 512 * sectors)


def test_a_write_to_a_read_only_image_is_ioerr(image):
    # the driver obeys VIRTIO_BLK_F_RO and sends nothing (test_virtio_readonly.py); a raw T_OUT request
    # (op=1) reaches the device, whose bdrv_co_do_writev says -EACCES: reported as IOERR
    with Machine(disk="virtio", image=image, readonly=True, op=1, sectors=4) as m:
        m.run()
        r = m.guest_result()
        assert (r["done"], r["status"], r["error"]) == (True, VIRTIO_BLK_S_IOERR, 1)  # -EACCES, reported
        assert r["features"] & (1 << 5)  # the device offered VIRTIO_BLK_F_RO
    with Machine(disk="virtio", image=image, readonly=True, op="write", sectors=4) as m:
        m.run()
        assert (m.guest_result()["requests"], m.guest_result()["read_only"]) == (0, 1)
    assert _unchanged(image)


def test_get_id_fills_the_serial(image):
    # VIRTIO_BLK_T_GET_ID: strncpy of the (empty) serial into the first 20 bytes of the buffer, status OK
    with Machine(disk="virtio", image=image, op=8, sectors=1) as m:
        m.run()
        r = m.guest_result()
        buf = m.read_guest(m.program.buffer_addr, 512)
        assert (r["outcome"], r["status"], r["requests"]) == (0, 0, 1)
        assert buf[:20] == bytes(20) and buf[20:] == m.pattern[20:512]
    assert _unchanged(image)


def test_bad_machine_arguments_are_named():
    with pytest.raises(VmioError, match="disk must be 'ide' or 'virtio'"):
        Machine(disk="scsi")
    with pytest.raises(VmioError, match="ioeventfd must be True or False"):
        Machine(disk="virtio", ioeventfd="yes")
    with pytest.raises(VmioError, match="unknown fault"):
        Machine(disk="virtio", fault="nope")
    with pytest.raises(VmioError, match="unknown op 'identify' for the virtio guest"):
        Machine(disk="virtio", op="identify")
    for disk in ("virtio", "ide"):  # a non-integer count is named, not a TypeError from the data pattern
        with pytest.raises(VmioError, match="sectors must be 1..256 .*not 1.5"):
            Machine(disk=disk, sectors=1.5)
    with pytest.raises(VmioError, match="10.2 stack"):  # no virtio-blk board there (yet)
        Machine(disk="virtio", stack="10.2")


@pytest.mark.parametrize("name", ["depth", "per_request", "sectors", "lba", "seed", "latency"])
def test_a_bool_is_not_taken_for_a_count(name):
    # bool is an int to Python: depth=True would silently mean one request per kick
    with pytest.raises(VmioError, match=f"^{name} must be an integer, not the bool True"):
        Machine(disk="virtio", **{name: True})
    if name not in ("depth", "per_request"):
        with pytest.raises(VmioError, match=f"^{name} must be an integer, not the bool False"):
            Machine(disk="ide", **{name: False})


def test_the_guest_rejects_a_bool_count_too():
    from vmio_edu.guest.programs import default_guest
    from vmio_edu.guest.virtio_guest import virtio_guest
    ram = bytearray(2 << 20)
    with pytest.raises(VmioError, match="^depth must be an integer, not the bool True"):
        virtio_guest().write_params(ram, op="write", sectors=1, depth=True)
    with pytest.raises(VmioError, match="^sectors must be an integer, not the bool True"):
        default_guest().write_params(ram, op="write", sectors=True)


def test_virtio_request_options_on_an_ide_machine_are_named():
    with pytest.raises(VmioError, match="depth, indirect shape the virtio guest's requests: they need disk='virtio'"):
        Machine(disk="ide", depth=2, indirect=True)
