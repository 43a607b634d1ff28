"""arch/x86/kvm/emulate.c (Linux v3.7): KVM's x86 instruction emulator, for the instructions on the I/O path.

KVM emulates an instruction when the hardware exit alone does not say enough: every IN (the result must
go into a register later), every string I/O instruction (INS/OUTS, with their REP loops), and MMIO
accesses. This model covers exactly those:

* `x86_decode_insn` decodes with Capstone (the C has its own opcode tables);
* `x86_emulate_insn` runs the instruction: `em_in` / `em_out`, the `pio_in_emulated` read-ahead cache
  (1024 bytes, refilled from userspace in one exit of up to 1024/size elements, never past the page
  that RDI is in when DF = 0, emulate.c:1290-1292), `writeback`, `string_addr_inc` and the REP bookkeeping that decides
  whether to restart, to re-enter the guest, or to move RIP on;
* an MMIO instruction is carried out by the CPU model itself (`X86Cpu.mmio_step`: one step with the MMIO
  page backed by the data userspace answered), so any instruction works; KVM's part, moving data through
  `emulator_read_emulated` / `emulator_write_emulated` and `struct kvm_run`, is modelled as in the C.

Address size (ad_bytes) decides whether CX/ECX/RCX, SI/ESI/RSI and DI/EDI/RDI count; DF decides the
direction; ES:DI and DS:SI (or the override) use the segment bases of the current mode.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vmio_edu.cpu.decode import DecodeError, IoInsn, decode_io, disasm
from vmio_edu.linux.arch.x86.include.asm.page_types import PAGE_SIZE
from vmio_edu.linux.arch.x86.include.asm.kvm_host import (VCPU_REGS_RAX, VCPU_REGS_RCX, VCPU_REGS_RDI,
                                                          VCPU_REGS_RDX, VCPU_REGS_RSI)
from vmio_edu.trace.tracepoint import tracepoint

# return codes of the emulator's callbacks (kvm_emulate.h)
X86EMUL_CONTINUE = 0
X86EMUL_UNHANDLEABLE = 1
X86EMUL_PROPAGATE_FAULT = 2
X86EMUL_RETRY_INSTR = 3
X86EMUL_CMPXCHG_FAILED = 4
X86EMUL_IO_NEEDED = 5
X86EMUL_INTERCEPTED = 6
# return codes of x86_decode_insn / x86_emulate_insn
EMULATION_FAILED = -1
EMULATION_OK = 0
EMULATION_RESTART = 1
EMULATION_INTERCEPTED = 2
# ctxt->mode
X86EMUL_MODE_REAL, X86EMUL_MODE_VM86, X86EMUL_MODE_PROT16, X86EMUL_MODE_PROT32, X86EMUL_MODE_PROT64 = 0, 1, 2, 4, 8
MODE_BITS = {X86EMUL_MODE_REAL: 16, X86EMUL_MODE_VM86: 16, X86EMUL_MODE_PROT16: 16, X86EMUL_MODE_PROT32: 32,
             X86EMUL_MODE_PROT64: 64}
# operand types
OP_REG, OP_MEM, OP_MEM_STR, OP_IMM, OP_NONE = "OP_REG", "OP_MEM", "OP_MEM_STR", "OP_IMM", "OP_NONE"
REPE_PREFIX, REPNE_PREFIX = 0xF3, 0xF2
EFLG_ZF, EFLG_DF = 1 << 6, 1 << 10
# decode flags (the C's opcode-table bits that matter here)
String = 1 << 0
SrcSI = 1 << 1
DstDI = 1 << 2
Mov = 1 << 3
MmioInsn = 1 << 4     # model: "an instruction that touched MMIO", completed by the CPU's single step

IN_OPCODES = frozenset((0xE4, 0xE5, 0xEC, 0xED, 0x6C, 0x6D))


@dataclass
class operand:
    """struct operand. `reg` is the register index for OP_REG; `seg`/`ea` the address for OP_MEM."""

    type: str = OP_NONE
    bytes: int = 0
    val: int = 0
    reg: int | None = None
    seg: str = "ds"
    ea: int = 0
    count: int = 1
    data: bytes = b""


@dataclass
class read_cache:
    """struct read_cache: `u8 data[1024]` (kvm_emulate.h:248-252), the PIO read-ahead buffer."""

    data: bytearray = field(default_factory=lambda: bytearray(1024))
    pos: int = 0
    end: int = 0


@dataclass
class x86_exception:
    vector: int = 0
    error_code_valid: bool = False
    error_code: int = 0


@dataclass
class x86_emulate_ctxt:
    """struct x86_emulate_ctxt: the decoded instruction and the emulator's view of the registers."""

    ops: Any = None
    vcpu: Any = None
    eflags: int = 0
    eip: int = 0              # RIP of the instruction (written back to the vCPU when it completes)
    _eip: int = 0             # RIP after it
    mode: int = X86EMUL_MODE_REAL
    interruptibility: int = 0
    have_exception: bool = False
    exception: x86_exception = field(default_factory=x86_exception)
    perm_ok: bool = False
    only_vendor_specific_insn: bool = False
    guest_mode: bool = False
    # decode cache
    b: int = 0
    d: int = 0
    rep_prefix: int = 0
    op_bytes: int = 0
    ad_bytes: int = 0
    src: operand = field(default_factory=operand)
    dst: operand = field(default_factory=operand)
    io_read: read_cache = field(default_factory=read_cache)
    regs_valid: int = 0
    regs_dirty: int = 0
    _regs: list[int] = field(default_factory=lambda: [0] * 17)
    # model: what was decoded, for views and messages
    text: str = ""
    insn_bytes: bytes = b""
    io: IoInsn | None = None
    mmio_gpa: int = 0
    mmio_size: int = 0
    mmio_is_write: bool = False
    fail_reason: str = ""

    def view(self) -> dict:
        return {"text": self.text, "bytes": self.insn_bytes.hex(" "), "eip": self.eip, "_eip": self._eip,
                "mode": MODE_BITS.get(self.mode), "rep_prefix": self.rep_prefix, "ad_bytes": self.ad_bytes,
                "src": vars(self.src).copy(), "dst": vars(self.dst).copy(),
                "io_read": {"pos": self.io_read.pos, "end": self.io_read.end}}


