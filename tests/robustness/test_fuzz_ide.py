"""Issue 6: a stateful fuzz of the IDE model on the real block layer.

Hypothesis drives the primary IDE channel the way a (badly behaved) guest could: random task-file bytes,
command bytes, data-port words in and out, status reads, device-control writes (nIEN, SRST), and time
passing so that thread-pool requests and their completions land. Everything runs on the real path:
port handlers on a vCPU model thread holding the BQL, `bdrv_aio_*` → coroutine → thread pool →
`pwrite`/`pread` on a real raw image, completions on the main-loop thread.

A shadow model in the test predicts, from what the guest did, what the image must hold:

* A WRITE command's range is read off the task file when the command is accepted (LBA28, LBA48 or CHS,
  count 0 meaning 256/65536). Only a *complete* 512-byte window starts a sector write; its sector is the
  command's start plus the sectors completed before it; the sector changes in the file when the pool
  thread runs, and must hold exactly the 512 bytes the guest sent once the completion reached IDE.
* A READ window that the guest empties must hold what the shadow says is on the disk.
* A sector past the end fails with EIO: ABRT (0x41/0x04) under rerror/werror=report (werror=enospc
  reports EIO too); under =ignore the command carries on, nothing is written and the read window's
  content is not checked.

QEMU 1.6.1 cancels nothing on an SRST edge (`ide_cmd_write`) or an aborted DEVICE RESET:
the drive looks idle, a new command may start, and the old request still completes later, into the
same `io_buffer` and the same registers. What lands on disk then is not predictable from the guest's
side. From that moment until the drive is really quiet again (nothing in flight and a fresh command
accepted) the shadow is in *overlap* mode: every sector any data command of that period addresses, or
any sector write IDE submitted in it (the late completion can even open a write window where the guest
pointed the task file after SRST, with no WRITE command), may change, to any content; everything else
must stay exact.

Invariants, after every step: no DRQ together with BSY; ERR only with a non-zero error register; the
image differs from the pristine copy only inside ranges of accepted WRITE commands (plus the overlap
sectors); every sector outside an overlap holds exactly the shadow's bytes; after time has passed,
nothing is in flight and BSY only stays set while SRST is held. No exception may escape a step. At the
end of each example the machine closes, and no model thread or file descriptor is left behind.

Budget: deterministic (derandomize, no example database) and small for CI. Run longer with e.g.
VMIO_FUZZ_EXAMPLES=1200 VMIO_FUZZ_STEPS=80 python -m pytest tests/robustness/test_fuzz_ide.py
(about 10 minutes); add VMIO_FUZZ_RANDOM=1 and --hypothesis-seed=N to explore other examples.
"""
from __future__ import annotations

import os
import random
import shutil
import tempfile
import threading

from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from vmio_edu.qemu.cpus import qemu_mutex_lock_iothread, qemu_mutex_unlock_iothread
from vmio_edu.qemu.hw.core.irq import qemu_allocate_irqs
from vmio_edu.qemu.hw.ide.core import bdrv_set_on_error
from vmio_edu.qemu.hw.ide.piix import pci_piix_ide_init
from vmio_edu.qemu.ioport import cpu_inb, cpu_inl, cpu_inw, cpu_outb, cpu_outl, cpu_outw

from qemu_rig import QemuRig
from robustness_helpers import open_fds

SECTOR = 512
WORDS = SECTOR // 2
BSY, DRQ, ERR = 0x80, 0x08, 0x01
ABRT = 0x04
SRST = 0x04

EXAMPLES = int(os.environ.get("VMIO_FUZZ_EXAMPLES", "60"))
STEPS = int(os.environ.get("VMIO_FUZZ_STEPS", "50"))
# CI replays the same examples every time; VMIO_FUZZ_RANDOM=1 (with pytest --hypothesis-seed=N) explores
DERANDOMIZE = os.environ.get("VMIO_FUZZ_RANDOM", "") in ("", "0")

READS = (0x20, 0x21, 0x24)
WRITES = (0x30, 0x31, 0x34)
LBA48 = (0x24, 0x34)
IDENTIFY = 0xEC
DEVICE_RESET = 0x08


