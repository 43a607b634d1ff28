"""The Virtqueue view reads a legacy vring from guest RAM: chains, rings, indices and owners (issue 14 item 5)."""
import struct

from vmio_edu.trace import virtqueue_view as VQ
from vmio_edu.widgets.render import view_html
from vmio_edu.widgets.render_virtqueue import virtqueue_html

NUM = 8


def _ram_with_two_requests(used_idx=1, last_avail=2):
    """Guest RAM holding a queue at PFN 1 with a 1-sector write (head 0) and a 1-sector read (head 3)."""
    ram = bytearray(0x10000)
    lay = VQ.vring_layout(1, NUM)

    def desc(i, addr, length, flags, nxt=0):
        struct.pack_into("<QIHH", ram, lay["desc"] + 16 * i, addr, length, flags, nxt)

    F_NEXT, F_WRITE = VQ.VRING_DESC_F_NEXT, VQ.VRING_DESC_F_WRITE
    struct.pack_into("<IIQ", ram, 0x5000, 1, 0, 5)  # VIRTIO_BLK_T_OUT, sector 5
    ram[0x5200:0x5210] = bytes(range(16))
    ram[0x5400] = 0  # written by the device: OK
    desc(0, 0x5000, 16, F_NEXT, 1)
    desc(1, 0x5200, 512, F_NEXT, 2)
    desc(2, 0x5400, 1, F_WRITE)
    struct.pack_into("<IIQ", ram, 0x6000, 0, 0, 9)  # VIRTIO_BLK_T_IN, sector 9
    desc(3, 0x6000, 16, F_NEXT, 4)
    desc(4, 0x6200, 512, F_NEXT | F_WRITE, 5)
    desc(5, 0x6400, 1, F_WRITE)
    struct.pack_into("<HH", ram, lay["avail"], 0, 2)
    struct.pack_into("<HH", ram, lay["avail"] + 4, 0, 3)
    struct.pack_into("<HH", ram, lay["used"], 0, used_idx)
    if used_idx:
        struct.pack_into("<II", ram, lay["used"] + 4, 0, 1)  # head 0 done, 1 byte written (the status)
    return ram, lay, last_avail


def _view(**kw):
    ram, lay, last = _ram_with_two_requests(**kw)
    return VQ.vring_view(ram, num=NUM, last_avail_idx=last, **lay)


def test_layout_is_the_legacy_one():
    lay = VQ.vring_layout(1, 128)
    # avail after the 128 descriptors; used at the next 4096 boundary after avail's 4 + 2 * 128 + 2 bytes
    assert lay == {"desc": 0x1000, "avail": 0x1800, "used": 0x2000}
    assert VQ.vring_layout(2, 256)["used"] == 0x2000 + 0x1000 + 0x1000  # avail ends at 0x3206


def test_chains_roles_and_owners():
    v = _view()
    assert v["avail"]["idx"] == 2 and v["used"]["idx"] == 1
    assert [e["head"] for e in v["avail"]["ring"]] == [0, 3]
    assert v["used"]["ring"] == [{"index": 0, "slot": 0, "id": 0, "len": 1, "state": "used"}]
    write, read = v["chains"]
    assert [d["index"] for d in write["descriptors"]] == [0, 1, 2]
    assert [d["role"] for d in write["descriptors"]] == ["header", "data", "status"]
    hdr, data, status = write["descriptors"]
    assert hdr["header"] == {"type": 1, "type_name": "VIRTIO_BLK_T_OUT", "ioprio": 0, "sector": 5}
    assert (hdr["addr"], hdr["len"], hdr["flags_set"], hdr["next"]) == (0x5000, 16, ["NEXT"], 1)
    assert data["bytes"] == bytes(range(8)).hex() and data["writer"] == "driver"
    assert status["flags_set"] == ["WRITE"] and status["writer"] == "device" and status["next"] is None
    assert status["status"] == 0 and status["status_name"] == "VIRTIO_BLK_S_OK"
    # completed: the driver's again; the read is still running: the device's
    assert (write["state"], write["owner"]) == ("used", "driver")
    assert (read["state"], read["owner"]) == ("in flight", "device")
    assert read["descriptors"][1]["writer"] == "device"  # a read's data buffer is written by the device
    assert v["device"]["in_flight"] == [3]


def test_not_yet_popped_is_available():
    v = _view(used_idx=0, last_avail=1)
    assert [c["state"] for c in v["chains"]] == ["in flight", "available"]
    assert all(c["owner"] == "device" for c in v["chains"])
    assert "pending" in v["chains"][0]["descriptors"][2]["status_name"]