# -- register cache (emulate.c:205-235) -------------------------------------------------------------------
def reg_read(ctxt: x86_emulate_ctxt, nr: int) -> int:
    if not ctxt.regs_valid >> nr & 1:
        ctxt.regs_valid |= 1 << nr
        ctxt._regs[nr] = ctxt.ops.read_gpr(ctxt, nr)
    return ctxt._regs[nr]


def reg_write(ctxt: x86_emulate_ctxt, nr: int, val: int) -> None:
    ctxt.regs_valid |= 1 << nr
    ctxt.regs_dirty |= 1 << nr
    ctxt._regs[nr] = val & 0xFFFF_FFFF_FFFF_FFFF


def writeback_registers(ctxt: x86_emulate_ctxt) -> None:
    for nr in range(16):
        if ctxt.regs_dirty >> nr & 1:
            ctxt.ops.write_gpr(ctxt, nr, ctxt._regs[nr])
    ctxt.regs_dirty = 0


def emulator_invalidate_register_cache(ctxt: x86_emulate_ctxt) -> None:
    ctxt.regs_dirty = 0
    ctxt.regs_valid = 0


def ad_mask(ctxt: x86_emulate_ctxt) -> int:
    return (1 << (ctxt.ad_bytes * 8)) - 1


def address_mask(ctxt: x86_emulate_ctxt, reg: int) -> int:
    return reg if ctxt.ad_bytes == 8 else reg & ad_mask(ctxt)


def register_address(ctxt: x86_emulate_ctxt, reg: int) -> int:
    return address_mask(ctxt, reg)


def register_address_increment(ctxt: x86_emulate_ctxt, nr: int, inc: int) -> None:
    """Only the address-size part of the register moves: SI wraps inside RSI in 16-bit code."""
    reg = reg_read(ctxt, nr)
    if ctxt.ad_bytes == 8:
        reg_write(ctxt, nr, reg + inc)
    else:
        m = ad_mask(ctxt)
        reg_write(ctxt, nr, (reg & ~m) | ((reg + inc) & m))


def linearize(ctxt: x86_emulate_ctxt, seg: str, ea: int) -> int:
    """Segment base + effective address (no limit checks: the guests here use flat or real-mode segments)."""
    la = ctxt.ops.get_segment_base(ctxt, seg) + ea
    if ctxt.mode != X86EMUL_MODE_PROT64:
        la &= 0xFFFF_FFFF
    return la


def segmented_read(ctxt: x86_emulate_ctxt, op: operand, n: int) -> tuple[int, bytes]:
    return ctxt.ops.read_emulated(ctxt, linearize(ctxt, op.seg, op.ea), n)


def segmented_write(ctxt: x86_emulate_ctxt, op: operand, data: bytes) -> int:
    return ctxt.ops.write_emulated(ctxt, linearize(ctxt, op.seg, op.ea), data)


