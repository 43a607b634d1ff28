"""Issue 3: the emulated engine and the real /dev/kvm agree, exit by exit, on what userspace can see.

Where Linux 3.7 (which the emulated engine models) and this machine's kernel differ, the test names it.
"""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kvm_streams
from vmio_edu import Machine
from vmio_edu.cli import first_divergence, main
from vmio_edu.guest import assemble
from vmio_edu.qemu.hw.misc.vmio_echo import VMIO_ECHO_BASE, VMIO_ECHO_ID

pytestmark = pytest.mark.usefixtures("need_kvm")


def _run(engine, guest=None, **kw):
    with Machine(guest, engine=engine, **kw) as m:
        m.run()
        return m.exits, m.image_bytes(0, 64), m.guest_result()


def _assert_same(a, b):
    i = first_divergence(a, b)
    assert i is None, f"first divergence at exit {i}: unicorn {a[i] if i < len(a) else None} " \
                      f"vs kvm {b[i] if i < len(b) else None}"
    # RIP and RCX at each exit agree as well (this kernel matches Linux 3.7 for PIO, see README)
    assert [(x.rip, x.rcx) for x in a] == [(x.rip, x.rcx) for x in b]


@pytest.mark.parametrize("polling", [False, True])
def test_default_guest_write_then_read(polling):
    kw = dict(op="both", lba=5, sectors=2, seed=3, polling=polling)
    emu, real = _run("unicorn", **kw), _run("kvm", **kw)
    _assert_same(emu[0], real[0])
    assert len(emu[0]) > 2 * 256  # 256 word exits per sector written, plus the taskfile and polls
    assert emu[1] == real[1]  # the disk images hold the same bytes
    assert emu[2] == real[2]  # and the guest saw the same results


def test_unknown_command_and_identify():
    for op in (0x77, "identify"):
        emu, real = _run("unicorn", op=op), _run("kvm", op=op)
        _assert_same(emu[0], real[0])


def _pio_program(ops):
    lines = ["mov ax, 0x3000", "mov es, ax", "mov ds, ax", "cld"]
    for kind, size, port, n, imm in ops:
        reg = {1: "al", 2: "ax", 4: "eax"}[size]
        suffix = {1: "b", 2: "w", 4: "d"}[size]
        if kind == "out":
            lines.append(f"mov {reg}, {0x11 * (n % 15 + 1)}")
            lines.append(f"out {port:#x}, {reg}" if imm else f"mov dx, {port:#x}\nout dx, {reg}")
        elif kind == "in":
            lines.append(f"in {reg}, {port:#x}" if imm else f"mov dx, {port:#x}\nin {reg}, dx")
        else:  # rep outs / rep ins from offset 0 of segment 0x3000
            lines += [f"mov dx, {port:#x}", f"mov cx, {n}", "mov si, 0", "mov di, 0"]
            lines.append(f"rep {'outs' if kind == 'outs' else 'ins'}{suffix}")
    lines += ["cli", "hlt"]
    return assemble("\n".join(lines), mode=16)


PORTS = st.sampled_from([0x80, 0x300, 0x310, 0x1F7])  # unassigned ports, and the IDE status register
OP = st.tuples(st.sampled_from(["out", "in", "outs", "ins"]), st.sampled_from([1, 2, 4]), PORTS,
               st.integers(0, 2000), st.booleans())


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(st.lists(OP, min_size=1, max_size=4))
def test_random_straight_line_programs(ops):
    # Every rep ins starts at offset 0, so its 1024-byte batches end on page boundaries, where Linux 3.7
    # and today's kernel agree; the case where they differ is the named test below.
    ops = [(k, s, p, n, imm and p <= 0xFF) for k, s, p, n, imm in ops]
    code = _pio_program(ops)
    _assert_same(_run("unicorn", code, mode=16)[0], _run("kvm", code, mode=16)[0])


def test_rep_insw_across_a_page_is_a_named_difference():
    """Linux 3.7 stops a `rep ins` batch at the page end (emulate.c:1286-1296); the kernel on this machine
    does not (L6.12 emulate.c:1438). 256 words at page offset 0xf00: 3.7 gives 128 + 128, today 256."""
    code = assemble("mov ax, 0x3000\nmov es, ax\nmov dx, 0x300\nmov cx, 256\nmov di, 0x0f00\nrep insw\n"
                    "cli\nhlt", mode=16)
    emu = [x.count for x in _run("unicorn", code, mode=16)[0] if x.reason == "IO"]
    real = [x.count for x in _run("kvm", code, mode=16)[0] if x.reason == "IO"]
    assert emu == [128, 128]
    # The host's batching is its property, detected (tests/kvm_streams.py), not assumed: a 3.7-like kernel
    # stops at the page end too; a 6.x one counts the room in bytes and uses it as elements.
    facts = kvm_streams.probe_host_facts("kvm")
    assert real == {"page-end": [128, 128], "bytes-as-elements": [256]}[facts["rep_ins_page_batch"]]


def test_mmio_echo_device_on_both_engines():
    code = assemble(f"""
        mov rbx, {VMIO_ECHO_BASE:#x}
        mov eax, dword ptr [rbx]
        mov dword ptr [rbx + 4], 0x12345678
        mov ecx, dword ptr [rbx + 0xc]
        mov edx, dword ptr [rbx + 8]
        mov byte ptr [rbx + 5], 0xff
        mov esi, dword ptr [rbx + 4]
        cli
        hlt""", mode=64)
    emu, real = _run("unicorn", code, mode=64)[0], _run("kvm", code, mode=64)[0]
    _assert_same(emu, real)
    mmio = [x for x in emu if x.reason == "MMIO"]
    assert [(x.phys_addr - VMIO_ECHO_BASE, x.size, x.is_write) for x in mmio] == [
        (0, 4, False), (4, 4, True), (0xC, 4, False), (8, 4, False), (5, 1, True), (4, 4, False)]
    assert int.from_bytes(bytes.fromhex(mmio[0].data), "little") == VMIO_ECHO_ID
    assert int.from_bytes(bytes.fromhex(mmio[2].data), "little") == 0xEDCBA987
    assert int.from_bytes(bytes.fromhex(mmio[3].data), "little") == 4
    assert int.from_bytes(bytes.fromhex(mmio[5].data), "little") == 0x1234FF78


def test_pic_ports_never_reach_userspace_on_either_engine():
    code = assemble("""
        mov al, 0x11
        out 0x20, al
        out 0xa0, al
        mov al, 0x20
        out 0x21, al
        mov al, 0x28
        out 0xa1, al
        mov al, 4
        out 0x21, al
        mov al, 2
        out 0xa1, al
        mov al, 1
        out 0x21, al
        out 0xa1, al
        mov al, 0xfb
        out 0x21, al
        in al, 0x21
        out 0x80, al
        cli
        hlt""", mode=16)
    for engine in ("unicorn", "kvm"):
        exits = _run(engine, code, mode=16)[0]
        assert [(x.reason, x.port) for x in exits] == [("IO", 0x80), ("HLT", None)], engine
        assert exits[0].data == "fb"  # the in-kernel PIC kept the mask the guest wrote


def test_compare_command_reports_identical(capsys):
    assert main(["compare", "--op", "write", "--lba", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("identical: ") and "us per exit" in out
