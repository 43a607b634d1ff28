"""Byte provenance on the virtio path: an image byte back to the guest RAM byte of its data descriptor (through
pwrite/pwritev, the merged multiwrite QEMUIOVector, the request's own qiov and the driver's kick), and a
read's byte forward into the guest's buffer; what is not followed is said so."""
import pytest

from kvm_policy import require_kvm
from vmio_edu import Machine
from vmio_edu.trace.provenance import ProvenanceError

WRITE_LAYERS = ["guest", "kvm", "qemu-virtio", "qemu-block", "host", "disk"]


def _image_byte(m, off):
    return m.image_bytes(off // 512)[off % 512]


def _chain(m, head):
    (queue,) = m.debugger().stop.views["virtqueue"]["queues"]
    return next(c["descriptors"] for c in queue["chains"] if c["head"] == head)


@pytest.mark.parametrize("engine", ["unicorn", "kvm"])
def test_a_merged_write_back_to_the_guest_buffer(engine):
    if engine == "kvm":
        require_kvm()
    # 4 requests of 2 sectors in one kick: bdrv_aio_multiwrite merges them into one 8-sector pwritev
    with Machine(disk="virtio", op="write", sectors=8, per_request=2, depth=4, ioeventfd=False,
                 engine=engine) as m:
        dbg = m.debugger()
        assert dbg.cont().reason == "halted"
        for off in (0, 0x3FF, 0x400, 0x610, 8 * 512 - 1):
            hops = dbg.provenance(image_offset=off)
            assert [h["layer"] for h in hops] == WRITE_LAYERS
            guest, kick, desc, block, host, disk = hops
            request, within = divmod(off, 1024)  # which 2-sector request, and the byte's place in it
            head = 3 * request  # each chain is header, data, status
            assert guest["addr"] == m.program.buffer_addr + off == desc["addr"]
            assert m.read_guest(guest["addr"], 1)[0] == _image_byte(m, off) == m.pattern[off]
            assert "not followed" in guest["what"] and "no guest memory stores" in guest["what"]
            data = _chain(m, head)[1]
            assert f"descriptor {data['index']} of chain {head}" in desc["what"]
            assert data["addr"] == m.program.buffer_addr + 1024 * request and desc["offset"] == within
            assert "merged by bdrv_aio_multiwrite" in block["what"] and "bdrv_aio_writev(sector 0, 8 sectors)" \
                in block["what"] and block["offset"] == off
            assert f"iovec {request} " in block["what"] and host["what"].startswith("pwritev(")
            assert host["offset"] == disk["offset"] == off
            exit_no = int(kick["what"].split("VM exit #")[1].split()[0])
            x = m.exits[exit_no]
            assert (x.direction, x.port) == ("out", 0xC010)  # VIRTIO_PCI_QUEUE_NOTIFY on BAR 0 at 0xc000
            idx = [h["index"] for h in hops]
            assert idx == sorted(idx)
        assert dbg.provenance(guest_addr=m.program.buffer_addr + 0x610) == dbg.provenance(image_offset=0x610)


def test_hops_are_moments_to_go_to():
    with Machine(disk="virtio", op="write", sectors=2, ioeventfd=False) as m:
        dbg = m.debugger()
        dbg.cont()
        off = 0x123
        guest, kick, desc, block, host, disk = dbg.provenance(image_offset=off)
        assert host["what"].startswith("pwrite(")  # one iovec: plain pwrite (handle_aiocb_rw_linear)
        assert "the request's own QEMUIOVector" in block["what"]
        stop = dbg.goto(desc["index"])
        assert stop.kind == "event"
        assert [f.function for f in stop.backtrace][:1] == ["virtio_blk_handle_request"]
        stop = dbg.goto(host["index"])
        assert (stop.function, stop.kind) == ("sys_pwrite64", "enter") and _image_byte(m, off) == 0
        stop = dbg.goto(disk["index"])
        assert (stop.function, stop.kind) == ("sys_pwrite64", "leave")
        assert _image_byte(m, off) == m.read_guest(guest["addr"], 1)[0]
        stop = dbg.goto(block["index"])
        assert stop.function == "bdrv_aio_writev" and stop.args["sector_num"] == 0


def test_a_read_forward_into_the_guest_buffer():
    with Machine(disk="virtio", op="both", lba=2, sectors=3, ioeventfd=False) as m:
        dbg = m.debugger()
        dbg.cont()
        k = 512 + 77
        off = 2 * 512 + k
        by_image = dbg.provenance(image_offset=off, op="read")
        assert [h["layer"] for h in by_image] == list(reversed(WRITE_LAYERS))
        assert by_image == dbg.provenance(guest_addr=m.program.buffer2_addr + k)
        assert by_image[-1]["addr"] == m.program.buffer2_addr + k
        assert m.read_guest(m.program.buffer2_addr + k, 1)[0] == _image_byte(m, off)
        assert "bdrv_aio_readv(sector 2, 3 sectors)" in by_image[2]["what"]
        assert "the device stores into it" in by_image[3]["what"]
        # by default an image byte of a write-then-read run is the write that put it there
        assert dbg.provenance(image_offset=off)[0]["addr"] == m.program.buffer_addr + k


@pytest.mark.parametrize("engine,said", [("unicorn", "ioeventfd_write"), ("kvm", "real KVM")])
def test_with_ioeventfd_the_kick_is_handled_in_the_kernel(engine, said):
    if engine == "kvm":
        require_kvm()
    with Machine(disk="virtio", op="write", sectors=2, ioeventfd=True, engine=engine) as m:
        dbg = m.debugger()
        dbg.cont()
        kick = dbg.provenance(image_offset=5)[1]
        assert kick["layer"] == "kvm" and said in kick["what"] and "VM exit" not in kick["what"]


def test_indirect_descriptors_name_their_table():
    with Machine(disk="virtio", op="write", sectors=2, indirect=True) as m:
        dbg = m.debugger()
        dbg.cont()
        desc = dbg.provenance(image_offset=700)[2]
        assert "descriptor 1 of chain 0 (indirect table at" in desc["what"]


def test_what_virtio_cannot_answer_is_named():
    with Machine(disk="virtio", op="write", lba=4, sectors=2) as m:
        dbg = m.debugger()
        dbg.cont()
        with pytest.raises(ProvenanceError, match="no byte passes through IDEState.io_buffer"):
            dbg.provenance(io_buffer_offset=0)
        with pytest.raises(ProvenanceError, match="image offset 0x0 .*never moved.*written sectors 4-5"):
            dbg.provenance(image_offset=0)
        with pytest.raises(ProvenanceError, match="guest address 0x30000"):
            dbg.provenance(guest_addr=0x30000)


def test_clicking_a_virtio_buffer_byte_in_the_panel_follows_it():
    from vmio_edu.widgets import DebuggerPanel
    with Machine(disk="virtio", op="write", sectors=2, ioeventfd=False) as m:
        panel = DebuggerPanel(m.debugger())
        try:
            panel.dbg.break_at("virtio_blk_req_complete")  # written, not completed: the request is still held
            panel.buttons["continue"].click()
            (region,) = panel.byte_hex["qiov"].regions
            assert region["source"] == "guest" and region["base"] == m.program.buffer_addr
            assert "guest RAM at 0x10000" in region["title"]
            panel.byte_hex["qiov"]._handle_msg({"content": {"data": {"method": "custom", "content": {
                "event": "byte", "source": "guest", "offset": m.program.buffer_addr + 10}}}, "buffers": []})
            assert "guest_addr=0x1000a" in panel.hops_title.value
            hops = [b.description for b in panel.hops.children]
            assert len(hops) == 6 and "guest" in hops[0] and "disk" in hops[-1]
        finally:
            panel.close()
