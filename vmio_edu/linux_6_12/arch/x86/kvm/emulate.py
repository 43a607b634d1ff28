"""arch/x86/kvm/emulate.c (Linux v6.12): the instruction emulator, for the instructions on the I/O path.

In 6.12 the emulator sees far less of the I/O path than in 3.7: `handle_io` sends only *string* I/O here
(INS/OUTS, with or without REP); a plain IN or OUT takes `kvm_fast_pio` (x86.c). MMIO still comes here.

What the model keeps from the 3.7 emulator, because it is the same record and the same arithmetic in both
trees: `struct x86_emulate_ctxt` and `struct operand` (kvm_emulate.h), the register cache
(`reg_read`/`reg_write`/`writeback_registers`), address-size masking, segment linearization, register
operand writeback, and the decoding of an instruction with Capstone (`vmio_edu.linux.arch.x86.kvm.emulate`).
The stages a learner steps through are this module's, with 6.12's lines:

* `pio_in_emulated` (emulate.c:1425): the read-ahead cache holds 1024 bytes (kvm_emulate.h:274-278); an
  empty cache asks userspace for n = min3(room to the page end **in bytes**, 1024 / size, RCX) elements
  (emulate.c:1438). 3.7 divided the room by the element size first; 6.12 uses the byte count as an element
  count, so a batch that starts 256 bytes before the page end takes 256 words (512 bytes), past the page.
* `x86_emulate_insn` (emulate.c:5104): REP string instructions run with RFLAGS.RF set (5247-5250, cleared
  when the instruction completes, 5381); RCX = 0 finishes at once (5193-5200); after each step the REP
  bookkeeping restarts in the kernel or goes back to the guest exactly as in 3.7 (5354-5382).
* `em_in` / `em_out` (emulate.c:3560 / 3569): OUTS always sends one element.

Not modelled: `string_registers_quirk` (emulate.c:2607), which only acts on an Intel guest CPUID with a
32-bit address size and RCX already 0 (it clears RCX's upper half); the model's guests never meet it.
"""
from __future__ import annotations

from vmio_edu.linux.arch.x86.kvm import emulate as _e37
# Shared with the 3.7 model (same structures and helpers in both trees; see the module docstring).
from vmio_edu.linux.arch.x86.kvm.emulate import (  # noqa: F401
    EMULATION_FAILED, EMULATION_INTERCEPTED, EMULATION_OK, EMULATION_RESTART, IN_OPCODES, MODE_BITS, MmioInsn,
    Mov, OP_MEM, OP_MEM_STR, OP_NONE, OP_REG, REPE_PREFIX, REPNE_PREFIX, DstDI, SrcSI, String,
    X86EMUL_CONTINUE, X86EMUL_INTERCEPTED, X86EMUL_IO_NEEDED, X86EMUL_MODE_PROT16, X86EMUL_MODE_PROT32,
    X86EMUL_MODE_PROT64, X86EMUL_MODE_REAL, X86EMUL_MODE_VM86, X86EMUL_PROPAGATE_FAULT, X86EMUL_RETRY_INSTR,
    X86EMUL_UNHANDLEABLE, address_mask, em_mmio, emulator_invalidate_register_cache, operand, read_cache,
    reg_read, reg_write, register_address, register_address_increment, segmented_read, segmented_write,
    write_register_operand, writeback_registers, x86_emulate_ctxt, x86_exception)
from vmio_edu.linux_6_12.arch.x86.include.asm.kvm_host import VCPU_REGS_RCX, VCPU_REGS_RDI, VCPU_REGS_RSI
from vmio_edu.trace.tracepoint import tracepoint

PAGE_SIZE = 4096
X86_EFLAGS_ZF, X86_EFLAGS_DF, X86_EFLAGS_RF = 1 << 6, 1 << 10, 1 << 16

_decode = _e37.x86_decode_insn.__wrapped__  # the Capstone decoder behind 3.7's trace point, untraced


@tracepoint("kvm", args=("ctxt",))
def init_decode_cache(ctxt: x86_emulate_ctxt) -> None:
    """Forget the last instruction: prefixes, the register cache and both read-ahead caches."""
    ctxt.rep_prefix = 0
    ctxt.regs_valid = ctxt.regs_dirty = 0
    ctxt.io_read.pos = ctxt.io_read.end = 0


