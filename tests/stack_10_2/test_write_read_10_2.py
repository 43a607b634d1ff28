"""QEMU 10.2's path moves the guest's bytes exactly: writes land at LBA*512 in the raw image, reads bring
them back into guest memory, for 1 to 256 sectors, on both engines; and the guest cannot tell the two QEMU
versions apart, except by IDENTIFY's firmware revision."""
import pytest

from vmio_edu import Machine
from vmio_edu.machine import SECTOR
from vmio_edu.trace.tracepoint import REGISTRY


@pytest.mark.parametrize("sectors", [1, 2, 64, 256])
def test_write_then_read_is_byte_exact(engine, stack, sectors):
    lba = 5
    with Machine(engine=engine, stack=stack, op="both", lba=lba, sectors=sectors, seed=sectors) as m:
        assert m.stack.qemu == "QEMU v10.2.0"
        m.run()
        r = m.guest_result()
        assert r["error"] == 0 and r["outcome"] == 0 and r["sectors_done"] == 2 * sectors
        assert m.image_bytes(lba, sectors) == m.pattern[:sectors * SECTOR]
        assert m.image_changes() == list(range(lba, lba + sectors))
        assert r["read_back"] == m.pattern[:sectors * SECTOR]


def test_the_run_went_through_qemu_10_2_functions(emu_stack):
    with Machine(stack=emu_stack, op="both", sectors=1, record=True) as m:
        m.run()
        entered = {REGISTRY[e.what].name for e in m.trace.events if e.kind == 0 and REGISTRY[e.what].stack == "10.2"}
        assert {"blk_aio_pwritev", "blk_aio_preadv", "raw_co_prw", "handle_aiocb_rw", "flatview_write_continue_step",
                "ide_bus_set_irq", "thread_pool_submit_co", "kvm_vcpu_thread_fn", "bql_lock_impl"} <= entered
        old = {REGISTRY[e.what].name for e in m.trace.events
               if e.kind == 0 and REGISTRY[e.what].stack == "1.6.1" and REGISTRY[e.what].side == "qemu"}
        assert not old & {"bdrv_aio_writev", "paio_submit", "aio_worker", "cpu_outw", "io_mem_write"}


def test_a_write_past_the_end_is_aborted_before_the_block_layer(emu_stack):
    # 10.2 checks the range in IDE (ide_sect_range_ok): ABRT, and no request reaches the BlockBackend
    with Machine(stack=emu_stack, op="write", lba=2047, sectors=2, record=True) as m:
        m.run()
        r = m.guest_result()
        assert r["error"] == 0x04 and r["status"] & 0x01
        assert m.image_bytes(2047) == m.expected_sectors()[2047]  # the first sector was in range
        names = [REGISTRY[e.what].name for e in m.trace.events if e.kind == 0]
        assert names.count("blk_aio_pwritev") == 1 and "ide_rw_error" in names


@pytest.mark.parametrize("op,polling", [("both", False), ("write", True), ("identify", False)])
def test_the_guest_sees_the_same_exits_as_on_qemu_1_6_1(engine, stack, op, polling):
    kw = dict(engine=engine, op=op, lba=9, sectors=3, polling=polling)
    with Machine(stack=stack, **kw) as new, Machine(**kw) as old:
        new.run()
        old.run()
        a, b = [x.key() for x in new.exits], [x.key() for x in old.exits]
        assert len(a) == len(b)
        differ = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
        if op != "identify":
            assert differ == []
            if polling:  # DRQ after the command, BSY while the pool writes, then done (as reference §3 saw)
                st = [int(x[5], 16) for x in a if x[0] == "IO" and x[1] == "in" and x[3] in (0x1F7, 0x3F6)]
                assert 0x58 in st and 0xD0 in st and st[-1] == 0x50
        else:
            # IDENTIFY's words 23-26, the firmware revision: qemu_hw_version() "2.5+" in 10.2, "1.6.1" then
            assert len(differ) == 1
            i = differ[0]
            wa, wb = bytes.fromhex(a[i][5]), bytes.fromhex(b[i][5])
            assert [w for w in range(256) if wa[2 * w:2 * w + 2] != wb[2 * w:2 * w + 2]] == [23, 24, 25]
            def ata_string(w: bytes) -> bytes:  # ATA strings store each pair of characters swapped
                return bytes(w[k ^ 1] for k in range(len(w)))
            assert ata_string(wa[46:54]) == b"2.5+    " and ata_string(wb[46:54]) == b"1.6.1   "


def test_a_read_only_disk_is_refused_with_the_reason(emu_stack, tmp_path):
    from vmio_edu.errors import ImageError
    img = tmp_path / "ro.img"
    img.write_bytes(bytes(1 << 20))
    with pytest.raises(ImageError, match="Can't use a read-only drive"):
        Machine(stack=emu_stack, image=img, readonly=True)
    assert img.read_bytes() == bytes(1 << 20)
    with Machine(image=img, readonly=True, op="read") as m:  # 1.6.1 took it
        m.run()
        assert m.guest_result()["error"] == 0


def test_an_image_in_another_format_is_refused(emu_stack, tmp_path):
    from vmio_edu.errors import ImageError
    img = tmp_path / "q.img"
    img.write_bytes(b"QFI\xfb" + bytes((1 << 20) - 4))
    with pytest.raises(ImageError, match="qcow2"):
        Machine(stack=emu_stack, image=img)


def test_a_probed_raw_image_refuses_a_format_header_in_sector_0(emu_stack):
    # raw-format.c: writing another format's magic into sector 0 of a probed raw image gets -EPERM, which
    # IDE reports (rerror/werror=report for EPERM under werror=enospc): ABRT
    from vmio_edu.guest import default_guest
    with Machine(stack=emu_stack, op="write", lba=0, sectors=1) as m:
        m.pattern = b"QFI\xfb" + m.pattern[4:]
        default_guest().write_params(m.ram, op="write", lba=0, sectors=1, polling=False, data=m.pattern)
        m.run()
        r = m.guest_result()
        assert r["error"] == 0x04 and r["status"] & 0x01
        assert m.image_bytes(0) == bytes(512)


def test_an_outw_to_0x1f1_is_two_byte_writes_in_10_2(emu_stack):
    # 10.2's IDE data entries have len 1 (hw/ide/core.c:86), so portio_write splits a word at 0x1f1 into
    # bytes for 0x1f1 (features) and 0x1f2 (sector count); 1.6.1 handed it whole to ide_data_writew.
    from vmio_edu.guest.assembler import assemble
    code = assemble("mov dx, 0x1f1\nmov ax, 0x0305\nout dx, ax\nhlt", 16)
    names = {}
    for stack in (emu_stack, "1.6.1"):
        with Machine(code, mode=16, stack=stack, record=True) as m:
            m.run()
            names[getattr(stack, "name", stack)] = [
                (REGISTRY[e.what].name, e.payload) for e in m.trace.events
                if e.kind == 0 and REGISTRY[e.what].name in ("ide_ioport_write", "ide_data_writew")]
            if getattr(stack, "name", stack) == "10.2":
                s = m.ide.bus[0].ifs[0]
                assert (s.feature, s.nsector) == (0x05, 0x03)
    assert [n for n, _ in names["10.2"]] == ["ide_ioport_write", "ide_ioport_write"]
    assert [n for n, _ in names["1.6.1"]] == ["ide_data_writew"]
