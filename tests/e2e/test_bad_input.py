"""Bad input gets a clear error naming the problem, and the image is never corrupted."""
import os

import pytest

from vmio_edu import Machine
from vmio_edu.errors import AssemblyError, BudgetExceeded, GuestFault, ImageError
from vmio_edu.guest import assemble


def _image(tmp_path, sectors=64, fill=b"\xaa"):
    p = tmp_path / "disk.img"
    p.write_bytes(fill * 512 * sectors)
    return p


def test_bad_opcode_in_long_mode_is_a_guest_fault():
    code = assemble("nop\nud2\nhlt", mode=64)
    with Machine(code, mode=64) as m:
        with pytest.raises(GuestFault) as e:
            m.run()
    assert "fault" in str(e.value)


def test_endless_guest_hits_the_exit_budget():
    code = assemble("l: out 0x80, al\njmp l", mode=16)
    with Machine(code, mode=16, max_exits=500) as m:
        with pytest.raises(BudgetExceeded, match="500"):
            m.run()
        assert len(m.exits) >= 499


def test_missing_image(tmp_path):
    with pytest.raises(ImageError, match="nope.img"):
        Machine(image=tmp_path / "nope.img")


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(ImageError):
        Machine(image=tmp_path)


def test_lba_past_the_end_reports_error_and_writes_nothing(tmp_path):
    img = _image(tmp_path, sectors=16)
    before = img.read_bytes()
    with Machine(image=img, op="write", lba=100, sectors=1) as m:
        m.run()
        r = m.guest_result()
    assert r["status"] & 0x01 and r["error"] == 0x04  # ERR, ABRT: what QEMU answers an -EIO with
    assert img.read_bytes() == before


def test_unknown_ata_command(tmp_path):
    img = _image(tmp_path)
    before = img.read_bytes()
    with Machine(image=img, op=0x77) as m:
        m.run()
        r = m.guest_result()
    assert (r["status"], r["error"]) == (0x41, 0x04)
    assert img.read_bytes() == before


def test_read_only_image_refuses_the_write(tmp_path):
    img = _image(tmp_path)
    before = img.read_bytes()
    with Machine(image=img, op="write", lba=2, readonly=True) as m:
        m.run()
        r = m.guest_result()
    assert r["status"] & 0x01 and r["error"] == 0x04
    assert img.read_bytes() == before


def test_malformed_assembly_names_the_line():
    with pytest.raises(AssemblyError) as e:
        assemble("nop\nmov ax, 1\nmov eax, ebx, ecx\nhlt", mode=64)
    assert "3" in str(e.value) and "mov eax, ebx, ecx" in str(e.value)


def test_machine_is_closable_after_a_failure():
    code = assemble("l: out 0x80, al\njmp l", mode=16)
    m = Machine(code, mode=16, max_exits=50)
    with pytest.raises(BudgetExceeded):
        m.run()
    m.close()
    m.close()
    assert all(not t.thread.is_alive() for t in m.sched.threads)


def test_guest_spinning_without_exits_hits_the_instruction_budget():
    code = assemble("l: jmp l", mode=16)
    with Machine(code, mode=16, max_instructions=100_000) as m:
        with pytest.raises(BudgetExceeded, match="100000 instructions") as e:
            m.run()
    assert "rip=0x1000" in str(e.value)


@pytest.mark.parametrize("polling", [False, True])  # halted waiting for IRQ 14 / polling the status
def test_full_host_disk_stops_the_vm_and_run_explains_it(tmp_path, polling):
    """ENOSPC from the real pwrite (the image fd is pointed at /dev/full): QEMU 1.6.1's werror=enospc
    stops the VM; Machine.run says so instead of letting the guest continue."""
    img = _image(tmp_path)
    before = img.read_bytes()
    with Machine(image=img, op="write", lba=2, polling=polling) as m:
        full = os.open("/dev/full", os.O_RDWR)
        try:
            os.dup2(full, m.bs.file.opaque.fd)
        finally:
            os.close(full)
        with pytest.raises(ImageError, match="werror=enospc") as e:
            m.run()
        assert "ENOSPC" in str(e.value)
        assert m.state.extra["runstate"] == "io-error"
        assert not m.halted and m.exits[-1].reason != "HLT"  # stopped, not halted
    assert img.read_bytes() == before