@tracepoint("kvm", args=("ctxt", "insn", "insn_len", "emulation_type"))
def x86_decode_insn(ctxt: x86_emulate_ctxt, insn: bytes | None = None, insn_len: int = 0,
                    emulation_type: int = 0) -> int:
    """Fetch the instruction at CS:RIP and decode its prefixes, opcode and operands (Capstone here; the C
    has its opcode tables). IN/OUT/INS/OUTS get their operands; an instruction that touched MMIO is
    marked for the CPU to complete."""
    return _decode(ctxt, insn, insn_len)


@tracepoint("kvm", args=("ctxt", "size", "port", "dest"))
def pio_in_emulated(ctxt: x86_emulate_ctxt, size: int, port: int, dest: object = None) -> tuple[int, bytes]:
    """IN/INS data from the read-ahead cache; on an empty cache ask for n elements at once.

    n = min3(in_page, 1024 / size, count), at least 1 (emulate.c:1431-1440), where `in_page` is the number
    of *bytes* from RDI to the page end (DF=0) or RDI's page offset (DF=1) and `count` is RCX (REP) or 1.
    Returns (ok, the bytes of this step): with REP and DF=0 the whole cached batch (OP_MEM_STR), else one
    element.
    """
    rc = ctxt.io_read
    if rc.pos == rc.end:  # refill pio read ahead
        count = address_mask(ctxt, reg_read(ctxt, VCPU_REGS_RCX)) if ctxt.rep_prefix else 1
        rdi_off = reg_read(ctxt, VCPU_REGS_RDI) & (PAGE_SIZE - 1)  # offset_in_page()
        in_page = rdi_off if ctxt.eflags & X86_EFLAGS_DF else PAGE_SIZE - rdi_off
        n = min(in_page, len(rc.data) // size, count)
        if n == 0:
            n = 1
        rc.pos = rc.end = 0
        ok, data = ctxt.ops.pio_in_emulated(ctxt, size, port, n)
        if not ok:
            return 0, b""
        rc.data[:n * size] = data
        rc.end = n * size
    if ctxt.rep_prefix and ctxt.d & String and not ctxt.eflags & X86_EFLAGS_DF:
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
    ok, data = pio_in_emulated(ctxt, ctxt.dst.bytes, ctxt.src.val, "&ctxt->dst.val")
    if not ok:
        return X86EMUL_IO_NEEDED
    if ctxt.dst.type != OP_MEM_STR:
        ctxt.dst.val = int.from_bytes(data, "little")
    return X86EMUL_CONTINUE


@tracepoint("kvm", args=("ctxt",))
def em_out(ctxt: x86_emulate_ctxt) -> int:
    """OUT/OUTS: always one element (count 1), and no writeback of the destination."""
    val = ctxt.src.val & ((1 << (8 * ctxt.src.bytes)) - 1)
    ctxt.ops.pio_out_emulated(ctxt, ctxt.src.bytes, ctxt.dst.val, val.to_bytes(ctxt.src.bytes, "little"), 1)
    ctxt.dst.type = OP_NONE  # disable writeback
    return X86EMUL_CONTINUE


@tracepoint("kvm", args=("ctxt", "op"))
def writeback(ctxt: x86_emulate_ctxt, op: operand) -> int:
    """Store an operand: a register, one memory element, or all elements of a string batch (OP_MEM_STR)."""
    if op.type == OP_REG:
        write_register_operand(ctxt, op)
    elif op.type == OP_MEM:
        return segmented_write(ctxt, op, (op.val & ((1 << (8 * op.bytes)) - 1)).to_bytes(op.bytes, "little"))
    elif op.type == OP_MEM_STR:
        return segmented_write(ctxt, op, op.data[:op.bytes * op.count])
    return X86EMUL_CONTINUE


@tracepoint("kvm", args=("ctxt", "reg", "op"))
def string_addr_inc(ctxt: x86_emulate_ctxt, reg: int, op: operand) -> None:
    """Move RSI/RDI past the elements just moved, backwards if DF=1."""
    df = -op.count if ctxt.eflags & X86_EFLAGS_DF else op.count
    register_address_increment(ctxt, reg, df * op.bytes)
    op.ea = register_address(ctxt, reg_read(ctxt, reg))


@tracepoint("kvm", args=("ctxt",))
def string_insn_completed(ctxt: x86_emulate_ctxt) -> bool:
    """The second REP termination condition, for REPE/REPNE CMPS/SCAS only: never true for INS/OUTS."""
    return ctxt.b in (0xA6, 0xA7, 0xAE, 0xAF) and (
        (ctxt.rep_prefix == REPE_PREFIX and not ctxt.eflags & X86_EFLAGS_ZF)
        or (ctxt.rep_prefix == REPNE_PREFIX and bool(ctxt.eflags & X86_EFLAGS_ZF)))


def _done(ctxt: x86_emulate_ctxt, rc: int) -> int:
    # the `done:` label (emulate.c:5388-5400)
    if rc == X86EMUL_PROPAGATE_FAULT:
        ctxt.have_exception = True
    if rc == X86EMUL_INTERCEPTED:
        return EMULATION_INTERCEPTED
    if rc == X86EMUL_CONTINUE:
        writeback_registers(ctxt)
    return EMULATION_FAILED if rc == X86EMUL_UNHANDLEABLE else EMULATION_OK


def _eip_after(ctxt: x86_emulate_ctxt) -> int:
    # ctxt->eip = ctxt->_eip, truncated to 32 bits outside 64-bit mode (emulate.c:5380-5382)
    return ctxt._eip if ctxt.mode == X86EMUL_MODE_PROT64 else ctxt._eip & 0xFFFF_FFFF


@tracepoint("kvm", args=("ctxt",))
def x86_emulate_insn(ctxt: x86_emulate_ctxt) -> int:
    """Execute the decoded instruction (emulate.c:5104).

    String I/O: with REP and RCX = 0 just move RIP on. Otherwise RF is set for the REP instruction, one
    step runs (OUTS: one element; INS: the cached batch), the destination is written back, RSI/RDI
    advance and RCX drops by the count; then either restart in the kernel (EMULATION_RESTART: more
    elements and the cache not exhausted, or no cache and RCX not a multiple of 1024), or finish without
    touching RIP so the guest executes the instruction again. Only a completed instruction moves RIP.
    """
    if ctxt.d & MmioInsn:
        rc = em_mmio(ctxt)
        return _done(ctxt, rc)
    saved_dst_type = ctxt.dst.type
    if ctxt.rep_prefix and ctxt.d & String:
        # All REP prefixes have the same first termination condition
        if address_mask(ctxt, reg_read(ctxt, VCPU_REGS_RCX)) == 0:
            ctxt.eip = _eip_after(ctxt)
            ctxt.eflags &= ~X86_EFLAGS_RF
            return _done(ctxt, X86EMUL_CONTINUE)
    if ctxt.src.type == OP_MEM:
        rc, data = segmented_read(ctxt, ctxt.src, ctxt.src.bytes)
        if rc != X86EMUL_CONTINUE:
            return _done(ctxt, rc)
        ctxt.src.val = int.from_bytes(data, "little")

    if ctxt.rep_prefix and ctxt.d & String:
        ctxt.eflags |= X86_EFLAGS_RF
    else:
        ctxt.eflags &= ~X86_EFLAGS_RF
    rc = em_in(ctxt) if ctxt.b in IN_OPCODES else em_out(ctxt)  # ctxt->execute
    if rc != X86EMUL_CONTINUE:
        return _done(ctxt, rc)

    rc = writeback(ctxt, ctxt.dst)
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
            # Back to the guest when the read-ahead buffer is used up or, without one, every 1024 elements
            if (r.end != 0 or reg_read(ctxt, VCPU_REGS_RCX) & 0x3FF) and (r.end == 0 or r.end != r.pos):
                writeback_registers(ctxt)
                return EMULATION_RESTART
            return _done(ctxt, X86EMUL_CONTINUE)  # skip rip writeback
        ctxt.eflags &= ~X86_EFLAGS_RF
    ctxt.eip = _eip_after(ctxt)
    return _done(ctxt, X86EMUL_CONTINUE)