# -------------------------------------------------------------------------------------------------
# The machine: scheduler, main loop, raw image, PIIX IDE; a vCPU thread that runs jobs on request
# -------------------------------------------------------------------------------------------------
class InFlight:
    """Trace hooks counting block requests IDE submitted and whose completion has not reached IDE yet
    (bdrv_aio_readv/writev in, bdrv_co_em_bh out), and noting the sector of each submission."""

    def __init__(self):
        self.count = 0
        self.submitted: list[tuple[str, int, int]] = []  # (op, sector_num, nb_sectors)

    def enter(self, tp, args, ctx):
        name = tp.name
        if name == "bdrv_aio_writev" or name == "bdrv_aio_readv":
            self.count += 1
            a = dict(zip(tp.argnames, args))
            self.submitted.append(("write" if name == "bdrv_aio_writev" else "read", a["sector_num"], a["nb_sectors"]))
        elif name == "bdrv_co_em_bh":
            self.count -= 1

    def leave(self, tp, result, ctx):
        pass


HALT = object()


class FuzzMachine(QemuRig):
    """A PIIX IDE controller with a real raw image as primary master, its main loop and thread pool,
    and a vCPU model thread that runs port I/O for the test (`on_vcpu`), advances time by KVM_RUN
    entries (`ticks`) or halts until everything else is idle (`settle`)."""

    def __init__(self, image: str):
        super().__init__(image)
        self.irq_levels: list[int] = []  # every change of the ISA IRQ 14 line
        self.raised_under_nien = 0  # raises while the guest had nIEN set in device control
        line = qemu_allocate_irqs(self._irq14, None, 1)[0]
        self.ide = pci_piix_ide_init(self.bs, line, self.state.address_space_io)
        self.bus = self.ide.bus[0]
        self.inflight = InFlight()
        self.sched.attach(hooks=self.inflight)
        self.start()
        self._job = None
        self._result = None
        self.vcpu = self.sched.spawn("vcpu0", self._vcpu_thread, vcpu=True)

    def _irq14(self, opaque, n, level) -> None:
        self.irq_levels.append(level)
        bus = getattr(self, "bus", None)
        if level and bus is not None and bus.cmd & 0x02:
            self.raised_under_nien += 1

    def _vcpu_thread(self) -> None:
        qemu_mutex_lock_iothread()
        while True:
            job, self._job = self._job, None
            if job is HALT:
                self.sched.block("halted")  # everything else runs until idle; the controller wakes us
                continue
            if job is not None:
                self._result = job()
            self.sched.park("job done")

    def _go(self, job):
        self._job = job
        if self.vcpu.state == "blocked":
            self.sched.wake(self.vcpu)
        parked = self.sched.resume()
        if parked.reason == "error":
            raise parked.detail
        return parked

    def on_vcpu(self, fn):
        """Run fn() on the vCPU thread with the BQL held; no other thread runs meanwhile."""
        parked = self._go(fn)
        assert parked.reason == "stop" and parked.thread == "vcpu0", parked
        return self._result

    def ticks(self, n: int) -> None:
        """n KVM_RUN entries: the BQL is dropped n times and threads that are due run in between."""
        def job():
            for _ in range(n):
                qemu_mutex_unlock_iothread()
                qemu_mutex_lock_iothread()
        self.on_vcpu(job)

    def settle(self) -> None:
        """The vCPU halts; the main loop and the pool run until nothing can run."""
        parked = self._go(HALT)
        assert parked.reason == "idle", parked


def model_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("vmio:")}


# -------------------------------------------------------------------------------------------------
# The guest's view of a command
# -------------------------------------------------------------------------------------------------
def requested_range(regs: dict, cmd: int, heads: int, secs: int) -> tuple[int, int]:
    """(first sector, count) a READ/WRITE command asks for, from the task file as it was when the
    command was written (ATA: LBA bit 6 of the device register; EXT commands use the HOB bytes)."""
    lba48 = cmd in LBA48
    if lba48:
        count = (regs["hob_nsector"] << 8) | regs["nsector"]
        if regs["nsector"] == 0 and regs["hob_nsector"] == 0:
            count = 65536
    else:
        count = regs["nsector"] or 256
    if regs["select"] & 0x40:
        if lba48:
            start = (regs["hob_hcyl"] << 40) | (regs["hob_lcyl"] << 32) | (regs["hob_sector"] << 24) | \
                (regs["hcyl"] << 16) | (regs["lcyl"] << 8) | regs["sector"]
        else:
            start = ((regs["select"] & 0x0F) << 24) | (regs["hcyl"] << 16) | (regs["lcyl"] << 8) | regs["sector"]
    else:
        cyl = (regs["hcyl"] << 8) | regs["lcyl"]
        start = (cyl * heads + (regs["select"] & 0x0F)) * secs + regs["sector"] - 1
    return start, count