# -- decode ---------------------------------------------------------------------------------------------
@tracepoint("kvm", args=("ctxt", "insn", "insn_len"))
def x86_decode_insn(ctxt: x86_emulate_ctxt, insn: bytes | None = None, insn_len: int = 0) -> int:
    """Fetch the instruction at CS:RIP and decode its prefixes (REP F3/F2, 66, 67, segment), opcode and
    operands. Here Capstone does the decoding; IN/OUT/INS/OUTS get their operands, an instruction that
    touched MMIO is marked for the CPU to complete."""
    bits = MODE_BITS[ctxt.mode]
    ctxt.src, ctxt.dst, ctxt.d, ctxt.rep_prefix, ctxt.io = operand(), operand(), 0, 0, None
    ctxt.fail_reason = ""
    code = insn[:insn_len] if insn else ctxt.ops.fetch(ctxt, ctxt.eip, 15)
    ctxt.insn_bytes = code or b""
    if not code:
        ctxt.fail_reason = f"cannot fetch the instruction at rip={ctxt.eip:#x}: it is not in guest RAM"
        return EMULATION_FAILED
    ctxt.text = disasm(code, bits, ctxt.eip)
    if ctxt.only_vendor_specific_insn:  # EMULTYPE_TRAP_UD: KVM only emulates vmcall/sysenter-like insns
        ctxt.fail_reason = f"{ctxt.text!r} is not an instruction KVM emulates for #UD"
        return EMULATION_FAILED
    try:
        io = decode_io(code, bits)
    except DecodeError:
        io = None
    if io is not None:
        ctxt.io = io
        i = 0
        while code[i] in (0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3) or \
                (bits == 64 and 0x40 <= code[i] <= 0x4F):
            i += 1
        ctxt.b, ctxt.rep_prefix, ctxt.ad_bytes = code[i], io.rep_prefix, io.ad_bytes
        ctxt.op_bytes = io.size
        ctxt.insn_bytes = code[:io.length]
        ctxt._eip = ctxt.eip + io.length
        port = operand(OP_IMM, 1, io.port) if io.imm else \
            operand(OP_REG, 2, reg_read(ctxt, VCPU_REGS_RDX) & 0xFFFF, VCPU_REGS_RDX)
        if io.string and io.is_in:
            ctxt.d = String | DstDI | Mov
            ctxt.dst = operand(OP_MEM, io.size, 0, None, "es", register_address(ctxt, reg_read(ctxt, VCPU_REGS_RDI)))
            ctxt.src = port
        elif io.string:
            ctxt.d = String | SrcSI
            ctxt.src = operand(OP_MEM, io.size, 0, None, io.seg if bits != 64 or io.seg in ("fs", "gs") else "ds",
                               register_address(ctxt, reg_read(ctxt, VCPU_REGS_RSI)))
            ctxt.dst = port
        elif io.is_in:
            ctxt.dst = operand(OP_REG, io.size, 0, VCPU_REGS_RAX)
            ctxt.src = port
        else:
            mask = (1 << (8 * io.size)) - 1
            ctxt.src = operand(OP_REG, io.size, reg_read(ctxt, VCPU_REGS_RAX) & mask, VCPU_REGS_RAX)
            ctxt.dst = port
        return EMULATION_OK
    access = ctxt.ops.mmio_access(ctxt)
    if access is not None and not access.is_fetch:
        ctxt.d = MmioInsn
        ctxt.mmio_gpa, ctxt.mmio_size, ctxt.mmio_is_write = access.gpa, access.size, access.is_write
        return EMULATION_OK
    ctxt.fail_reason = (f"{ctxt.text!r} ({code[:8].hex(' ')}) at rip={ctxt.eip:#x} is not an instruction "
                        "the modelled emulator handles")
    return EMULATION_FAILED


