"""Every ATA command byte outside the supported set, sent by a real guest through the whole path.

One 16-bit guest issues them all in one run (polling, nIEN set, interrupts off): for each command byte in
a list the host puts in RAM it selects drive 0, writes the count and the command, polls 0x1f7 until BSY is
clear and stores the status and the error register (0x1f1) in a table. Then it writes one sector, to show
the drive still works after 249 aborted commands.

QEMU 1.6.1 (hw/ide/core.c:1703-1740, ide_exec_cmd): a command the drive kind does not permit in
`ide_cmd_table` (core.c:1637) is aborted, status DRDY|ERR (0x41), error ABRT (0x04), IRQ. That includes
0x00 NOP ("NOP not implemented, mandatory for CD" in the table) and DEVICE RESET 0x08 (CD only). The
model's supported set is its `ide_cmd_table`; the commands real QEMU runs but the model does not
(`NOT_MODELLED`: DMA, SMART, FLUSH CACHE, SET FEATURES, ...) are aborted the same way (a documented
limit, see docs/robustness.md). A permitted command starts with status 0xC0 and error 0; the no-data
ones finish at once with BSY cleared, and DSC (0x10) where the table says SET_DSC.
"""
import pytest

from robustness_helpers import assert_image_matches, ata_command_asm, pattern
from vmio_edu import Machine
from vmio_edu.guest import assemble
from vmio_edu.qemu.hw.ide import core

SECTOR = 512
LIST, TABLE, COUNT, BUF, RESULT = 0x2000, 0x3000, 0x1ff0, 0x4000, 0x1ff4
WRITE_LBA = 5

# QEMU 1.6.1's ide_cmd_table (hw/ide/core.c:1637-1694 at v1.6.1, opcodes from hw/ide/internal.h), written
# out here so the test does not take its expectations from the model: every opcode the table permits for a
# hard disk (IDE_HD: HD_OK, HD_CFA_OK or ALL_OK), with whether its entry has SET_DSC. Everything else
# (0x00 NOP, 0x08 DEVICE RESET and the CFA/ATAPI-only entries among them) is aborted for a hard disk.
QEMU_1_6_1_HD_COMMANDS = {
    0x06: ("WIN_DSM", False), 0x10: ("WIN_RECAL", True), 0x20: ("WIN_READ", False),
    0x21: ("WIN_READ_ONCE", False), 0x24: ("WIN_READ_EXT", False), 0x25: ("WIN_READDMA_EXT", False),
    0x27: ("WIN_READ_NATIVE_MAX_EXT", True), 0x29: ("WIN_MULTREAD_EXT", False), 0x30: ("WIN_WRITE", False),
    0x31: ("WIN_WRITE_ONCE", False), 0x34: ("WIN_WRITE_EXT", False), 0x35: ("WIN_WRITEDMA_EXT", False),
    0x39: ("WIN_MULTWRITE_EXT", False), 0x3C: ("WIN_WRITE_VERIFY", False), 0x40: ("WIN_VERIFY", True),
    0x41: ("WIN_VERIFY_ONCE", True), 0x42: ("WIN_VERIFY_EXT", True), 0x70: ("WIN_SEEK", True),
    0x90: ("WIN_DIAGNOSE", False), 0x91: ("WIN_SPECIFY", True), 0x94: ("WIN_STANDBYNOW2", False),
    0x95: ("WIN_IDLEIMMEDIATE2", False), 0x96: ("WIN_STANDBY2", False), 0x97: ("WIN_SETIDLE2", False),
    0x98: ("WIN_CHECKPOWERMODE2", True), 0x99: ("WIN_SLEEPNOW2", False), 0xB0: ("WIN_SMART", True),
    0xC4: ("WIN_MULTREAD", False), 0xC5: ("WIN_MULTWRITE", False), 0xC6: ("WIN_SETMULT", True),
    0xC8: ("WIN_READDMA", False), 0xC9: ("WIN_READDMA_ONCE", False), 0xCA: ("WIN_WRITEDMA", False),
    0xCB: ("WIN_WRITEDMA_ONCE", False), 0xE0: ("WIN_STANDBYNOW1", False), 0xE1: ("WIN_IDLEIMMEDIATE", False),
    0xE2: ("WIN_STANDBY", False), 0xE3: ("WIN_SETIDLE1", False), 0xE5: ("WIN_CHECKPOWERMODE1", True),
    0xE6: ("WIN_SLEEPNOW1", False), 0xE7: ("WIN_FLUSH_CACHE", False), 0xEA: ("WIN_FLUSH_CACHE_EXT", False),
    0xEC: ("WIN_IDENTIFY", False), 0xEF: ("WIN_SETFEATURES", True), 0xF5: ("CFA_WEAR_LEVEL", True),
    0xF8: ("WIN_READ_NATIVE_MAX", True),
}
# Data-phase commands of the supported set (they open a PIO window or start an async read); the default
# guest exercises them in tests/e2e. Every other byte goes into the sweep.
DATA_COMMANDS = {0x20, 0x21, 0x24, 0x30, 0x31, 0x34, 0xEC}