REG_NAMES = ("nsector", "sector", "lcyl", "hcyl", "select", "hob_nsector", "hob_sector", "hob_lcyl", "hob_hcyl")


def payload_of(seed: int, n: int, size: int = 2) -> list[int]:
    rng = random.Random(seed)
    return [rng.getrandbits(8 * size) for _ in range(n)]


class Command:
    """The data command the guest is in, as the shadow follows it."""

    def __init__(self, opcode: int, start: int, count: int):
        self.opcode = opcode
        self.kind = "write" if opcode in WRITES else "read" if opcode in READS else "identify"
        self.start, self.count = start, count
        self.done = 0  # sectors completed
        self.window = bytearray()  # bytes moved in the current window
        self.pending: tuple[int, bytes] | None = None  # a sector write submitted, not completed


# -------------------------------------------------------------------------------------------------
# The state machine
# -------------------------------------------------------------------------------------------------
small_byte = st.one_of(st.integers(0, 4), st.integers(0, 255))
lba_byte = st.one_of(st.integers(0, 160), st.integers(0, 255))
zero_mostly = st.one_of(st.just(0), st.just(0), st.integers(0, 255))
select_byte = st.one_of(st.sampled_from([0xE0, 0xE0, 0xA0, 0xF0, 0x40, 0xB0, 0xE1]), st.integers(0, 255))
command_byte = st.one_of(
    st.sampled_from([0x20, 0x21, 0x30, 0x31, 0x24, 0x34, 0xEC]),
    st.sampled_from([0x20, 0x30, 0xC4, 0xC5, 0xC6, 0x29, 0x39, 0x08, 0x10, 0x91, 0xE7, 0xEF, 0x00]),
    st.integers(0, 255),
)
word_count = st.one_of(st.just(WORDS), st.just(2 * WORDS), st.integers(1, 300))