def test_bad_chains_are_named_not_followed():
    ram, lay, _ = _ram_with_two_requests()
    struct.pack_into("<QIHH", ram, lay["desc"] + 16 * 2, 0x5400, 1, 3, 0)  # status NEXT → back to 0: a loop
    struct.pack_into("<QIHH", ram, lay["desc"] + 16 * 4, 0x6200, 512, 3, 200)  # next past the table
    v = VQ.vring_view(ram, num=NUM, **lay)
    assert v["chains"][0]["problem"] == "the chain loops back to descriptor 0"
    assert v["chains"][1]["problem"] == f"descriptor index 200 is past the table ({NUM} entries)"
    outside = VQ.vring_view(ram, num=NUM, desc=0xFFF0, avail=lay["avail"], used=lay["used"])
    assert outside["error"] == "the queue's rings are not inside guest RAM"


def test_html_marks_what_changed_since_the_previous_stop():
    before = _view(used_idx=0, last_avail=1)
    after = _view(used_idx=1, last_avail=2)
    html = virtqueue_html(after, before)
    assert "VIRTIO_BLK_T_OUT" in html and "0x5000" in html and "in flight" in html
    # used.idx went 0 -> 1 and the write's chain went from the device to the driver: both marked
    assert '<code class="vmio-changed">1</code> (device: next slot it fills' in html
    assert '<code class="vmio-changed">used</code>' in html
    assert "vmio-changed" not in virtqueue_html(after, after)
    page = view_html("virtqueue", {"present": True, "queues": [after]}, {"present": True, "queues": [before]})
    assert "changed since the previous stop" in page and "queues.0.used.idx" in page


def test_ide_machine_has_no_virtqueue():
    from vmio_edu import Machine
    m = Machine(op="write", sectors=1)
    try:
        dbg = m.debugger()
        dbg.break_at("ide_sector_write")
        stop = dbg.cont()
        v = stop.views["virtqueue"]
        assert v["present"] is False and "IDE" in v["note"]
        assert "no virtqueue" in view_html("virtqueue", v)
    finally:
        m.close()


def test_event_idx_words_after_the_rings():
    ram, lay, last = _ram_with_two_requests()
    struct.pack_into("<H", ram, lay["avail"] + 4 + 2 * NUM, 1)  # used_event
    struct.pack_into("<H", ram, lay["used"] + 4 + 8 * NUM, 2)  # avail_event
    v = VQ.vring_view(ram, num=NUM, last_avail_idx=last, event_idx=True, **lay)
    assert v["avail"]["used_event"] == 1 and v["used"]["avail_event"] == 2
    assert "used_event" not in VQ.vring_view(ram, num=NUM, **lay)["avail"]  # not negotiated: not shown
    assert "avail_event" in virtqueue_html(v) and "interrupt me once used.idx passes it" in virtqueue_html(v)


def test_an_indirect_descriptor_opens_its_table():
    ram, lay, last = _ram_with_two_requests()
    # head 6: one INDIRECT descriptor pointing at a 3-entry table at 0x7000 (header, data, status)
    struct.pack_into("<QIHH", ram, lay["desc"] + 16 * 6, 0x7000, 48, VQ.VRING_DESC_F_INDIRECT, 0)
    struct.pack_into("<IIQ", ram, 0x7100, 1, 0, 42)
    struct.pack_into("<QIHH", ram, 0x7000, 0x7100, 16, VQ.VRING_DESC_F_NEXT, 1)
    struct.pack_into("<QIHH", ram, 0x7010, 0x7200, 512, VQ.VRING_DESC_F_NEXT, 2)
    struct.pack_into("<QIHH", ram, 0x7020, 0x7400, 1, VQ.VRING_DESC_F_WRITE, 0)
    struct.pack_into("<HH", ram, lay["avail"], 0, 3)
    struct.pack_into("<H", ram, lay["avail"] + 4 + 4, 6)
    v = VQ.vring_view(ram, num=NUM, last_avail_idx=3, **lay)
    chain = v["chains"][-1]
    outer, *inner = chain["descriptors"]
    assert outer["role"] == "indirect table" and outer["flags_set"] == ["INDIRECT"] and outer["index"] == 6
    assert [d["role"] for d in inner] == ["header", "data", "status"] and all(d["in_table"] == 6 for d in inner)
    assert inner[0]["header"]["sector"] == 42 and inner[2]["writer"] == "device"
    html = virtqueue_html(v)
    assert "6[0]" in html and "3 descriptors" in html
    struct.pack_into("<QIHH", ram, 0x7020, 0x7400, 1, VQ.VRING_DESC_F_WRITE | VQ.VRING_DESC_F_NEXT, 0)  # a loop
    assert VQ.vring_view(ram, num=NUM, last_avail_idx=3, **lay)["chains"][-1]["problem"] == \
        "the chain loops back to descriptor 0"
