"""The default guest's logic, run on raw Unicorn with an in-test ATA stand-in (see guest_harness.py).

These check the guest program only: its port accesses, their order and its result block. The real I/O
path (exits, kvm_run, QEMU's IDE model) is tested elsewhere.
"""
from __future__ import annotations

import random
import struct

import pytest
from unicorn import x86_const as X

from guest_harness import DRDY, DSC, ERR, IDNF, ABRT, AtaStandIn, GuestMachine, identify_block
from vmio_edu.guest import assemble, default_guest
from vmio_edu.guest.programs import (BUFFER2_ADDR, BUFFER_ADDR, DONE_MAGIC, NO_VECTOR, OP_IDENTIFY, OP_RAW,
                                     OP_READ, OP_WRITE, OP_WRITE_READ, OUTCOME_BAD_PARAMS, OUTCOME_DEVICE_ERROR,
                                     OUTCOME_OK, OUTCOME_PROTOCOL, PARAMS_ADDR, RESULT_ADDR, GuestParams,
                                     GuestResult, parse_equ)

PIC_INIT = [(0x21, 0xFF), (0xA1, 0xFF),
            (0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01),
            (0xA0, 0x11), (0xA1, 0x28), (0xA1, 0x02), (0xA1, 0x01),
            (0x21, 0xFB), (0xA1, 0xBF)]
EOI_PAIR = [(0xA0, 0x20), (0x20, 0x20)]


def pattern(n_sectors: int, seed: int) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.randrange(256) for _ in range(512 * n_sectors))


