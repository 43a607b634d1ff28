"""Byte provenance on the QEMU 10.2 stack: one byte from the guest's buffer through the exit, kvm_run,
IDE's io_buffer, the QEMUIOVector and the pwrite to the image, and back by pread (10.2's kvm_handle_io
hands each element to address_space_rw; there is no cpu_outw)."""
from vmio_edu import Machine
from vmio_edu.guest.programs import BUFFER2_ADDR, BUFFER_ADDR


def test_a_byte_there_and_back(engine, stack):
    with Machine(engine=engine, stack=stack, op="both", lba=7, sectors=3) as m:
        dbg = m.debugger()
        assert dbg.cont().reason == "halted"
        k = 700
        hops = dbg.provenance(image_offset=7 * 512 + k)
        assert [h["layer"] for h in hops][2:] == ["kvm_run", "qemu-ide", "qemu-block", "host", "disk"]
        assert hops[0]["layer"] == "guest" and hops[0]["addr"] == BUFFER_ADDR + k
        assert hops[3]["offset"] == k % 512 and "ide_data_writew" in hops[3]["what"]
        assert hops[-1]["offset"] == 7 * 512 + k
        back = dbg.provenance(guest_addr=BUFFER2_ADDR + k)
        assert back[0]["layer"] == "disk" and back[0]["offset"] == 7 * 512 + k
        assert back[-1]["layer"] == "guest" and back[-1]["addr"] == BUFFER2_ADDR + k
        assert "element 94 of 256" in back[-2]["what"]  # (k % 512) // 2 of the sector's rep insw
        stop = dbg.goto(hops[3]["index"])  # every hop is a moment to go to: here, inside ide_data_writew
        assert stop.index == hops[3]["index"] and stop.backtrace[0].function == "ide_data_writew"
