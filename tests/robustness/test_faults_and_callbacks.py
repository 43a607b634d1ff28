"""A guest that faults or never ends (on both engines), learner code that raises inside the model, and a
machine used after close. After each: a clear vmio_edu error, the machine closes, no model thread and no
file descriptor is left behind, and the image holds exactly the completed writes.

Already covered elsewhere (see docs/robustness.md): emulated-engine faults and budgets in
tests/e2e/test_bad_input.py, a raising breakpoint condition in tests/debugger/test_api.py, student
exercise code that raises in tests/grading/test_wrong_answers.py.
"""
import pytest

from robustness_helpers import (assert_closed_cleanly, assert_image_matches, ata_command_asm, open_fds,
                                pattern)
from vmio_edu import Machine
from vmio_edu.errors import BudgetExceeded, GuestFault, VmioError
from vmio_edu.guest import assemble

SECTOR = 512
BUF = 0x4000
LBA = 7


@pytest.fixture
def fresh_fds(engine):
    """The fd set after one machine of this engine has been made and closed (first-use caches settled)."""
    Machine(assemble("hlt", mode=32), mode=32, engine=engine).close()
    return open_fds()


# A 32-bit guest: WRITE SECTORS of one sector at LBA 7, polling (nIEN), then maybe wait for completion,
# then ud2. With no IDT the #UD becomes #GP, #DF and a triple fault (KVM_EXIT_SHUTDOWN) on both engines.
def _write_then_fault(wait_for_completion: bool) -> bytes:
    wait = """
    mov dx, 0x1f7
wait_done:
    in al, dx
    test al, 0x80
    jnz wait_done
""" if wait_for_completion else ""
    return assemble(f"""
    cli
    mov dx, 0x3f6
    mov al, 0x0a
    out dx, al
{ata_command_asm(0x30, LBA)}
wait_drq:
    in al, dx
    test al, 0x08
    jz wait_drq
    mov esi, {BUF}
    mov ecx, 256
    mov dx, 0x1f0
    rep outsw
{wait}
    ud2
""", mode=32)


@pytest.mark.parametrize("wait", [True, False], ids=["after-completion", "write-in-flight"])
def test_guest_fault_after_a_write(disk, pwrite_log, engine, fresh_fds, wait):
    """The fault ends the run with GuestFault. A write the guest waited for is on disk. One the guest had
    only handed over (BSY, request queued in the thread pool) when it faulted may or may not have reached
    its pwrite (in the model today it has: the pool worker runs once the vCPU thread is gone); either way
    the image holds exactly the completed pwrites, and close() starts nothing new."""
    data = pattern(5, SECTOR)
    m = Machine(_write_then_fault(wait), mode=32, image=disk.path, engine=engine)
    m.ram[BUF:BUF + SECTOR] = data
    fd = m.bs.file.opaque.fd
    with pytest.raises(GuestFault, match="triple fault") as e:
        m.run()
    assert "KVM_EXIT_SHUTDOWN" in str(e.value)
    m.close()
    assert_closed_cleanly(m, fresh_fds)
    done = pwrite_log.completed(fd)
    if wait:
        assert done == [(LBA, data)]
    else:
        assert done in ([], [(LBA, data)])
    assert_image_matches(disk, disk.reference, done)


def test_endless_guest_without_exits(engine, fresh_fds):
    """`jmp $`: the emulated engine counts instructions per KVM_RUN, the real one the time without an exit."""
    m = Machine(assemble("l: jmp l", mode=32), mode=32, engine=engine, max_instructions=200_000,
                max_spin_seconds=0.3)
    with pytest.raises(BudgetExceeded, match="loop forever"):
        m.run()
    m.close()
    assert_closed_cleanly(m, fresh_fds)


def test_endless_guest_with_exits(engine, fresh_fds):
    m = Machine(assemble("l: out 0x80, al\njmp l", mode=32), mode=32, engine=engine, max_exits=300)
    with pytest.raises(BudgetExceeded, match="300 VM exits"):
        m.run()
    assert len(m.exits) == 300
    m.close()
    assert_closed_cleanly(m, fresh_fds)


def test_learner_code_raising_inside_the_model(disk, pwrite_log, monkeypatch):
    """A learner's own kvm_handle_io (as the exercises plug in) that raises on the first status poll after the
    data went out: run() raises GuestFault naming the exception; the machine closes cleanly."""
    import vmio_edu.qemu.kvm_all as kvm_all
    real = kvm_all.kvm_handle_io
    words = []

    def learner_kvm_handle_io(cpu, port, data_offset, direction, size, count):
        if port == 0x1F0:
            words.append(count)
        if port == 0x1F7 and direction == 0 and len(words) == 256:
            raise ZeroDivisionError("my bug")
        return real(cpu, port, data_offset, direction, size, count)

    monkeypatch.setattr(kvm_all, "kvm_handle_io", learner_kvm_handle_io)
    fds = open_fds()
    m = Machine(image=disk.path, op="write", lba=LBA, sectors=2, polling=True)
    fd = m.bs.file.opaque.fd
    with pytest.raises(GuestFault, match="the model failed: ZeroDivisionError: my bug") as e:
        m.run()
    assert isinstance(e.value.__cause__, ZeroDivisionError)
    m.close()
    assert_closed_cleanly(m, fds)
    done = pwrite_log.completed(fd)
    assert [s for s, _ in done] in ([], [LBA])  # the first sector at most: the second never went out
    assert_image_matches(disk, disk.reference, done)


def test_a_closed_machine_says_so(disk):
    m = Machine(image=disk.path, op="write", lba=2)
    m.run()
    m.close()
    for call in (m.run, m.debugger, m.guest_result, lambda: m.read_guest(0, 4)):
        with pytest.raises(VmioError, match="closed"):
            call()
    m.close()  # harmless
    assert m.image_changes() == [2]  # a user's image stays readable after close
    tmp = Machine(op="write", lba=2)
    tmp.run()
    tmp.close()
    with pytest.raises(VmioError, match="closed.*temporary image"):
        tmp.image_changes()