def words(data: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(data) // 2}H", data))


def ata_outs_before_data(ata: AtaStandIn):
    """The byte OUTs to the ATA registers up to the first data word: the taskfile and the command."""
    out = []
    for d, p, s, v in ata.log:
        if p == 0x1F0:
            break
        if d == "out" and (0x1F1 <= p <= 0x1F7 or p == 0x3F6):
            out.append((p, v))
    return out


# -- the program itself -------------------------------------------------------------------------------
def test_program_description_matches_its_source():
    prog = default_guest()
    assert (prog.mode, prog.load_addr, prog.entry) == (64, 0x1000, 0x1000)
    sym = parse_equ(prog.source)
    assert sym["PARAMS"] == PARAMS_ADDR and sym["RESULT"] == RESULT_ADDR
    assert prog.symbols == sym
    assert (prog.params_addr, prog.result_addr, prog.buffer_addr, prog.buffer2_addr) == \
        (PARAMS_ADDR, RESULT_ADDR, BUFFER_ADDR, BUFFER2_ADDR) == (0x9000, 0x9100, 0x10000, 0x30000)
    assert prog.load == prog.load_addr and prog.code == prog.assemble()
    code = prog.assemble()
    assert code == assemble(prog.source, 64, 0x1000) and 0 < len(code) < PARAMS_ADDR - 0x1000 - 0x1000
    # The parameter block the host writes lands where the guest reads it.
    packed = GuestParams(op=OP_WRITE_READ, lba=0x0ABCDEF, count=256, polling=True, command=0x77).pack()
    assert struct.unpack_from("<IIII", packed, 0) == (3, 0x0ABCDEF, 256, 1)
    assert struct.unpack_from("<QQI", packed, 0x10) == (BUFFER_ADDR, BUFFER2_ADDR, 0x77)


# -- polling mode -------------------------------------------------------------------------------------
@pytest.mark.parametrize("count", [1, 3])
def test_polling_write_sends_256_words_per_sector_from_the_buffer(count):
    m = GuestMachine()
    data = pattern(count, seed=count)
    r = m.start(GuestParams(op=OP_WRITE, lba=5, count=count, polling=True), data)
    assert (r.done, r.outcome, r.sectors, r.irqs, r.vector) == (True, OUTCOME_OK, count, 0, NO_VECTOR)
    assert r.status == DRDY | DSC
    assert m.ata.data_words("out") == words(data)            # exactly 256 words a sector, in order
    assert not m.ata.data_words("in")
    assert m.ata.disk[5 * 512:(5 + count) * 512] == data
    assert m.ata.disk[:5 * 512] == bytes(5 * 512)
    # libata's order: device control (nIEN set: polling), select, nsect, LBA low/mid/high, command.
    assert ata_outs_before_data(m.ata) == [(0x3F6, 0x0A), (0x1F6, 0xE0), (0x1F2, count),
                                           (0x1F3, 5), (0x1F4, 0), (0x1F5, 0), (0x1F7, 0x30)]
    assert m.delivered == []                                  # no interrupt of any kind


def test_polling_write_reads_status_between_sectors():
    m = GuestMachine()
    m.start(GuestParams(op=OP_WRITE, count=2, polling=True), pattern(2, 7))
    kinds = []
    for d, p, s, v in m.ata.log:
        kind = "data" if p == 0x1F0 else ("status" if (d, p) == ("in", 0x1F7) else None)
        if kind and (not kinds or kinds[-1] != kind):
            kinds.append(kind)
    # status until DRQ, sector, status (BSY clear + DRQ), sector, status (done)
    assert kinds == ["status", "data", "status", "data", "status"]


@pytest.mark.parametrize("count", [1, 2])
def test_polling_read_fills_the_buffer(count):
    ata = AtaStandIn()
    disk = pattern(count, seed=100 + count)
    ata.disk[9 * 512:(9 + count) * 512] = disk
    m = GuestMachine(ata)
    r = m.start(GuestParams(op=OP_READ, lba=9, count=count, polling=True))
    assert (r.done, r.outcome, r.sectors, r.irqs) == (True, OUTCOME_OK, count, 0)
    assert m.mem(BUFFER_ADDR, 512 * count) == disk
    assert m.mem(BUFFER_ADDR + 512 * count, 512) == bytes(512)   # nothing past the request
    assert len(m.ata.data_words("in")) == 256 * count
    assert ata_outs_before_data(m.ata)[-1] == (0x1F7, 0x20)
    assert r.status == DRDY | DSC                                # ata_wait_idle saw BSY and DRQ clear


def test_lba_high_bits_and_count_256_as_zero():
    m = GuestMachine(AtaStandIn(sectors=1))
    lba = 0x0A1B2C3D
    r = m.start(GuestParams(op=OP_READ, lba=lba, count=256, polling=True))
    assert ata_outs_before_data(m.ata)[:7] == [(0x3F6, 0x0A), (0x1F6, 0xEA), (0x1F2, 0x00),
                                               (0x1F3, 0x3D), (0x1F4, 0x2C), (0x1F5, 0x1B), (0x1F7, 0x20)]
    # The stand-in has one sector only: IDNF on the command, seen at the first status check.
    assert (r.outcome, r.status, r.error, r.sectors) == (OUTCOME_DEVICE_ERROR, DRDY | ERR, IDNF, 0)


def test_write_then_read_back_polling():
    m = GuestMachine()
    data = pattern(2, 42)
    r = m.start(GuestParams(op=OP_WRITE_READ, lba=1, count=2, polling=True), data)
    assert (r.done, r.outcome, r.sectors) == (True, OUTCOME_OK, 4)
    assert m.mem(BUFFER2_ADDR, 1024) == data
    commands = [v for p, v in m.ata.outs(0x1F7)]
    assert commands == [0x30, 0x20]


def test_identify_polling():
    m = GuestMachine()
    r = m.start(GuestParams(op=OP_IDENTIFY, polling=True))
    assert (r.outcome, r.sectors) == (OUTCOME_OK, 1)
    assert m.mem(BUFFER_ADDR, 512) == identify_block()
    assert ata_outs_before_data(m.ata)[-1] == (0x1F7, 0xEC)


def test_pic_receives_the_icw_sequence_first():
    m = GuestMachine()
    m.start(GuestParams(op=OP_WRITE, polling=True), pattern(1, 1))
    pic = m.ata.outs(0x20, 0x21, 0xA0, 0xA1)
    assert pic == PIC_INIT                       # and nothing else: polling mode takes no interrupt
    first_ata = next(i for i, e in enumerate(m.ata.log) if e[1] in (0x1F0, 0x1F7, 0x3F6, 0x1F6))
    last_pic = max(i for i, e in enumerate(m.ata.log) if e[1] in (0x20, 0x21, 0xA0, 0xA1))
    assert last_pic < first_ata


# -- errors -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("polling", [True, False])
def test_unknown_raw_command_aborts(polling):
    m = GuestMachine()
    r = m.start(GuestParams(op=OP_RAW, command=0x77, polling=polling))
    assert (r.done, r.outcome, r.status, r.error) == (True, OUTCOME_DEVICE_ERROR, DRDY | ERR, ABRT)
    assert r.irqs == (0 if polling else 1)
    assert [v for p, v in m.ata.outs(0x1F7)] == [0x77]
    assert ("in", 0x1F1, 1, ABRT) in m.ata.log                  # the error register was read


@pytest.mark.parametrize("polling", [True, False])
def test_error_after_a_data_block_stops_the_transfer(polling):
    # The disk ends after sector 1: writing 3 sectors from LBA 0 fails once sector 1 is stored.
    m = GuestMachine(AtaStandIn(sectors=2))
    data = pattern(3, 3)
    r = m.start(GuestParams(op=OP_WRITE, lba=0, count=3, polling=polling), data)
    assert (r.outcome, r.status & ERR, r.error, r.sectors) == (OUTCOME_DEVICE_ERROR, ERR, IDNF, 2)
    assert m.ata.data_words("out") == words(data[:1024])        # no third sector was sent
    assert r.done


def test_write_without_drq_is_a_protocol_error():
    m = GuestMachine(AtaStandIn(broken_no_drq=True))
    r = m.start(GuestParams(op=OP_WRITE, count=1, polling=True), pattern(1, 5))
    assert (r.done, r.outcome, r.sectors) == (True, OUTCOME_PROTOCOL, 0)
    assert m.ata.data_words("out") == []


@pytest.mark.parametrize("params", [GuestParams(op=9), GuestParams(op=OP_WRITE, count=257),
                                    GuestParams(op=OP_READ, lba=1 << 28)])
def test_bad_parameters_touch_no_ata_port(params):
    m = GuestMachine()
    r = m.start(params)
    assert (r.done, r.outcome) == (True, OUTCOME_BAD_PARAMS)
    assert all(e[1] in (0x20, 0x21, 0xA0, 0xA1) for e in m.ata.log)


# -- IRQ mode (the harness delivers IRQ 14 through the guest's IDT when it waits in hlt) -------------
def test_irq_mode_write_waits_for_one_irq_per_sector():
    m = GuestMachine()
    data = pattern(3, 11)
    r = m.start(GuestParams(op=OP_WRITE, lba=2, count=3), data)
    assert (r.done, r.outcome, r.sectors, r.irqs) == (True, OUTCOME_OK, 3, 3)
    assert m.delivered == [0x2E] * 3
    assert m.ata.disk[2 * 512:5 * 512] == data
    assert ata_outs_before_data(m.ata)[0] == (0x3F6, 0x08)      # nIEN clear: interrupts wanted
    assert m.ata.outs(0x20, 0x21, 0xA0, 0xA1) == PIC_INIT + EOI_PAIR * 3
    assert r.irq_status == DRDY | DSC and not m.ata.irq         # the handler's status read acked it


def test_irq_mode_read_and_write_read_back():
    ata = AtaStandIn()
    m = GuestMachine(ata)
    data = pattern(2, 12)
    r = m.start(GuestParams(op=OP_WRITE_READ, lba=7, count=2), data)
    assert (r.outcome, r.sectors, r.irqs) == (OUTCOME_OK, 4, 4)
    assert m.mem(BUFFER2_ADDR, 1024) == data
    # The read side uses the status the IRQ handler read (0x58) and ends with ata_wait_idle (0x50).
    assert r.status == DRDY | DSC


def test_irq_mode_identify():
    m = GuestMachine()
    r = m.start(GuestParams(op=OP_IDENTIFY))
    assert (r.outcome, r.irqs, r.irq_status) == (OUTCOME_OK, 1, 0x58)
    assert m.mem(BUFFER_ADDR, 512) == identify_block()


# -- the handlers, invoked directly -------------------------------------------------------------------
SNIPPET = 0x6000


def finished_machine(status=DRDY | DSC) -> GuestMachine:
    m = GuestMachine()
    m.start(GuestParams(op=OP_WRITE, polling=True), pattern(1, 1))
    m.ata.status = status
    m.ata.log.clear()
    return m


def test_int_2e_runs_the_irq14_handler():
    m = finished_machine(status=0x50)
    before = m.result()
    snippet = assemble("mov rax, 0x1111\nmov rdx, 0x2222\nmov rbp, 0x3333\nint 0x2e\ncli\nhlt", 64, SNIPPET)
    m.load_extra(SNIPPET, snippet)
    rsp_before = m.uc.reg_read(X.UC_X86_REG_RSP)
    m.run(SNIPPET)
    r = m.result()
    assert r.irqs == before.irqs + 1 and r.irq_status == 0x50
    assert m.ata.log[0] == ("in", 0x1F7, 1, 0x50)               # acknowledge by reading status first
    assert m.ata.outs(0x20, 0x21, 0xA0, 0xA1) == EOI_PAIR        # EOI to the slave, then the master
    assert [m.uc.reg_read(reg) for reg in (X.UC_X86_REG_RAX, X.UC_X86_REG_RDX, X.UC_X86_REG_RBP)] == \
        [0x1111, 0x2222, 0x3333]                                 # registers preserved, iretq returned
    assert m.uc.reg_read(X.UC_X86_REG_RIP) == SNIPPET + len(snippet)
    assert m.uc.reg_read(X.UC_X86_REG_RSP) == rsp_before                # the frame was popped


@pytest.mark.parametrize("code, vector", [
    ("int 0x00", 0x00),                   # #DE's vector (see the harness on raw Unicorn and real faults)
    ("ud2", 0x06),                        # #UD, a real fault
    ("int 0x0d", 0x0D),                   # a vector that normally carries an error code
    ("int 0x2f", 0x2F),                   # IRQ 15 (the spurious slave IRQ) is not the disk's
    ("int 0x80", 0xFE),                   # beyond 0x2f: one shared stub
])
def test_catch_all_records_the_vector_and_halts(code, vector):
    m = finished_machine()
    m.load_extra(SNIPPET, assemble(code + "\nmov eax, 0x99\nhlt", 64, SNIPPET))
    m.run(SNIPPET)
    r = m.result()
    assert r.vector == vector
    assert not m.uc.reg_read(X.UC_X86_REG_RFLAGS) & 0x200     # halted with interrupts off
    assert m.uc.reg_read(X.UC_X86_REG_RAX) & 0xFF != 0x99      # never came back to the snippet
    assert m.ata.log == []                                     # and touched no port


def test_every_idt_gate_is_a_present_interrupt_gate():
    m = finished_machine()
    _sel, base, limit, _f = m.uc.reg_read(X.UC_X86_REG_IDTR)
    assert (base, limit) == (0xA000, 0xFFF)
    targets = {}
    for v in range(256):
        lo, hi = struct.unpack("<QQ", m.mem(base + 16 * v, 16))
        assert (lo >> 40) & 0xFF == 0x8E and (lo >> 16) & 0xFFFF == 0x08 and hi >> 32 == 0, hex(v)
        targets[v] = (lo & 0xFFFF) | ((lo >> 48) & 0xFFFF) << 16 | (hi & 0xFFFFFFFF) << 32
    assert len({targets[v] for v in range(0x30)}) == 0x30          # own stub per vector below 0x30
    assert len({targets[v] for v in range(0x30, 256)}) == 1        # one shared stub above
    assert targets[0x2E] not in {targets[v] for v in range(256) if v != 0x2E}


def test_result_block_is_initialised_by_the_guest():
    m = GuestMachine()
    # Junk left in the result block from a previous run must not leak into this one.
    m.ram[RESULT_ADDR:RESULT_ADDR + GuestResult.SIZE] = b"\xAA" * GuestResult.SIZE
    r = m.start(GuestParams(op=OP_WRITE, polling=True), pattern(1, 2))
    raw = struct.unpack("<8I", m.mem(RESULT_ADDR, 32))
    assert raw[0] == DONE_MAGIC and r.vector == NO_VECTOR and r.error == 0 and r.irqs == 0


# -- the host-side API (what vmio_edu.machine.Machine calls) ------------------------------------------
def test_write_params_and_read_result_round_trip():
    m = GuestMachine()
    data = pattern(2, 77)
    prog = default_guest()
    prog.write_params(m.ram, op="both", lba=6, sectors=2, polling=True, data=data)
    m.start(None)
    res = prog.read_result(m.ram_now())
    assert res["done"] and res["outcome"] == OUTCOME_OK and res["error"] == 0
    assert res["sectors_done"] == 4 and res["vector"] == NO_VECTOR
    assert res["read_back"] == data == bytes(m.ata.disk[6 * 512:8 * 512])


@pytest.mark.parametrize("op, want_op, command", [("write", OP_WRITE, 0), ("read", OP_READ, 0),
                                                  ("both", OP_WRITE_READ, 0), ("identify", OP_IDENTIFY, 0),
                                                  (0x77, OP_RAW, 0x77)])
def test_write_params_op_names(op, want_op, command):
    ram = bytearray(2 << 20)
    default_guest().write_params(ram, op=op, lba=0x123, sectors=0, polling=False)
    op_, lba, count, flags = struct.unpack_from("<IIII", ram, PARAMS_ADDR)
    assert (op_, lba, count, flags) == (want_op, 0x123, 0, 0)
    assert struct.unpack_from("<I", ram, PARAMS_ADDR + 0x20)[0] == command


def test_read_result_has_read_back_only_for_reads():
    m = GuestMachine()
    prog = default_guest()
    prog.write_params(m.ram, op="write", sectors=1, polling=True, data=pattern(1, 3))
    m.start(None)
    assert "read_back" not in prog.read_result(m.ram_now())


@pytest.mark.parametrize("kwargs, match", [
    (dict(op="erase"), "unknown op"), (dict(op=0x100), "not a byte"), (dict(op=True), "op must be"),
    (dict(sectors=257), "sectors"), (dict(lba=1 << 28), "28-bit"),
    (dict(data=bytes(0x20001)), "do not fit"),
])
def test_write_params_refuses_bad_input(kwargs, match):
    from vmio_edu.errors import VmioError
    ram = bytearray(2 << 20)
    with pytest.raises(VmioError, match=match):
        default_guest().write_params(ram, **kwargs)
    assert ram.count(0) == len(ram)