class IDEFuzz(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="vmio-fuzz-")
        self.threads_before = model_threads()
        self.fds_before = open_fds()
        self.m: FuzzMachine | None = None

    @initialize(sectors=st.sampled_from([64, 128, 256]), seed=st.integers(0, 3),
                rerror=st.sampled_from(["report", "report", "ignore"]),
                werror=st.sampled_from(["enospc", "report", "ignore"]))
    def boot(self, sectors, seed, rerror, werror):
        """A fresh image and machine; -drive rerror=/werror= decide what an I/O error (here: a sector
        past the end, EIO) does: report it as ABRT, or ignore it and carry on."""
        self.image = os.path.join(self.tmp, "disk.img")
        rng = random.Random(seed)
        self.pristine = bytes(rng.getrandbits(8) for _ in range(sectors * SECTOR))
        with open(self.image, "wb") as f:
            f.write(self.pristine)
        self.nb = sectors
        self.expected = bytearray(self.pristine)  # what each sector must hold (outside an overlap)
        self.allowed: set[int] = set()  # sectors that may differ from the pristine image
        self.overlap = False  # a request outlived the command that issued it (see the module doc)
        self.overlap_sectors: set[int] = set()
        self.cmd: Command | None = None
        self.m = FuzzMachine(self.image)
        bdrv_set_on_error(self.m.bs, rerror, werror)
        self.ignore_read_errors, self.ignore_write_errors = rerror == "ignore", werror == "ignore"
        self.drive = self.m.bus.ifs[0]
        self.settled = True  # time has passed and nothing happened since

    # -- helpers -------------------------------------------------------------------------------
    def active_status(self) -> int:
        return self.m.bus.ifs[self.m.bus.unit].status

    def master_selected(self) -> bool:
        return self.m.bus.unit == 0

    def in_range(self, sector: int) -> bool:
        return 0 <= sector < self.nb

    def command_sectors(self, cmd: Command | None) -> set[int]:
        if cmd is None or cmd.kind == "identify":
            return set()
        lo, hi = max(cmd.start, 0), min(cmd.start + cmd.count, self.nb)
        return set(range(lo, hi))

    def enter_overlap(self) -> None:
        event("overlap: a request outlived its command")
        if not self.overlap:
            self.overlap = True
            self.overlap_sectors = set()
            self.overlap_mark = len(self.m.inflight.submitted)
        self.overlap_sectors |= self.command_sectors(self.cmd)
        if self.cmd is not None and self.cmd.pending is not None:
            self.overlap_sectors.add(self.cmd.pending[0])
        self.allowed |= self.overlap_sectors
        self.cmd = None

    def overlap_written(self) -> set[int]:
        """Every sector the overlap may have changed: those its commands address, and those of the
        writes IDE submitted meanwhile. (After SRST low the task file is writable while an old request
        is still out; its late completion may open a write window wherever the guest then pointed the
        registers, with no WRITE command at all. Only the block layer's request says where.)"""
        subs = self.m.inflight.submitted[self.overlap_mark:]
        return self.overlap_sectors | {sec for op, sec, nb in subs if op == "write" and nb and self.in_range(sec)}

    def leave_overlap(self) -> None:
        """Nothing in flight and a fresh command accepted: take the overlap sectors as they are now."""
        disk = self.read_image()
        changed = self.overlap_written()
        self.allowed |= changed
        for s in changed:
            self.expected[s * SECTOR:(s + 1) * SECTOR] = disk[s * SECTOR:(s + 1) * SECTOR]
        self.overlap = False
        self.overlap_sectors = set()

    def read_image(self) -> bytes:
        with open(self.image, "rb") as f:
            return f.read()

    def note_completions(self) -> None:
        """After time passed: a completed sector write is on disk; a failed one aborted the command."""
        cmd = self.cmd
        if self.overlap or cmd is None or cmd.kind != "write" or cmd.pending is None or self.m.inflight.count:
            return
        sector, data = cmd.pending
        cmd.pending = None
        cmd.window = bytearray()
        st_ = self.drive.status
        if self.in_range(sector):
            event("sector written and completed")
            self.expected[sector * SECTOR:(sector + 1) * SECTOR] = data
            cmd.done += 1
            assert not st_ & ERR, f"in-range write of sector {sector} failed: status {st_:#x}"
            if cmd.done == cmd.count:
                assert not st_ & (BSY | DRQ), f"write finished but status {st_:#x}"
                self.cmd = None
            else:
                assert st_ & DRQ, f"write of {cmd.count} sectors, {cmd.done} done: no window ({st_:#x})"
        elif self.ignore_write_errors:
            event("write past the end ignored")
            assert not st_ & ERR, f"werror=ignore, but the failed write gave status {st_:#x}"
            cmd.done += 1  # the command carries on as if the sector had been written
            if cmd.done == cmd.count:
                self.cmd = None
        else:
            event("write past the end aborted")
            assert st_ & ERR and self.drive.error == ABRT, \
                f"write past the end (sector {sector} of {self.nb}) gave status {st_:#x} error {self.drive.error:#x}"
            self.cmd = None

    def note_read_progress(self) -> None:
        """After time passed: a READ's request finished: a window over the sector, or ABRT."""
        cmd = self.cmd
        if self.overlap or cmd is None or cmd.kind != "read" or self.m.inflight.count:
            return
        st_ = self.drive.status
        sector = cmd.start + cmd.done
        if not self.in_range(sector) and not cmd.window and not st_ & DRQ and not self.ignore_read_errors:
            event("read past the end aborted")
            assert st_ & ERR and self.drive.error == ABRT, \
                f"read past the end (sector {sector}) gave status {st_:#x} error {self.drive.error:#x}"
            self.cmd = None

    # -- rules ---------------------------------------------------------------------------------
    @rule(reg=st.integers(1, 6), data=st.data())
    def write_register(self, reg, data):
        val = data.draw({1: st.integers(0, 255), 2: small_byte, 3: lba_byte, 4: zero_mostly, 5: zero_mostly,
                         6: select_byte}[reg], label="val")
        self.m.on_vcpu(lambda: cpu_outb(0x1F0 + reg, val))
        self.settled = False

    @rule(opcode=st.sampled_from(READS + WRITES + (IDENTIFY,)), lba=st.integers(0, 300),
          count=small_byte, lba_mode=st.sampled_from([0xE0, 0xE0, 0xA0]), hob=zero_mostly)
    def program(self, opcode, lba, count, lba_mode, hob):
        """A well-formed command the way a driver issues it: device, count, LBA (twice for EXT, the
        first byte going to the HOB half), then the command."""
        self.issue(opcode, lba, count, lba_mode, hob)

    @rule(opcode=st.sampled_from(READS + WRITES), data=st.data(), count=st.integers(1, 3))
    def program_in_range(self, opcode, data, count):
        """The same, aimed at the image (and just past its end)."""
        lba = data.draw(st.integers(max(self.nb - 4, 0), self.nb + 1) | st.integers(0, self.nb - 1),
                        label="lba")
        self.issue(opcode, lba, count, 0xE0, 0)

    @rule(data=st.data(), count=st.integers(1, 3), seed=st.integers(0, 2**16), ext=st.booleans())
    def driver_write_then_read(self, data, count, seed, ext):
        """A whole well-behaved exchange, as the default guest's driver does it: WRITE SECTORS, one
        block per IRQ, then READ SECTORS of the same range, one block per IRQ."""
        lba = data.draw(st.integers(0, self.nb + 1), label="lba")
        self.issue(0x34 if ext else 0x30, lba, count, 0xE0, 0)
        for i in range(count):
            self.write_data(WORDS, seed + i)
            self.wait_for_irq(True)
        self.issue(0x24 if ext else 0x20, lba, count, 0xE0, 0)
        for _ in range(count):
            self.wait_for_irq(True)
            self.read_data(WORDS)

    def issue(self, opcode, lba, count, lba_mode, hob):
        def job():
            cpu_outb(0x1F6, lba_mode | ((lba >> 24) & 0x0F))
            if opcode in LBA48:
                for port, val in ((0x1F2, 0), (0x1F3, hob), (0x1F4, 0), (0x1F5, 0)):
                    cpu_outb(port, val)
            for port, val in ((0x1F2, count), (0x1F3, lba & 0xFF), (0x1F4, (lba >> 8) & 0xFF),
                              (0x1F5, (lba >> 16) & 0xFF)):
                cpu_outb(port, val)
        self.m.on_vcpu(job)
        self.command(opcode)

    @rule(opcode=command_byte)
    def command(self, opcode):
        m, d = self.m, self.drive
        before = self.active_status()
        master = self.master_selected()
        regs = {n: getattr(d, n) for n in REG_NAMES}
        busy = before & (BSY | DRQ)
        quiet = m.inflight.count == 0
        reaches_master = master and (not busy or opcode == DEVICE_RESET)
        if reaches_master and m.inflight.count:
            self.enter_overlap()  # the drive takes a command while an older request still runs
        m.on_vcpu(lambda: cpu_outb(0x1F7, opcode))
        self.settled = False
        if not reaches_master:
            return
        after = d.status
        if opcode in READS + WRITES + (IDENTIFY,) and not after & ERR:
            if self.overlap and quiet and not busy:
                self.leave_overlap()
            start, count = requested_range(regs, opcode, d.heads, d.sectors) if opcode != IDENTIFY else (0, 1)
            cmd = Command(opcode, start, count)
            if self.overlap:
                self.cmd = cmd
                self.enter_overlap()  # every sector this command addresses may change
                return
            self.cmd = cmd
            if cmd.kind == "write":
                self.allowed |= self.command_sectors(cmd)
                assert after & DRQ and not after & BSY, f"WRITE accepted: status {after:#x}"
            elif cmd.kind == "read":
                assert after & BSY, f"READ accepted: status {after:#x}"
            else:
                assert after & DRQ, f"IDENTIFY: status {after:#x}"
        else:
            # aborted, or a command without data: nothing can move data until the next command
            if not self.overlap:
                self.cmd = None
            if not after & BSY and after & ERR:
                assert d.error == ABRT, f"aborted command 0x{opcode:02x}: error {d.error:#x}"

    @rule(seed=st.integers(0, 2**16))
    def write_sector(self, seed):
        self.write_data(WORDS, seed)

    @rule(n=word_count, seed=st.integers(0, 2**16))
    def write_data(self, n, seed, size=2):
        """n accesses of `size` bytes (outsw, or outsd with size 4) to the data port."""
        values = payload_of(seed, n, size)
        m, d = self.m, self.drive
        out_ = cpu_outw if size == 2 else cpu_outl

        def job():
            out = []
            for v in values:
                st_before = d.status
                unit = m.bus.unit
                out_(0x1F0, v)
                out.append((unit, st_before, d.status))
            return out

        seen = m.on_vcpu(job)
        self.settled = False
        cmd = self.cmd
        if self.overlap or cmd is None or cmd.kind != "write":
            return
        for v, (unit, before, after) in zip(values, seen):
            if unit != 0 or not before & DRQ:
                continue
            cmd.window += v.to_bytes(size, "little")
            if not after & DRQ:  # the window is full: one sector goes to the block layer
                assert SECTOR <= len(cmd.window) < SECTOR + size, \
                    f"a write window closed after {len(cmd.window)} bytes"
                assert after & BSY, f"sector handed to the block layer but status {after:#x}"
                sector = cmd.start + cmd.done
                cmd.pending = (sector, bytes(cmd.window[:SECTOR]))
                assert m.inflight.submitted[-1] == ("write", sector, 1), (m.inflight.submitted[-1], sector)

    @rule(n=st.one_of(st.just(WORDS // 2), st.integers(1, 150)), seed=st.integers(0, 2**16))
    def write_dwords(self, n, seed):
        self.write_data(n, seed, 4)

    @rule()
    def read_sector(self):
        self.read_data(WORDS)

    @rule(n=st.one_of(st.just(WORDS // 2), st.integers(1, 150)))
    def read_dwords(self, n):
        self.read_data(n, 4)

    @rule(n=word_count)
    def read_data(self, n, size=2):
        """n accesses of `size` bytes (insw, or insd with size 4) to the data port."""
        m, d = self.m, self.drive
        in_ = cpu_inw if size == 2 else cpu_inl

        def job():
            out = []
            for _ in range(n):
                st_before = m.bus.ifs[m.bus.unit].status
                unit = m.bus.unit
                v = in_(0x1F0)
                out.append((unit, st_before, v, d.status))
            return out

        seen = m.on_vcpu(job)
        self.settled = False
        for unit, before, v, _after in seen:
            if not before & DRQ:
                assert v == 0, f"data read without DRQ gave {v:#x}"
        cmd = self.cmd
        if self.overlap or cmd is None or cmd.kind == "write":
            return
        for unit, before, v, after in seen:
            if unit != 0 or not before & DRQ:
                continue
            cmd.window += v.to_bytes(size, "little")
            if not after & DRQ:
                assert SECTOR <= len(cmd.window) < SECTOR + size, \
                    f"a read window closed after {len(cmd.window)} bytes"
                got = bytes(cmd.window[:SECTOR])
                cmd.window = bytearray()
                if cmd.kind == "identify":
                    assert int.from_bytes(got[120:124], "little") == self.nb, "IDENTIFY words 60-61"
                    self.cmd = None
                    continue
                sector = cmd.start + cmd.done
                if not self.in_range(sector):
                    # rerror=ignore: the failed read opened a window over whatever io_buffer held
                    assert self.ignore_read_errors, f"a window opened for sector {sector} past the end"
                    event("read past the end ignored")
                    cmd.done += 1
                    if cmd.done == cmd.count:
                        self.cmd = None
                    continue
                want = bytes(self.expected[sector * SECTOR:(sector + 1) * SECTOR])
                event("sector read back and compared")
                assert got == want, f"READ of sector {sector} gave other bytes than were written there"
                cmd.done += 1
                if cmd.done == cmd.count:
                    assert not after & (BSY | DRQ), f"read finished but status {after:#x}"
                    self.cmd = None
                else:
                    assert after & BSY, f"next sector of the READ not started: status {after:#x}"

    @rule(port=st.sampled_from([0x1F0, 0x1F1, 0x1F2, 0x1F3, 0x1F4, 0x1F5, 0x1F6, 0x1F7, 0x3F6]))
    def read_register(self, port):
        m = self.m
        expect = None
        if port in (0x1F7, 0x3F6):
            s = m.bus.ifs[m.bus.unit]
            expect = 0 if (m.bus.unit == 1 and s.bs is None) else s.status
        v = m.on_vcpu(lambda: cpu_inb(port))
        if port == 0x1F0:
            assert v == 0xFF
        if expect is not None:
            assert v == expect, (hex(port), v, expect)
        if port == 0x1F7:
            assert m.irq_levels == [] or m.irq_levels[-1] == 0, "reading 0x1f7 must lower the IRQ"

    @rule(val=st.one_of(st.sampled_from([0x00, 0x02, 0x04, 0x06, 0x00, 0x08]), st.integers(0, 255)))
    def device_control(self, val):
        m = self.m
        edge = bool(m.bus.cmd & SRST) != bool(val & SRST)
        if edge:
            # Either edge rewrites the status (BSY|DSC going up, DRDY|DSC and the signature going down)
            # and cancels nothing: a request in flight outlives the command that started it.
            if m.inflight.count:
                self.enter_overlap()
            elif not self.overlap:
                self.cmd = None  # the PIO window is abandoned
        m.on_vcpu(lambda: cpu_outb(0x3F6, val))
        self.settled = False

    @rule(n=st.integers(1, 4))
    def tick(self, n):
        self.m.ticks(n)
        self.settled = False
        self.note_completions()
        self.note_read_progress()

    @rule(ack=st.booleans())
    def wait_for_irq(self, ack):
        """What a driver does after each block: let the request finish, then read the status."""
        self.let_time_pass()
        if ack:
            self.read_register(0x1F7)

    @rule()
    def let_time_pass(self):
        m = self.m
        m.settle()
        assert m.inflight.count == 0, f"idle with {m.inflight.count} requests not completed"
        assert not m.bs.tracked_requests and not m.bs.file.tracked_requests
        self.note_completions()
        self.note_read_progress()
        self.settled = True

    # -- invariants ----------------------------------------------------------------------------
    @invariant()
    def status_is_consistent(self):
        if self.m is None:
            return
        for s in self.m.bus.ifs:
            assert not (s.status & DRQ and s.status & BSY), f"drive {s.unit}: DRQ with BSY ({s.status:#x})"
            if s.status & ERR:
                assert s.error != 0, f"drive {s.unit}: ERR with error register 0 ({s.status:#x})"

    @invariant()
    def irq_respects_nien(self):
        if self.m is None:
            return
        assert self.m.raised_under_nien == 0, "IRQ 14 raised while nIEN was set"

    @invariant()
    def image_matches_the_shadow(self):
        if self.m is None:
            return
        disk = self.read_image()
        assert len(disk) == len(self.pristine), "the image changed size"
        overlap = self.overlap_written() if self.overlap else set()
        pending = self.cmd.pending if (self.cmd is not None and not self.overlap) else None
        for s in range(self.nb):
            lo, hi = s * SECTOR, (s + 1) * SECTOR
            now = disk[lo:hi]
            if now != self.pristine[lo:hi]:
                assert s in self.allowed or s in overlap, f"sector {s} changed but no WRITE command addressed it"
            if s in overlap:
                continue
            if pending is not None and pending[0] == s:
                assert now in (bytes(self.expected[lo:hi]), pending[1]), f"sector {s}: neither old nor new"
                continue
            assert now == self.expected[lo:hi], f"sector {s} does not hold what was last written to it"

    @invariant()
    def quiet_after_time_passed(self):
        if self.m is None or not self.settled:
            return
        s = self.drive
        if s.status & BSY:
            assert self.m.bus.cmd & SRST, f"BSY ({s.status:#x}) with nothing in flight and no SRST"

    def teardown(self):
        try:
            if self.m is not None:
                self.m.close()
                leaked = model_threads() - self.threads_before
                assert not {t for t in leaked if t.is_alive()}, f"model threads left running: {leaked}"
                assert open_fds() <= self.fds_before, f"fds left open: {open_fds() - self.fds_before}"
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


IDEFuzz.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, derandomize=DERANDOMIZE, database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # no "explain": tracing every line is slow
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], print_blob=True)

TestIDEFuzz = IDEFuzz.TestCase