# -- the I/O instructions -----------------------------------------------------------------------------------
@tracepoint("kvm", args=("ctxt", "size", "port"))
def pio_in_emulated(ctxt: x86_emulate_ctxt, size: int, port: int) -> tuple[int, bytes]:
    """IN/INS data from the read-ahead cache; on an empty cache ask for n elements at once.

    n = min(min(bytes to the end of RDI's page (DF=0) or RDI's page offset (DF=1), 1024) / size, RCX),
    at least 1 (emulate.c:1286-1296). Returns (ok, the bytes for this instruction step): with REP and
    DF=0 all the cached elements at once (OP_MEM_STR), otherwise one element.
    """
    rc = ctxt.io_read
    if rc.pos == rc.end:  # refill pio read ahead
        count = address_mask(ctxt, reg_read(ctxt, VCPU_REGS_RCX)) if ctxt.rep_prefix else 1
        rdi_off = reg_read(ctxt, VCPU_REGS_RDI) & (PAGE_SIZE - 1)  # offset_in_page()
        in_page = rdi_off if ctxt.eflags & EFLG_DF else PAGE_SIZE - rdi_off
        n = min(min(in_page, len(rc.data)) // size, count)
        if n == 0:
            n = 1
        rc.pos = rc.end = 0
        ok, data = ctxt.ops.pio_in_emulated(ctxt, size, port, n)
        if not ok:
            return 0, b""
        rc.data[:n * size] = data
        rc.end = n * size
    if ctxt.rep_prefix and not ctxt.eflags & EFLG_DF:
        data = bytes(rc.data[rc.pos:rc.end])
        ctxt.dst.data = data
        ctxt.dst.type = OP_MEM_STR
        ctxt.dst.count = (rc.end - rc.pos) // size
        rc.pos = rc.end
    else:
        data = bytes(rc.data[rc.pos:rc.pos + size])
        rc.pos += size
    return 1, data


@tracepoint("kvm", args=("ctxt",))
def em_in(ctxt: x86_emulate_ctxt) -> int:
    """IN/INS: the data comes from `pio_in_emulated`; X86EMUL_IO_NEEDED sends the vCPU to userspace."""
    ok, data = pio_in_emulated(ctxt, ctxt.dst.bytes, ctxt.src.val)
    if not ok:
        return X86EMUL_IO_NEEDED
    if ctxt.dst.type != OP_MEM_STR:
        ctxt.dst.val = int.from_bytes(data, "little")
    return X86EMUL_CONTINUE


@tracepoint("kvm", args=("ctxt",))
def em_out(ctxt: x86_emulate_ctxt) -> int:
    """OUT/OUTS: always one element (count 1, emulate.c:3274-3281); no register writeback."""
    ctxt.ops.pio_out_emulated(ctxt, ctxt.src.bytes, ctxt.dst.val,
                              (ctxt.src.val & ((1 << (8 * ctxt.src.bytes)) - 1)).to_bytes(ctxt.src.bytes, "little"), 1)
    ctxt.dst.type = OP_NONE  # disable writeback
    return X86EMUL_CONTINUE


def write_register_operand(ctxt: x86_emulate_ctxt, op: operand) -> None:
    """1 and 2 bytes merge into the register; 4 bytes zero-extend (as in 64-bit mode); 8 replace."""
    old = reg_read(ctxt, op.reg)
    if op.bytes == 1:
        val = (old & ~0xFF) | (op.val & 0xFF)
    elif op.bytes == 2:
        val = (old & ~0xFFFF) | (op.val & 0xFFFF)
    elif op.bytes == 4:
        val = op.val & 0xFFFF_FFFF
    else:
        val = op.val
    reg_write(ctxt, op.reg, val)


@tracepoint("kvm", args=("ctxt",))
def writeback(ctxt: x86_emulate_ctxt) -> int:
    """Store the destination operand: a register, one memory element, or all elements of a string batch."""
    dst = ctxt.dst
    if dst.type == OP_REG:
        write_register_operand(ctxt, dst)
    elif dst.type == OP_MEM:
        return segmented_write(ctxt, dst, (dst.val & ((1 << (8 * dst.bytes)) - 1)).to_bytes(dst.bytes, "little"))
    elif dst.type == OP_MEM_STR:
        return segmented_write(ctxt, dst, dst.data[:dst.bytes * dst.count])
    return X86EMUL_CONTINUE


def string_addr_inc(ctxt: x86_emulate_ctxt, reg: int, op: operand) -> None:
    """Move RSI/RDI past the elements just moved, backwards if DF=1 (emulate.c:2807)."""
    df = -op.count if ctxt.eflags & EFLG_DF else op.count
    register_address_increment(ctxt, reg, df * op.bytes)
    op.ea = register_address(ctxt, reg_read(ctxt, reg))


@tracepoint("kvm", args=("ctxt",))
def string_insn_completed(ctxt: x86_emulate_ctxt) -> bool:
    """The second REP termination condition, for REPE/REPNE CMPS/SCAS only: never true for INS/OUTS."""
    if ctxt.b in (0xA6, 0xA7, 0xAE, 0xAF) and (
            (ctxt.rep_prefix == REPE_PREFIX and not ctxt.eflags & EFLG_ZF)
            or (ctxt.rep_prefix == REPNE_PREFIX and ctxt.eflags & EFLG_ZF)):
        return True
    return False


def _done(ctxt: x86_emulate_ctxt, rc: int) -> int:
    if rc == X86EMUL_PROPAGATE_FAULT:
        ctxt.have_exception = True
    if rc == X86EMUL_INTERCEPTED:
        return EMULATION_INTERCEPTED
    if rc == X86EMUL_CONTINUE:
        writeback_registers(ctxt)
    return EMULATION_FAILED if rc == X86EMUL_UNHANDLEABLE else EMULATION_OK


@tracepoint("kvm", args=("ctxt",))
def x86_emulate_insn(ctxt: x86_emulate_ctxt) -> int:
    """Execute the decoded instruction (emulate.c:4357).

    String I/O: with REP and RCX = 0 just move RIP on (4439-4444). Otherwise do one step (OUTS: one
    element; INS: the cached batch), write back, advance RSI/RDI, subtract the count from RCX, and then
    either restart at once (EMULATION_RESTART: more elements and the cache is not exhausted, or no cache
    and RCX not a multiple of 1024), or finish without touching RIP so the guest re-executes the
    instruction (4600-4617). Only a completed instruction moves RIP (`ctxt->eip = ctxt->_eip`).
    """
    if ctxt.d & MmioInsn:
        return _done(ctxt, em_mmio(ctxt))
    saved_dst_type = ctxt.dst.type
    if ctxt.rep_prefix and ctxt.d & String:
        # All REP prefixes have the same first termination condition
        if address_mask(ctxt, reg_read(ctxt, VCPU_REGS_RCX)) == 0:
            ctxt.eip = ctxt._eip
            return _done(ctxt, X86EMUL_CONTINUE)
    if ctxt.src.type == OP_MEM:
        rc, data = segmented_read(ctxt, ctxt.src, ctxt.src.bytes)
        if rc != X86EMUL_CONTINUE:
            return _done(ctxt, rc)
        ctxt.src.val = int.from_bytes(data, "little")

    rc = em_in(ctxt) if ctxt.b in IN_OPCODES else em_out(ctxt)
    if rc != X86EMUL_CONTINUE:
        return _done(ctxt, rc)

    rc = writeback(ctxt)
    if rc != X86EMUL_CONTINUE:
        return _done(ctxt, rc)
    # restore dst type in case the decoding will be reused (happens for string instructions)
    ctxt.dst.type = saved_dst_type
    if ctxt.d & SrcSI:
        string_addr_inc(ctxt, VCPU_REGS_RSI, ctxt.src)
    if ctxt.d & DstDI:
        string_addr_inc(ctxt, VCPU_REGS_RDI, ctxt.dst)

    if ctxt.rep_prefix and ctxt.d & String:
        r = ctxt.io_read
        count = ctxt.src.count if ctxt.d & SrcSI else ctxt.dst.count
        register_address_increment(ctxt, VCPU_REGS_RCX, -count)
        if not string_insn_completed(ctxt):
            # Re-enter guest when pio read ahead buffer is empty or, if it is not used, after each 1024
            # iterations.
            if (r.end != 0 or reg_read(ctxt, VCPU_REGS_RCX) & 0x3FF) and (r.end == 0 or r.end != r.pos):
                writeback_registers(ctxt)
                return EMULATION_RESTART
            return _done(ctxt, X86EMUL_CONTINUE)  # skip rip writeback
    ctxt.eip = ctxt._eip
    return _done(ctxt, X86EMUL_CONTINUE)


# -- MMIO ----------------------------------------------------------------------------------------------------
def em_mmio(ctxt: x86_emulate_ctxt) -> int:
    """An instruction that accessed MMIO (model: the CPU executes it over a scratch page).

    A read first goes out as KVM_EXIT_MMIO (X86EMUL_IO_NEEDED, RIP unchanged); on the next KVM_RUN the
    answered bytes come back through `read_prepare` and the CPU completes the instruction. Whatever the
    instruction writes to MMIO goes out through `emulator_write_emulated`, after the instruction has
    completed (RIP advanced).
    """
    ops = ctxt.ops
    reads: dict[int, bytes] = {}
    if not ctxt.mmio_is_write:
        rc, data = ops.read_emulated_gpa(ctxt, ctxt.mmio_gpa, ctxt.mmio_size)
        if rc != X86EMUL_CONTINUE:
            return rc
        reads[ctxt.mmio_gpa] = data
    rc, log = ops.mmio_step(ctxt, reads)
    if rc != X86EMUL_CONTINUE:
        return rc
    for kind, gpa, size, value in log:
        if kind == "write":
            rc = ops.write_emulated_gpa(ctxt, gpa, value.to_bytes(size, "little"))
            if rc != X86EMUL_CONTINUE:
                return rc
    return X86EMUL_CONTINUE
