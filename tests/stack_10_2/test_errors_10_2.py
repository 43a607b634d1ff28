"""Errors on the QEMU 10.2 stack: a full host disk stops the VM (werror=enospc, still the default), an
unknown command is aborted, and both leave the image holding exactly what completed."""
import os

import pytest

from vmio_edu import Machine
from vmio_edu.errors import ImageError

SECTOR = 512


def test_a_full_host_disk_stops_the_vm_after_the_completed_sectors(emu_stack):
    m = Machine(stack=emu_stack, op="write", lba=8, sectors=4, record=True)
    fd = m.bs.root.bs.file.bs.opaque.fd  # the file node's fd, under the BlockBackend's raw node
    calls = []

    def on_enter(tp, args, ctx):
        if tp.name == "handle_aiocb_rw":
            calls.append(1)
            if len(calls) == 3:  # the third sector's pwrite meets a full disk
                full = os.open("/dev/full", os.O_WRONLY)
                os.dup2(full, fd)
                os.close(full)

    m.trace.on_enter = on_enter
    try:
        with pytest.raises(ImageError, match="QEMU v10.2.0's default werror=enospc") as e:
            m.run()
        assert "ENOSPC" in str(e.value)
        s = m.ide.bus[0].ifs[0]
        assert m.state.extra["runstate"] == "io-error" and m.bs.iostatus == "nospace"
        assert s.status == 0x50 and s.error == 0  # the guest is told nothing
        assert s.nsector == 2 and s.last_io_error["action"] == "stop" and m.ide.bus[0].error_status == 0x10
        assert m.ide.bus[0].retry_sector_num == 10  # where 'cont' would retry (ide_set_retry)
        assert not m.guest_result()["done"]
        # the two completed sectors are on disk, nothing else changed
        assert m.image_bytes(8, 2) == m.pattern[:2 * SECTOR] and m.image_changes() == [8, 9]
    finally:
        m.close()


def test_unknown_command_is_aborted(engine, stack):
    with Machine(engine=engine, stack=stack, op=0x77) as m:
        m.run()
        r = m.guest_result()
        assert (r["status"], r["error"]) == (0x41, 0x04)
        assert m.image_changes() == []
        assert "0x77" in m.ide.bus[0].ifs[0].abort_reason


def test_power_commands_complete_and_specify_sets_the_geometry(emu_stack):
    for op in (0xE0, 0x94, 0xE6):  # STANDBY IMMEDIATE, its old opcode, SLEEP: cmd_nop in 10.2's table
        with Machine(stack=emu_stack, op=op) as m:
            m.run()
            r = m.guest_result()
            assert (r["status"] & 0xC9, r["error"]) == (0x40, 0), hex(op)
    with Machine(stack=emu_stack, op=0x91, lba=0x0300_0000, sectors=17) as m:  # INITIALIZE DEVICE PARAMETERS
        m.run()
        s = m.ide.bus[0].ifs[0]
        assert (s.heads, s.sectors) == (4, 17)  # (device register & 0xf) + 1, the count register
        assert m.guest_result()["error"] == 0