GUEST = f"""
    cli
    xor ax, ax
    mov ds, ax
    mov dx, 0x3f6
    mov al, 0x0a            # device control: nIEN (no IRQ) | the obsolete bit 3
    out dx, al
    mov si, {LIST}
    mov di, {TABLE}
    mov cx, word ptr [{COUNT}]
next_cmd:
    test cx, cx
    jz sweep_done
    mov dx, 0x1f6
    mov al, 0xe0            # drive 0, LBA
    out dx, al
    mov dx, 0x1f2
    mov al, 1
    out dx, al
    mov dx, 0x1f3
    mov al, 3
    out dx, al
    mov al, byte ptr [si]
    mov dx, 0x1f7
    out dx, al
    mov bx, 1000
poll:
    in al, dx               # status (acknowledges any IRQ)
    test al, 0x80
    jz got_status
    dec bx
    jnz poll
got_status:
    mov byte ptr [di], al
    mov dx, 0x1f1
    in al, dx
    mov byte ptr [di + 1], al
    inc si
    add di, 2
    dec cx
    jmp next_cmd

sweep_done:                 # WRITE SECTORS: one sector at LBA {WRITE_LBA} from BUF
{ata_command_asm(0x30, WRITE_LBA)}
wait_drq:
    in al, dx
    test al, 0x80
    jnz wait_drq
    test al, 0x08
    jz write_failed
    mov si, {BUF}
    mov cx, 256
    mov dx, 0x1f0
    rep outsw
    mov dx, 0x1f7
wait_done:
    in al, dx
    test al, 0x80
    jnz wait_done
write_failed:
    mov byte ptr [{RESULT}], al
    mov dx, 0x1f1
    in al, dx
    mov byte ptr [{RESULT} + 1], al
    cli
    hlt
"""


@pytest.fixture(scope="module")
def code():
    return assemble(GUEST, mode=16)


def sweep(image, code, commands, engine="unicorn"):
    data = pattern(99, SECTOR)
    with Machine(code, mode=16, image=image, engine=engine, max_exits=100_000) as m:
        m.ram[LIST:LIST + len(commands)] = bytes(commands)
        m.ram[COUNT:COUNT + 2] = len(commands).to_bytes(2, "little")
        m.ram[BUF:BUF + SECTOR] = data
        m.run()
        assert m.halted and m.exits[-1].reason == "HLT"
        table = m.read_guest(TABLE, 2 * len(commands))
        final = m.read_guest(RESULT, 2)
    results = {c: (table[2 * i], table[2 * i + 1]) for i, c in enumerate(commands)}
    return results, (final[0], final[1]), data


def test_the_model_covers_exactly_1_6_1s_hard_disk_commands():
    """Each opcode 1.6.1 permits for a hard disk is either run by the model (with 1.6.1's SET_DSC flag) or
    named in NOT_MODELLED; nothing else is in the model's table."""
    modelled, named = set(core.ide_cmd_table), set(core.NOT_MODELLED)
    assert modelled | named == set(QEMU_1_6_1_HD_COMMANDS) and not modelled & named
    for op in modelled:
        assert bool(core.ide_cmd_table[op][1] & core.SET_DSC) == QEMU_1_6_1_HD_COMMANDS[op][1], hex(op)


def test_every_unsupported_command_byte_is_aborted_and_the_drive_still_works(disk, code):
    assert DATA_COMMANDS <= set(QEMU_1_6_1_HD_COMMANDS)  # the guest leaves these to tests/e2e
    commands = [c for c in range(256) if c not in DATA_COMMANDS]
    results, final, data = sweep(disk.path, code, commands)

    not_permitted = [c for c in commands if c not in QEMU_1_6_1_HD_COMMANDS]
    assert len(not_permitted) == 256 - 46 and 0x00 in not_permitted and 0x08 in not_permitted
    # 1.6.1 aborts these (NOP and DEVICE RESET included); the model also aborts what it does not run
    aborted = not_permitted + [c for c in commands if c in core.NOT_MODELLED]
    bad = {hex(c): (hex(results[c][0]), hex(results[c][1])) for c in aborted if results[c] != (0x41, 0x04)}
    assert not bad, f"commands not aborted as 0x41/0x04 (DRDY|ERR, ABRT): {bad}"

    run = [c for c in commands if c in QEMU_1_6_1_HD_COMMANDS and c not in core.NOT_MODELLED]
    assert len(run) >= 12
    for c in run:  # a no-data command 1.6.1 runs: DRDY, no BSY/DRQ/ERR, error 0, DSC if SET_DSC
        st, err = results[c]
        dsc = QEMU_1_6_1_HD_COMMANDS[c][1]
        assert (st, err) == (0x50 if dsc else 0x40, 0), f"command {c:#x}: status {st:#x}, error {err:#x}"

    # After all that the drive takes a normal WRITE SECTORS, and that is the only change to the image.
    assert final == (0x50, 0x00)
    assert_image_matches(disk, disk.reference, {WRITE_LBA: data})


def test_not_modelled_commands_are_in_the_sweep_and_named(disk, code):
    """The model aborts real QEMU commands it does not run (a documented limit) and says which."""
    assert set(core.NOT_MODELLED).isdisjoint(core.ide_cmd_table)
    with Machine(image=disk.path, op=0xE7, polling=True) as m:  # FLUSH CACHE
        m.run()
        r = m.guest_result()
        s = m.ide.bus[0].ifs[0]
        assert (r["status"], r["error"]) == (0x41, 0x04)
        assert "FLUSH CACHE" in s.abort_reason and "1.6.1" in s.abort_reason
    assert_image_matches(disk, disk.reference, {})


@pytest.mark.kvm
def test_sweep_on_real_kvm_gives_the_same_table(make_disk, code, need_kvm):
    """The same guest on /dev/kvm: the device model answers identically, command by command."""
    commands = [c for c in range(256) if c not in DATA_COMMANDS]
    a, b = make_disk(name="a.img"), make_disk(name="b.img")
    emulated, fin_e, data = sweep(a.path, code, commands, "unicorn")
    real, fin_k, _ = sweep(b.path, code, commands, "kvm")
    assert real == emulated and fin_k == fin_e == (0x50, 0)
    assert_image_matches(b, b.reference, {WRITE_LBA: data})
