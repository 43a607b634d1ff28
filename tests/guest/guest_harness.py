"""A raw-Unicorn harness for the default guest: a unit test of the guest's *logic* only.

This is not the project's emulated engine (vmio_edu/cpu) and models nothing of the real I/O path: no
VMX exits, no kvm_run, no QEMU. Unicorn runs the guest in long mode with the loader's state copied into
its registers; every IN/OUT is answered by a UC_HOOK_INSN hook talking to `AtaStandIn`, a tiny
synchronous stand-in for an IDE drive (status 0x58 while data is expected, 0x50 after, 0x41/ABRT for an
unknown command) that also logs the PIC ports.

Raw Unicorn never dispatches interrupts or exceptions through the IDT (an `int n` or a fault goes to a
UC_HOOK_INTR callback, or stops the emulation). So the harness does what the CPU would: it reads the gate
the guest wrote into its IDT, pushes the long-mode interrupt frame and jumps to the handler. IRQ 14 is
delivered the same way, but only when the guest sits in `hlt` with IF=1 (this guest enables interrupts
nowhere else) and the stand-in has raised its interrupt line with nIEN clear.

One raw-Unicorn artefact to know: Unicorn keeps QEMU's double-fault bookkeeping (`old_exception`) but
never delivers, so after the first stop a real #DE (a contributory fault) is reported as #DF. Tests
therefore raise vectors with `int n`, or use `ud2` (#UD is not contributory).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import capstone
from unicorn import UC_ARCH_X86, UC_ERR_INSN_INVALID, UC_HOOK_CODE, UC_HOOK_INSN, UC_HOOK_INTR, \
    UC_MODE_64, Uc, UcError
from unicorn import x86_const as X

from vmio_edu.guest import boot_state, default_guest, load_code
from vmio_edu.guest.loader import BootState
from vmio_edu.guest.programs import GuestParams, GuestResult

RAM_SIZE = 2 << 20
SECTOR = 512
ERR, DRQ, DSC, DRDY = 0x01, 0x08, 0x10, 0x40
ABRT, IDNF = 0x04, 0x10
PIC_PORTS = (0x20, 0x21, 0xA0, 0xA1)
ERROR_CODE_VECTORS = {8, 10, 11, 12, 13, 14, 17, 21, 29, 30}


def identify_block() -> bytes:
    """A recognisable 512-byte IDENTIFY answer (not a faithful one)."""
    words = [0x0040] + [(0x1000 + i) & 0xFFFF for i in range(1, 256)]
    return struct.pack("<256H", *words)


@dataclass
class AtaStandIn:
    """Just enough of an ATA drive on ports 0x1f0-0x1f7/0x3f6, answering at once (never BSY)."""

    sectors: int = 64
    disk: bytearray = field(default=None)  # type: ignore[assignment]
    status: int = DRDY | DSC
    error: int = 0
    regs: dict = field(default_factory=lambda: {0x1F2: 0, 0x1F3: 0, 0x1F4: 0, 0x1F5: 0, 0x1F6: 0})
    ctl: int = 0
    irq: bool = False                 # the INTRQ line
    broken_no_drq: bool = False       # answer WRITE SECTORS without asking for data (protocol test)
    log: list = field(default_factory=list)  # ("in"/"out", port, size, value), in order
    _mode: str = "idle"
    _lba: int = 0
    _left: int = 0
    _block: bytearray = field(default_factory=bytearray)
    _pos: int = 0

    def __post_init__(self):
        if self.disk is None:
            self.disk = bytearray(self.sectors * SECTOR)

    # -- helpers ----------------------------------------------------------------------------------
    def _raise_irq(self):
        if not self.ctl & 0x02:          # nIEN blocks the interrupt, as ide_set_irq does
            self.irq = True

    def _abort(self, error=ABRT):
        self.status, self.error, self._mode = DRDY | ERR, error, "idle"
        self._raise_irq()

    def _taskfile_lba(self) -> int:
        r = self.regs
        return r[0x1F3] | r[0x1F4] << 8 | r[0x1F5] << 16 | (r[0x1F6] & 0x0F) << 24

    def _open_read_block(self):
        if self._lba >= self.sectors:
            return self._abort(IDNF)
        self._block = bytearray(self.disk[self._lba * SECTOR:(self._lba + 1) * SECTOR])
        self._pos, self.status = 0, DRDY | DSC | DRQ
        self._raise_irq()

    def _command(self, cmd: int):
        count = self.regs[0x1F2] or 256
        self.error = 0
        if cmd == 0x30:
            self._lba, self._left = self._taskfile_lba(), count
            if self._lba >= self.sectors:
                return self._abort(IDNF)
            if self.broken_no_drq:
                self.status = DRDY | DSC
                return
            self._mode, self._block, self._pos = "write", bytearray(SECTOR), 0
            self.status = DRDY | DSC | DRQ   # no IRQ before the first block
        elif cmd == 0x20:
            self._mode, self._lba, self._left = "read", self._taskfile_lba(), count
            self._open_read_block()
        elif cmd == 0xEC:
            self._mode, self._left = "identify", 1
            self._block, self._pos, self.status = bytearray(identify_block()), 0, DRDY | DSC | DRQ
            self._raise_irq()
        else:
            self._abort()

    # -- the port interface -----------------------------------------------------------------------
    def port_out(self, port: int, size: int, value: int):
        self.log.append(("out", port, size, value))
        if port == 0x3F6:
            self.ctl = value
        elif port in self.regs:
            self.regs[port] = value & 0xFF
        elif port == 0x1F7:
            self._command(value & 0xFF)
        elif port == 0x1F0 and size == 2 and self._mode == "write" and self.status & DRQ:
            self._block[self._pos:self._pos + 2] = struct.pack("<H", value & 0xFFFF)
            self._pos += 2
            if self._pos == SECTOR:
                if self._lba >= self.sectors:
                    return self._abort(IDNF)
                self.disk[self._lba * SECTOR:(self._lba + 1) * SECTOR] = self._block
                self._lba, self._left, self._pos = self._lba + 1, self._left - 1, 0
                if self._left:
                    self.status = DRDY | DSC | DRQ
                    if self._lba >= self.sectors:   # the next sector does not exist: fail after this block
                        self.status, self.error, self._mode = DRDY | DSC | ERR, IDNF, "idle"
                else:
                    self.status, self._mode = DRDY | DSC, "idle"
                self._raise_irq()

    def port_in(self, port: int, size: int) -> int:
        value = self._port_in(port, size)
        self.log.append(("in", port, size, value))
        return value

    def _port_in(self, port: int, size: int) -> int:
        if port == 0x1F7:
            self.irq = False             # reading status acknowledges the interrupt
            return self.status
        if port == 0x3F6:
            return self.status
        if port == 0x1F1:
            return self.error
        if port == 0x1F0 and size == 2 and self._mode in ("read", "identify") and self.status & DRQ:
            value = struct.unpack_from("<H", self._block, self._pos)[0]
            self._pos += 2
            if self._pos == SECTOR:
                self._left -= 1
                if self._left:
                    self._lba += 1
                    self._open_read_block()
                else:
                    self.status, self._mode = DRDY | DSC, "idle"
            return value
        return 0xFF if size == 1 else 0xFFFF

    # -- views for the tests ----------------------------------------------------------------------
    def outs(self, *ports):
        return [(p, v) for d, p, s, v in self.log if d == "out" and p in ports]

    def data_words(self, direction: str):
        return [v for d, p, s, v in self.log if d == direction and p == 0x1F0 and s == 2]


class GuestMachine:
    """RAM + Unicorn + the stand-in, with the harness's interrupt delivery."""

    def __init__(self, ata: AtaStandIn | None = None):
        self.ata = ata or AtaStandIn()
        self.ram = bytearray(RAM_SIZE)
        self.program = default_guest()
        self.code = self.program.assemble()
        self.state: BootState = boot_state(self.ram, 64, self.program.entry)
        load_code(self.ram, self.code, self.program.load_addr)
        self.uc = Uc(UC_ARCH_X86, UC_MODE_64)
        self.delivered: list[int] = []      # vectors the harness dispatched, in order
        self._pending: int | None = None
        self._hlt_seen: set[int] = set()
        self._hlt_hooks: set[int] = set()

    # -- set-up -----------------------------------------------------------------------------------
    def start(self, params: GuestParams | None, buffer: bytes = b"", budget: int = 2_000_000) -> GuestResult:
        """Run the default guest; `params=None` if the parameter block is already in `self.ram`."""
        if params is not None:
            params.write(self.ram)
            self.ram[params.buffer:params.buffer + len(buffer)] = buffer
        self.uc.mem_map(0, RAM_SIZE)
        self.uc.mem_write(0, bytes(self.ram))
        self._apply_state(self.state)
        self.uc.hook_add(UC_HOOK_INSN, lambda uc, port, size, ud: self.ata.port_in(port, size),
                         None, 1, 0, X.UC_X86_INS_IN)
        self.uc.hook_add(UC_HOOK_INSN, lambda uc, port, size, value, ud: self.ata.port_out(port, size, value),
                         None, 1, 0, X.UC_X86_INS_OUT)
        self.uc.hook_add(UC_HOOK_INTR, self._on_intr)
        self._hook_hlts(self.program.load_addr, self.code)
        self.run(self.program.entry, budget)
        return self.result()

    def _apply_state(self, st: BootState):
        """The loader's kvm_sregs/kvm_regs, translated as far as raw Unicorn takes them."""
        s, r = st.sregs, st.regs
        uc = self.uc
        uc.reg_write(X.UC_X86_REG_GDTR, (0, s.gdt.base, s.gdt.limit, 0))
        uc.reg_write(X.UC_X86_REG_IDTR, (0, s.idt.base, s.idt.limit, 0))
        uc.reg_write(X.UC_X86_REG_CR3, s.cr3)
        uc.reg_write(X.UC_X86_REG_CR4, s.cr4)
        uc.reg_write(X.UC_X86_REG_MSR, (0xC0000080, s.efer))
        uc.reg_write(X.UC_X86_REG_CR0, s.cr0)
        for reg, seg in ((X.UC_X86_REG_CS, s.cs), (X.UC_X86_REG_SS, s.ss), (X.UC_X86_REG_DS, s.ds),
                         (X.UC_X86_REG_ES, s.es), (X.UC_X86_REG_FS, s.fs), (X.UC_X86_REG_GS, s.gs)):
            uc.reg_write(reg, seg.selector)  # Unicorn loads the descriptor from the GDT in RAM
        uc.reg_write(X.UC_X86_REG_RSP, r.rsp)
        uc.reg_write(X.UC_X86_REG_RFLAGS, r.rflags)

    def _hook_hlts(self, base: int, code: bytes):
        md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        for addr, _size, mnemonic, _ops in md.disasm_lite(code, base):
            if mnemonic == "hlt" and addr not in self._hlt_hooks:
                self._hlt_hooks.add(addr)
                self.uc.hook_add(UC_HOOK_CODE, lambda uc, a, s, ud: self._hlt_seen.add(a), None, addr, addr)

    def load_extra(self, addr: int, code: bytes):
        """Put another snippet in RAM (after a run, to poke at the installed handlers)."""
        self.uc.mem_write(addr, code)
        self._hook_hlts(addr, code)

    # -- running ----------------------------------------------------------------------------------
    def _on_intr(self, uc, intno, ud):
        self._pending = intno
        uc.emu_stop()

    def run(self, rip: int, budget: int = 2_000_000):
        """Run until the guest halts with interrupts off; deliver exceptions and IRQ 14 on the way."""
        for _ in range(10_000):
            self._hlt_seen.clear()
            try:
                self.uc.emu_start(rip, 0xFFFF_FFFF_FFFF, count=budget)
            except UcError as e:
                if e.errno != UC_ERR_INSN_INVALID:
                    raise
                self._pending = 6                               # #UD
            rip = self.uc.reg_read(X.UC_X86_REG_RIP)
            if self._pending is not None:
                vector, self._pending = self._pending, None
                self.deliver(vector, rip)
                rip = self.uc.reg_read(X.UC_X86_REG_RIP)
                continue
            if rip - 1 not in self._hlt_seen:
                raise AssertionError(f"guest did not halt within {budget} instructions (rip={rip:#x})")
            if not self.uc.reg_read(X.UC_X86_REG_RFLAGS) & 0x200:
                return                                          # cli; hlt: the end
            if not self.ata.irq:
                raise AssertionError(f"guest waits in hlt at {rip - 1:#x} but no interrupt will come")
            self.deliver(self.irq14_vector(), rip)
            rip = self.uc.reg_read(X.UC_X86_REG_RIP)
        raise AssertionError("too many stops")

    def irq14_vector(self) -> int:
        """Where the PIC, as the guest programmed it, would send IRQ 14: slave ICW2 base + 6."""
        slave = [v for p, v in self.ata.outs(0xA0, 0xA1)]
        icw1 = slave.index(0x11)
        return (slave[icw1 + 1] & 0xF8) + 6

    def deliver(self, vector: int, rip: int):
        """What the CPU does for an interrupt in long mode, through the guest's own IDT."""
        uc = self.uc
        _sel, base, limit, _flags = uc.reg_read(X.UC_X86_REG_IDTR)
        if vector * 16 + 15 > limit:
            raise AssertionError(f"vector {vector:#x} is outside the IDT (limit {limit:#x}): triple fault")
        lo, hi = struct.unpack("<QQ", uc.mem_read(base + vector * 16, 16))
        offset = (lo & 0xFFFF) | ((lo >> 48) & 0xFFFF) << 16 | (hi & 0xFFFFFFFF) << 32
        selector, attrs = (lo >> 16) & 0xFFFF, (lo >> 40) & 0xFF
        cs = uc.reg_read(X.UC_X86_REG_CS)
        assert attrs == 0x8E, f"gate {vector:#x}: attributes {attrs:#x}, want present interrupt gate 0x8e"
        assert selector == cs, f"gate {vector:#x}: selector {selector:#x} is not CS {cs:#x}"
        rsp, rflags = uc.reg_read(X.UC_X86_REG_RSP), uc.reg_read(X.UC_X86_REG_RFLAGS)
        frame = [uc.reg_read(X.UC_X86_REG_SS), rsp, rflags, cs, rip]
        if vector in ERROR_CODE_VECTORS:
            frame.append(0)
        rsp = (rsp & ~0xF) - 8 * len(frame)
        uc.mem_write(rsp, struct.pack(f"<{len(frame)}Q", *reversed(frame)))
        uc.reg_write(X.UC_X86_REG_RSP, rsp)
        uc.reg_write(X.UC_X86_REG_RFLAGS, rflags & ~0x300)      # interrupt gate: IF and TF cleared
        uc.reg_write(X.UC_X86_REG_RIP, offset)
        self.delivered.append(vector)

    # -- results ----------------------------------------------------------------------------------
    def ram_now(self) -> bytearray:
        """A copy of all guest RAM as Unicorn left it."""
        return bytearray(self.uc.mem_read(0, RAM_SIZE))

    def mem(self, addr: int, size: int) -> bytes:
        return bytes(self.uc.mem_read(addr, size))

    def result(self) -> GuestResult:
        from vmio_edu.guest.programs import RESULT_ADDR
        return GuestResult.unpack(self.mem(RESULT_ADDR, GuestResult.SIZE))
