"""arch/x86/kvm/x86.c (Linux v6.12): the vendor-independent x86 KVM code on the I/O path.

KVM_RUN enters `kvm_arch_vcpu_ioctl_run` (x86.c:11475). If the last exit left an instruction half done,
`vcpu->arch.complete_userspace_io` finishes it first (11555-11563). In 6.12 that callback is armed far
more often than in 3.7, because the fast path no longer moves RIP before it exits:

* a plain OUT: `kvm_fast_pio` → `kvm_fast_pio_out` (9317) copies RAX into the PIO page, fills
  `kvm_run->io` and exits with RIP still **on** the OUT; `complete_fast_pio_out` (9307) skips it on the
  next KVM_RUN (if RIP is still there). Only OUT to port 0x7e, under KVM_X86_QUIRK_OUT_7E_INC_RIP, skips
  before the exit (9330-9334), as every OUT did in 3.7;
* a plain IN: `kvm_fast_pio_in` (9363) exits with RIP on the IN; `complete_fast_pio_in` (9342) merges the
  data into RAX (sizes 1 and 2 keep the upper bits, size 4 zero-extends) and skips the IN;
* string I/O and MMIO: the emulator, as in 3.7; `complete_emulated_pio` (11389) re-runs it.

Then `vcpu_run` (11242) loops `vcpu_enter_guest` (10704: requests, `kvm_check_and_inject_events`,
`kvm_x86_ops->vcpu_run` = `vmx_vcpu_run`, which may already handle the exit in its fastpath, then
`kvm_x86_ops->handle_exit` = `vmx_handle_exit`) while the handlers return 1, and `vcpu_block` (11171) while
the vCPU is halted. A 0 goes back to userspace with `struct kvm_run` filled.

PIO leaves through `emulator_pio_in_out` (8132): the in-kernel devices on the KVM PIO bus (the PIC) get
every element first; if the first is not theirs, `kvm_run->io` is filled (direction, size, port, count,
data_offset 4096). OUT data is copied into the PIO page; for an IN the page is **zeroed** (8169-8170).
"""
from __future__ import annotations

import ctypes
import errno
from typing import Any

from vmio_edu.errors import GuestFault
from vmio_edu.linux.arch.x86.kvm.x86 import _KVM_REGS_ORDER, _EmulateOps as _EmulateOps37
from vmio_edu.linux.include.uapi.linux import kvm as K
from vmio_edu.linux_6_12.arch.x86.include.asm.kvm_host import (
    EMULTYPE_NO_DECODE, EMULTYPE_SKIP, EMULTYPE_TRAP_UD, EMULTYPE_TRAP_UD_FORCED, EXIT_FASTPATH_EXIT_HANDLED,
    EXIT_FASTPATH_EXIT_USERSPACE, EXIT_FASTPATH_REENTER_GUEST, KVM_PIO_PAGE_OFFSET, KVM_REQ_EVENT,
    KVM_REQ_TRIPLE_FAULT, KVM_REQ_UNBLOCK, KVM_X86_QUIRK_OUT_7E_INC_RIP, VCPU_REGS_RIP, VCPU_REGS_RSP)
from vmio_edu.linux_6_12.include.linux.kvm_host import (KVM_MMIO_BUS, KVM_PIO_BUS, KVM_USERSPACE_IRQ_SOURCE_ID,
                                                       irqchip_in_kernel, kvm_check_request, kvm_clear_request,
                                                       kvm_make_request, lapic_in_kernel)
from vmio_edu.linux_6_12.kernel.entry.kvm import xfer_to_guest_mode_handle_work
from vmio_edu.linux_6_12.kernel.sched.core import sched_tick
from vmio_edu.trace.tracepoint import emit, tracepoint
from . import emulate as E
from .irq import kvm_cpu_get_interrupt, kvm_cpu_has_injectable_intr, kvm_cpu_has_interrupt
from .kvm_cache_regs import (kvm_rax_read, kvm_rax_write, kvm_register_read, kvm_register_write, kvm_rip_read,
                             kvm_rip_write)

PAGE_SIZE = 4096
X86_EFLAGS_TF, X86_EFLAGS_IF, X86_EFLAGS_VM = 1 << 8, 1 << 9, 1 << 17
UD_VECTOR, DF_VECTOR, GP_VECTOR, PF_VECTOR = 6, 8, 13, 14

# Set by vmx/vmx.py when it is imported (vmx_init → kvm_x86_vendor_init(&vt_init_ops)).
kvm_x86_ops: Any = None


# ==========================================================================================================
# Event queues, flags, linear RIP
# ==========================================================================================================
def kvm_queue_exception(vcpu, nr: int, error_code: int | None = None) -> None:
    """kvm_queue_exception / kvm_multiple_exception (x86.c:836, 921), as far as this path needs them."""
    ex = vcpu.arch.exception
    kvm_make_request(KVM_REQ_EVENT, vcpu)
    if (ex.pending or ex.injected) and ex.vector == DF_VECTOR:
        kvm_make_request(KVM_REQ_TRIPLE_FAULT, vcpu)  # a fault while delivering #DF
        return
    ex.pending, ex.injected, ex.vector = True, False, nr
    ex.has_error_code, ex.error_code = error_code is not None, error_code or 0


def kvm_clear_exception_queue(vcpu) -> None:
    vcpu.arch.exception.pending = vcpu.arch.exception.injected = False


def kvm_queue_interrupt(vcpu, vector: int, soft: bool) -> None:
    it = vcpu.arch.interrupt
    it.injected, it.soft, it.nr = True, soft, vector


def kvm_clear_interrupt_queue(vcpu) -> None:
    vcpu.arch.interrupt.injected = False


def kvm_event_needs_reinjection(vcpu) -> bool:
    a = vcpu.arch
    return a.exception.injected or a.interrupt.injected or a.nmi_injected


def kvm_get_rflags(vcpu) -> int:
    return kvm_x86_ops.get_rflags(vcpu)


def __kvm_set_rflags(vcpu, rflags: int) -> None:
    kvm_x86_ops.set_rflags(vcpu, rflags)


def kvm_set_rflags(vcpu, rflags: int) -> None:
    __kvm_set_rflags(vcpu, rflags)
    kvm_make_request(KVM_REQ_EVENT, vcpu)


def is_protmode(vcpu) -> bool:
    return bool(vcpu.cpu.cr0 & 1)


def is_64_bit_mode(vcpu) -> bool:
    return kvm_x86_ops.get_cs_db_l_bits(vcpu)[1] == 1


def kvm_get_linear_rip(vcpu) -> int:
    """CS base + RIP (x86.c:13231): where the I/O instruction is, whatever CS userspace loads meanwhile."""
    if is_64_bit_mode(vcpu):
        return kvm_rip_read(vcpu)
    return (vcpu.cpu.segment_base("cs") + kvm_rip_read(vcpu)) & 0xFFFF_FFFF


def kvm_is_linear_rip(vcpu, linear_rip: int) -> bool:
    return kvm_get_linear_rip(vcpu) == linear_rip


def kvm_check_has_quirk(kvm, quirk: int) -> bool:
    """A quirk is on unless userspace disabled it (x86.h:311)."""
    return not kvm.arch.disabled_quirks & quirk


def kvm_arch_interrupt_allowed(vcpu) -> bool:
    return kvm_x86_ops.interrupt_allowed(vcpu, False) > 0


@tracepoint("kvm", args=("vcpu",))
def kvm_skip_emulated_instruction(vcpu) -> int:
    """Move RIP past the instruction that exited (`kvm_x86_ops->skip_emulated_instruction`); a guest
    single-stepping with TF would get its #DB here (x86.c:8930-8951)."""
    rflags = kvm_x86_ops.get_rflags(vcpu)
    r = kvm_x86_ops.skip_emulated_instruction(vcpu)
    if not r:
        return 0
    if rflags & X86_EFLAGS_TF:
        kvm_queue_exception(vcpu, 1)  # kvm_vcpu_do_singlestep: #DB with DR6.BS
    return r


# ==========================================================================================================
# PIO: the emulator's callbacks and the fast path
# ==========================================================================================================
@tracepoint("kvm", args=("vcpu", "size", "port", "data", "count", "in=in_"))
def emulator_pio_in_out(vcpu, size: int, port: int, data: bytearray, count: int, in_: bool) -> int:
    """Offer each element to the in-kernel devices on the KVM PIO bus (1: all handled); if the first is not
    theirs, record the access in vcpu->arch.pio, put OUT data in the PIO page (or zero it for an IN),
    fill `kvm_run->io` and return 0: the exit goes to userspace (x86.c:8132-8181)."""
    from vmio_edu.linux_6_12.virt.kvm.kvm_main import kvm_io_bus_read, kvm_io_bus_write
    for i in range(count):
        # C passes `data` and then advances it by `size`: the first element is `data` itself
        el = data if i == 0 else memoryview(data)[i * size:(i + 1) * size]
        if in_:
            r = kvm_io_bus_read(vcpu, KVM_PIO_BUS, port, size, el)
        else:
            r = kvm_io_bus_write(vcpu, KVM_PIO_BUS, port, size, el)
        if r:
            if i == 0:
                break  # goto userspace_io
            # the device went away while PIO was running: drop writes, read as 0
            if in_:
                data[i * size:count * size] = bytes((count - i) * size)
            return 1
    else:
        return 1
    # userspace_io:
    pio = vcpu.arch.pio
    pio.port, pio.in_, pio.count, pio.size = port, in_, count, size
    if in_:
        vcpu.arch.pio_data[:size * count] = bytes(size * count)
    else:
        vcpu.arch.pio_data[:size * count] = bytes(data[:size * count])
    run = vcpu.run
    run.exit_reason = K.KVM_EXIT_IO
    io = run.u.io
    io.direction = K.KVM_EXIT_IO_IN if in_ else K.KVM_EXIT_IO_OUT
    io.size = size
    io.data_offset = KVM_PIO_PAGE_OFFSET * PAGE_SIZE
    io.count = count
    io.port = port
    return 0


@tracepoint("kvm", args=("vcpu", "size", "port", "val", "count"))
def emulator_pio_in(vcpu, size: int, port: int, val: bytearray, count: int) -> int:
    """IN of `count` elements into `val`: from an in-kernel device at once, or a userspace exit."""
    return emulator_pio_in_out(vcpu, size, port, val, count, True)


@tracepoint("kvm", args=("vcpu", "val"))
def complete_emulator_pio_in(vcpu, val: bytearray) -> None:
    """Take the data userspace put in the PIO page (size × pio.count bytes); the request is done."""
    pio = vcpu.arch.pio
    n = pio.size * pio.count
    val[:n] = bytes(vcpu.arch.pio_data[:n])
    pio.count = 0


@tracepoint("kvm", args=("ctxt", "size", "port", "val", "count"))
def emulator_pio_in_emulated(ctxt, size: int, port: int, val: bytearray, count: int) -> int:
    """The emulator's IN: the first call sends the request out; the call on the next KVM_RUN finds
    `pio.count` set and copies the answer (x86.c:8202-8219)."""
    vcpu = ctxt.vcpu
    if vcpu.arch.pio.count:
        # Complete a previous iteration that required userspace I/O
        complete_emulator_pio_in(vcpu, val)
        return 1
    return emulator_pio_in(vcpu, size, port, val, count)


@tracepoint("kvm", args=("vcpu", "size", "port", "val", "count"))
def emulator_pio_out(vcpu, size: int, port: int, val: bytes, count: int) -> int:
    """OUT of `count` elements taken from `val`."""
    return emulator_pio_in_out(vcpu, size, port, bytearray(val[:size * count]), count, False)


@tracepoint("kvm", args=("ctxt", "size", "port", "val", "count"))
def emulator_pio_out_emulated(ctxt, size: int, port: int, val: bytes, count: int) -> int:
    return emulator_pio_out(ctxt.vcpu, size, port, val, count)


@tracepoint("kvm", args=("vcpu",))
def complete_fast_pio_out_port_0x7e(vcpu) -> int:
    """complete_userspace_io after an OUT to 0x7e: RIP was already moved before the exit (the quirk)."""
    vcpu.arch.pio.count = 0
    return 1


@tracepoint("kvm", args=("vcpu",))
def complete_fast_pio_out(vcpu) -> int:
    """complete_userspace_io after a plain OUT: the access is done; now move RIP past the OUT, unless
    userspace moved the vCPU elsewhere meanwhile (x86.c:9307-9315)."""
    vcpu.arch.pio.count = 0
    if not kvm_is_linear_rip(vcpu, vcpu.arch.pio.linear_rip):
        return 1
    return kvm_skip_emulated_instruction(vcpu)


@tracepoint("kvm", args=("vcpu", "size", "port"))
def kvm_fast_pio_out(vcpu, size: int, port: int) -> int:
    """A plain OUT: RAX's low `size` bytes as one element. Handled in the kernel → 1. Otherwise the exit
    goes to userspace with RIP **not** advanced and `complete_fast_pio_out` armed; only port 0x7e under
    KVM_X86_QUIRK_OUT_7E_INC_RIP skips first, for userspace written against the old behaviour."""
    val = kvm_rax_read(vcpu)
    ret = emulator_pio_out(vcpu, size, port, val.to_bytes(8, "little"), 1)
    if ret:
        return ret
    if port == 0x7E and kvm_check_has_quirk(vcpu.kvm, KVM_X86_QUIRK_OUT_7E_INC_RIP):
        vcpu.arch.complete_userspace_io = complete_fast_pio_out_port_0x7e
        kvm_skip_emulated_instruction(vcpu)
    else:
        vcpu.arch.pio.linear_rip = kvm_get_linear_rip(vcpu)
        vcpu.arch.complete_userspace_io = complete_fast_pio_out
    return 0


def _merge(size: int, rax: int) -> int:
    # "For size less than 4 we merge, else we zero extend" (x86.c:9355, 9369)
    return rax if size < 4 else 0


@tracepoint("kvm", args=("vcpu",))
def complete_fast_pio_in(vcpu) -> int:
    """complete_userspace_io after a plain IN: merge the answer into RAX and move RIP past the IN
    (x86.c:9342-9361)."""
    if vcpu.arch.pio.count != 1:
        raise GuestFault("KVM model: complete_fast_pio_in with pio.count != 1 (BUG_ON)")
    if not kvm_is_linear_rip(vcpu, vcpu.arch.pio.linear_rip):
        vcpu.arch.pio.count = 0
        return 1
    size = vcpu.arch.pio.size
    val = bytearray(_merge(size, kvm_rax_read(vcpu)).to_bytes(8, "little"))
    complete_emulator_pio_in(vcpu, val)
    kvm_rax_write(vcpu, int.from_bytes(val, "little"))
    return kvm_skip_emulated_instruction(vcpu)


@tracepoint("kvm", args=("vcpu", "size", "port"))
def kvm_fast_pio_in(vcpu, size: int, port: int) -> int:
    """A plain IN: from an in-kernel device → RAX now (1); else exit with RIP on the IN and
    `complete_fast_pio_in` armed."""
    val = bytearray(_merge(size, kvm_rax_read(vcpu)).to_bytes(8, "little"))
    ret = emulator_pio_in(vcpu, size, port, val, 1)
    if ret:
        kvm_rax_write(vcpu, int.from_bytes(val, "little"))
        return ret
    vcpu.arch.pio.linear_rip = kvm_get_linear_rip(vcpu)
    vcpu.arch.complete_userspace_io = complete_fast_pio_in
    return 0


@tracepoint("kvm", args=("vcpu", "size", "port", "in=in_"))
def kvm_fast_pio(vcpu, size: int, port: int, in_: int) -> int:
    """IN or OUT without a string: the fast path of both. If the kernel handled it, skip the instruction
    now; if it goes to userspace, RIP stays (x86.c:9384-9393)."""
    if in_:
        ret = kvm_fast_pio_in(vcpu, size, port)
    else:
        ret = kvm_fast_pio_out(vcpu, size, port)
    return 1 if ret and kvm_skip_emulated_instruction(vcpu) else 0


# ==========================================================================================================
# MMIO from the emulator (unchanged in shape since 3.7: x86.c:7921-8024 / 11414)
# ==========================================================================================================
@tracepoint("kvm", args=("ctxt", "addr=gpa", "val=data", "bytes=n", "exception", "ops=is_write"))
def emulator_read_write(ctxt, gpa: int, data: bytes | None, n: int, exception: Any = None,
                        is_write: bool = False) -> tuple[int, bytes]:
    """Guest memory access of the emulator that landed on MMIO (gpa from the EPT exit): offer it to the
    in-kernel MMIO devices, else queue a fragment and fill `kvm_run->mmio`."""
    from vmio_edu.linux_6_12.virt.kvm.kvm_main import kvm_io_bus_read, kvm_io_bus_write
    vcpu = ctxt.vcpu
    if not is_write and vcpu.mmio_read_completed:  # userspace answered already
        vcpu.mmio_read_completed = 0
        frag = vcpu.mmio_fragments[0]
        return E.X86EMUL_CONTINUE, bytes(frag["data"][:n])
    buf = bytearray(data if is_write else n)
    handled = (not kvm_io_bus_write(vcpu, KVM_MMIO_BUS, gpa, n, buf)) if is_write else \
        (not kvm_io_bus_read(vcpu, KVM_MMIO_BUS, gpa, n, buf))
    if handled:
        return E.X86EMUL_CONTINUE, bytes(buf)
    if not vcpu.mmio_needed:
        vcpu.mmio_fragments = []
        vcpu.mmio_nr_fragments = 0
    vcpu.mmio_fragments.append({"gpa": gpa, "data": buf, "len": n})
    vcpu.mmio_nr_fragments += 1
    if vcpu.mmio_needed:
        return E.X86EMUL_CONTINUE, bytes(buf)
    frag = vcpu.mmio_fragments[0]
    vcpu.mmio_needed = 1
    vcpu.mmio_cur_fragment = 0
    run = vcpu.run
    run.u.mmio.len = min(8, frag["len"])
    run.u.mmio.is_write = vcpu.mmio_is_write = int(is_write)
    run.exit_reason = K.KVM_EXIT_MMIO
    run.u.mmio.phys_addr = gpa
    if is_write:
        ctypes.memmove(ctypes.addressof(run.u.mmio.data), bytes(frag["data"][:8]), min(8, frag["len"]))
        return E.X86EMUL_CONTINUE, bytes(buf)
    return E.X86EMUL_IO_NEEDED, b""


class _EmulateOps(_EmulateOps37):
    """emulate_ops (x86.c): how the emulator reaches this vCPU. Guest memory, fetch and the MMIO single
    step are the 3.7 model's (the same processor underneath); registers and I/O are 6.12's."""

    @staticmethod
    def read_gpr(ctxt, nr: int) -> int:
        return kvm_register_read(ctxt.vcpu, nr)

    @staticmethod
    def write_gpr(ctxt, nr: int, val: int) -> None:
        kvm_register_write(ctxt.vcpu, nr, val)

    @staticmethod
    def read_emulated_gpa(ctxt, gpa: int, n: int) -> tuple[int, bytes]:
        return emulator_read_write(ctxt, gpa, None, n, None, False)

    @staticmethod
    def write_emulated_gpa(ctxt, gpa: int, data: bytes) -> int:
        return emulator_read_write(ctxt, gpa, data, len(data), None, True)[0]

    @staticmethod
    def pio_in_emulated(ctxt, size: int, port: int, count: int) -> tuple[int, bytes]:
        val = bytearray(size * count)
        if not emulator_pio_in_emulated(ctxt, size, port, val, count):
            return 0, b""
        return 1, bytes(val)

    @staticmethod
    def pio_out_emulated(ctxt, size: int, port: int, val: bytes, count: int) -> int:
        return emulator_pio_out_emulated(ctxt, size, port, val, count)

    @staticmethod
    def mmio_step(ctxt, reads: dict[int, bytes]) -> tuple[int, list]:
        """The CPU completes the MMIO instruction; the emulator's view of the registers is refreshed."""
        from vmio_edu.cpu.x86 import MmioStepError
        vcpu = ctxt.vcpu
        arch = vcpu.arch
        if arch.regs_dirty >> VCPU_REGS_RSP & 1:
            vcpu.cpu.vmcs.GUEST_RSP = arch.regs[VCPU_REGS_RSP]
        if arch.regs_dirty >> VCPU_REGS_RIP & 1:
            vcpu.cpu.vmcs.GUEST_RIP = arch.regs[VCPU_REGS_RIP]
        try:
            log = vcpu.cpu.mmio_step(arch.regs, arch.regs_dirty, reads)
        except MmioStepError as e:
            ctxt.fail_reason = f"{ctxt.text!r} at rip={ctxt.eip:#x}: {e}"
            return E.X86EMUL_UNHANDLEABLE, []
        kvm_x86_ops.after_cpu_step(vcpu)
        E.emulator_invalidate_register_cache(ctxt)
        ctxt.eip, ctxt.eflags = kvm_rip_read(vcpu), kvm_get_rflags(vcpu)
        return E.X86EMUL_CONTINUE, log


emulate_ops = _EmulateOps()


# ==========================================================================================================
# x86_emulate_instruction and its completions
# ==========================================================================================================
@tracepoint("kvm", args=("vcpu",))
def init_emulate_ctxt(vcpu) -> None:
    """Load the emulator's context from the vCPU: RFLAGS, RIP, the CPU mode; clear the decode cache."""
    ctxt = vcpu.arch.emulate_ctxt
    cs_db, cs_l = kvm_x86_ops.get_cs_db_l_bits(vcpu)
    ctxt.eflags = kvm_get_rflags(vcpu)
    ctxt.eip = kvm_rip_read(vcpu)
    ctxt.mode = (E.X86EMUL_MODE_REAL if not is_protmode(vcpu) else
                 E.X86EMUL_MODE_VM86 if ctxt.eflags & X86_EFLAGS_VM else
                 E.X86EMUL_MODE_PROT64 if cs_l else
                 E.X86EMUL_MODE_PROT32 if cs_db else E.X86EMUL_MODE_PROT16)
    ctxt.interruptibility = 0
    ctxt.have_exception = False
    ctxt.exception.vector = -1
    ctxt.perm_ok = False
    E.init_decode_cache(ctxt)
    vcpu.arch.emulate_regs_need_sync_from_vcpu = False


@tracepoint("kvm", args=("vcpu", "emulation_type", "insn", "insn_len"))
def x86_decode_emulated_instruction(vcpu, emulation_type: int, insn: bytes | None = None, insn_len: int = 0) -> int:
    ctxt = vcpu.arch.emulate_ctxt
    init_emulate_ctxt(vcpu)
    ctxt.only_vendor_specific_insn = bool(emulation_type & (EMULTYPE_TRAP_UD | EMULTYPE_TRAP_UD_FORCED))
    r = E.x86_decode_insn(ctxt, insn, insn_len, emulation_type)
    vcpu.stat["insn_emulation"] += 1
    return r


def toggle_interruptibility(vcpu, mask: int) -> None:
    int_shadow = kvm_x86_ops.get_interrupt_shadow(vcpu)
    # an sti; sti; sequence only disables interrupts for the first instruction
    if not int_shadow & mask:
        kvm_x86_ops.set_interrupt_shadow(vcpu, mask)
        if not mask:
            kvm_make_request(KVM_REQ_EVENT, vcpu)


def inject_emulated_exception(vcpu) -> None:
    ex = vcpu.arch.emulate_ctxt.exception
    kvm_queue_exception(vcpu, ex.vector, ex.error_code if ex.error_code_valid else None)


@tracepoint("kvm", args=("vcpu", "emulation_type"))
def handle_emulation_failure(vcpu, emulation_type: int) -> int:
    """The emulator gave up: #UD queued, and at CPL 0 (all this project's guests) KVM_EXIT_INTERNAL_ERROR
    with suberror 1, emulation (x86.c:8831-8858)."""
    vcpu.stat["insn_emulation_fail"] += 1
    kvm_queue_exception(vcpu, UD_VECTOR)
    run = vcpu.run
    run.exit_reason = K.KVM_EXIT_INTERNAL_ERROR
    run.u.internal.suberror = K.KVM_INTERNAL_ERROR_EMULATION
    run.u.internal.ndata = 0
    ctxt = vcpu.arch.emulate_ctxt
    vcpu.exit_detail = f"emulation failure: {ctxt.fail_reason or ctxt.text or 'unknown instruction'}"
    return 0


@tracepoint("kvm", args=("vcpu", "cr2_or_gpa", "emulation_type", "insn", "insn_len"))
def x86_emulate_instruction(vcpu, cr2_or_gpa: int, emulation_type: int, insn: bytes | None = None,
                            insn_len: int = 0) -> int:
    """Decode (unless EMULTYPE_NO_DECODE) and emulate one instruction; return 1 (back to the guest) or
    0 (to userspace), as the exit handlers do in 6.12 (x86.c:9086-9286).

    After `x86_emulate_insn`: with `pio.count` set an OUT is complete (count cleared, RIP written back as
    the emulator left it) while an IN keeps the registers unwritten and arms `complete_emulated_pio`. Likewise
    for MMIO. A RESTART loops here without going back to the guest.
    """
    ctxt = vcpu.arch.emulate_ctxt
    writeback = True
    if not emulation_type & EMULTYPE_NO_DECODE:
        kvm_clear_exception_queue(vcpu)
        r = x86_decode_emulated_instruction(vcpu, emulation_type, insn, insn_len)
        if r != E.EMULATION_OK:
            if emulation_type & (EMULTYPE_TRAP_UD | EMULTYPE_TRAP_UD_FORCED):
                kvm_queue_exception(vcpu, UD_VECTOR)
                return 1
            if ctxt.have_exception and not emulation_type & EMULTYPE_SKIP:
                inject_emulated_exception(vcpu)
                return 1
            return handle_emulation_failure(vcpu, emulation_type)
    if emulation_type & EMULTYPE_SKIP:
        ctxt.eip = ctxt._eip if ctxt.mode == E.X86EMUL_MODE_PROT64 else ctxt._eip & 0xFFFF_FFFF
        kvm_rip_write(vcpu, ctxt.eip)
        return 1
    if vcpu.arch.emulate_regs_need_sync_from_vcpu:
        vcpu.arch.emulate_regs_need_sync_from_vcpu = False
        E.emulator_invalidate_register_cache(ctxt)

    while True:  # restart:
        r = E.x86_emulate_insn(ctxt)
        if r == E.EMULATION_INTERCEPTED:
            return 1
        if r == E.EMULATION_FAILED:
            return handle_emulation_failure(vcpu, emulation_type)
        if ctxt.have_exception:
            vcpu.mmio_needed = 0
            r = 1
            inject_emulated_exception(vcpu)
        elif vcpu.arch.pio.count:
            if not vcpu.arch.pio.in_:
                vcpu.arch.pio.count = 0
            else:
                writeback = False
                vcpu.arch.complete_userspace_io = complete_emulated_pio
            r = 0
        elif vcpu.mmio_needed:
            vcpu.stat["mmio_exits"] += 1
            if not vcpu.mmio_is_write:
                writeback = False
            r = 0
            vcpu.arch.complete_userspace_io = complete_emulated_mmio
        elif vcpu.arch.complete_userspace_io is not None:
            writeback = False
            r = 0
        elif r == E.EMULATION_RESTART:
            continue
        else:
            r = 1
        break

    if writeback:
        rflags = kvm_x86_ops.get_rflags(vcpu)
        toggle_interruptibility(vcpu, ctxt.interruptibility)
        vcpu.arch.emulate_regs_need_sync_to_vcpu = False
        if not ctxt.have_exception:
            kvm_rip_write(vcpu, ctxt.eip)
            __kvm_set_rflags(vcpu, ctxt.eflags)
        if (ctxt.eflags & ~rflags) & X86_EFLAGS_IF:
            kvm_make_request(KVM_REQ_EVENT, vcpu)
    else:
        vcpu.arch.emulate_regs_need_sync_to_vcpu = True
    return r


@tracepoint("kvm", args=("vcpu", "emulation_type"))
def kvm_emulate_instruction(vcpu, emulation_type: int) -> int:
    """x86_emulate_instruction(vcpu, 0, emulation_type, NULL, 0) (x86.c:9288)."""
    return x86_emulate_instruction(vcpu, 0, emulation_type, None, 0)


@tracepoint("kvm", args=("vcpu",))
def handle_ud(vcpu) -> int:
    """#UD in the guest: KVM tries to emulate (EMULTYPE_TRAP_UD, only a few vendor-specific instructions)
    and otherwise queues #UD back into the guest (x86.c:7765)."""
    return kvm_emulate_instruction(vcpu, EMULTYPE_TRAP_UD)


@tracepoint("kvm", args=("vcpu",))
def complete_emulated_io(vcpu) -> int:
    """Re-run the emulator on the instruction decoded before the exit (EMULTYPE_NO_DECODE)."""
    return kvm_emulate_instruction(vcpu, EMULTYPE_NO_DECODE)


@tracepoint("kvm", args=("vcpu",))
def complete_emulated_pio(vcpu) -> int:
    """complete_userspace_io for INS: userspace has put the batch in the PIO page."""
    if not vcpu.arch.pio.count:
        raise GuestFault("KVM model: complete_emulated_pio without a PIO request in flight (BUG_ON)")
    return complete_emulated_io(vcpu)


@tracepoint("kvm", args=("vcpu",))
def complete_emulated_mmio(vcpu) -> int:
    """complete_userspace_io for MMIO: take a read's data, then the next fragment or finish the instruction."""
    run = vcpu.run
    if not vcpu.mmio_needed:
        raise GuestFault("KVM model: complete_emulated_mmio without MMIO in flight (BUG_ON)")
    frag = vcpu.mmio_fragments[vcpu.mmio_cur_fragment]
    n = min(8, frag["len"])
    if not vcpu.mmio_is_write:
        frag["data"][:n] = bytes(run.u.mmio.data)[:n]
    if frag["len"] <= 8:
        vcpu.mmio_cur_fragment += 1
    else:
        frag["data"], frag["gpa"], frag["len"] = frag["data"][n:], frag["gpa"] + n, frag["len"] - n
    if vcpu.mmio_cur_fragment >= vcpu.mmio_nr_fragments:
        vcpu.mmio_needed = 0
        if vcpu.mmio_is_write:
            return 1
        vcpu.mmio_read_completed = 1
        return complete_emulated_io(vcpu)
    frag = vcpu.mmio_fragments[vcpu.mmio_cur_fragment]
    run.exit_reason = K.KVM_EXIT_MMIO
    run.u.mmio.phys_addr = frag["gpa"]
    if vcpu.mmio_is_write:
        ctypes.memmove(ctypes.addressof(run.u.mmio.data), bytes(frag["data"][:8]), min(8, frag["len"]))
    run.u.mmio.len = min(8, frag["len"])
    run.u.mmio.is_write = vcpu.mmio_is_write
    vcpu.arch.complete_userspace_io = complete_emulated_mmio
    return 0


# ==========================================================================================================
# HLT (also the exit fastpath's), events, the run loop
# ==========================================================================================================
def kvm_vcpu_running(vcpu) -> bool:
    return vcpu.arch.mp_state == K.KVM_MP_STATE_RUNNABLE


def kvm_vcpu_has_events(vcpu) -> bool:
    """What may end a halt (x86.c:11115): here a pending exception, or an interrupt the guest can take."""
    if vcpu.arch.exception.pending:
        return True
    return kvm_arch_interrupt_allowed(vcpu) and kvm_cpu_has_interrupt(vcpu)


def kvm_arch_vcpu_runnable(vcpu) -> bool:
    return kvm_vcpu_running(vcpu) or kvm_vcpu_has_events(vcpu)


@tracepoint("kvm", args=("vcpu", "state", "reason"))
def __kvm_emulate_halt(vcpu, state: int, reason: int) -> int:
    """With the LAPIC in the kernel the vCPU becomes HALTED (unless an event is already there: then it
    stays runnable); without, the HLT goes to userspace (x86.c:11292-11312)."""
    vcpu.stat["halt_exits"] += 1
    if lapic_in_kernel(vcpu):
        if not kvm_vcpu_has_events(vcpu):
            vcpu.arch.mp_state = state
        return 1
    vcpu.run.exit_reason = reason
    return 0


@tracepoint("kvm", args=("vcpu",))
def kvm_emulate_halt_noskip(vcpu) -> int:
    return __kvm_emulate_halt(vcpu, K.KVM_MP_STATE_HALTED, K.KVM_EXIT_HLT)


@tracepoint("kvm", args=("vcpu",))
def kvm_emulate_halt(vcpu) -> int:
    """Exit reason 12 (the table entry itself in 6.12): skip the HLT, then halt."""
    ret = kvm_skip_emulated_instruction(vcpu)
    return 1 if kvm_emulate_halt_noskip(vcpu) and ret else 0


@tracepoint("kvm", args=("vcpu",))
def handle_fastpath_hlt(vcpu) -> int:
    """The exit fastpath for HLT (x86.c:11331): halt with interrupts still off; re-enter the guest at once
    if an interrupt is already pending, else let `vcpu_run` block the vCPU."""
    ret = kvm_emulate_halt(vcpu)
    if not ret:
        return EXIT_FASTPATH_EXIT_USERSPACE
    if kvm_vcpu_running(vcpu):
        return EXIT_FASTPATH_REENTER_GUEST
    return EXIT_FASTPATH_EXIT_HANDLED


def kvm_cpu_accept_dm_intr(vcpu) -> bool:
    return not lapic_in_kernel(vcpu)  # an irqchip in userspace (x86.c:5136, reduced)


def dm_request_for_irq_injection(vcpu) -> bool:
    return bool(vcpu.run.request_interrupt_window) and not irqchip_in_kernel(vcpu.kvm)


def kvm_vcpu_ready_for_interrupt_injection(vcpu) -> bool:
    return kvm_arch_interrupt_allowed(vcpu) and not kvm_cpu_has_interrupt(vcpu) and \
        not kvm_event_needs_reinjection(vcpu)


@tracepoint("kvm", args=("vcpu", "req_immediate_exit"))
def kvm_check_and_inject_events(vcpu, req_immediate_exit: list | None = None) -> int:
    """Re-inject what was being delivered, deliver a pending exception, or take a new interrupt from the
    PIC if the guest can accept one now (IF=1, no STI/MOV SS shadow): `kvm_cpu_get_interrupt` acknowledges
    it (INTA) and `vmx_inject_irq` writes VM_ENTRY_INTR_INFO_FIELD. An interrupt that must wait asks for
    an interrupt-window exit (x86.c:10269-10450)."""
    a = vcpu.arch
    if a.exception.injected:
        kvm_x86_ops.inject_exception(vcpu)
    elif a.exception.pending:
        pass
    elif a.nmi_injected:
        pass
    elif a.interrupt.injected:
        kvm_x86_ops.inject_irq(vcpu, True)
    can_inject = not kvm_event_needs_reinjection(vcpu)
    if a.exception.pending:
        kvm_x86_ops.inject_exception(vcpu)
        a.exception.pending, a.exception.injected = False, True
        can_inject = False
    if kvm_cpu_has_injectable_intr(vcpu):
        if can_inject and kvm_x86_ops.interrupt_allowed(vcpu, True):
            irq = kvm_cpu_get_interrupt(vcpu)
            if irq != -1:
                kvm_queue_interrupt(vcpu, irq, False)
                kvm_x86_ops.inject_irq(vcpu, False)
        if kvm_cpu_has_injectable_intr(vcpu):
            kvm_x86_ops.enable_irq_window(vcpu)
    return 0


@tracepoint("kvm", args=("vcpu",))
def vcpu_enter_guest(vcpu) -> int:
    """Handle requests, inject events, enter the guest through `kvm_x86_ops->vcpu_run` (re-entering at once
    while its fastpath says EXIT_FASTPATH_REENTER_GUEST), then hand the exit to `kvm_x86_ops->handle_exit`
    unless the fastpath already sent it to userspace (x86.c:10704-11107)."""
    req_int_win = dm_request_for_irq_injection(vcpu) and kvm_cpu_accept_dm_intr(vcpu)
    if vcpu.requests:
        if kvm_check_request(KVM_REQ_TRIPLE_FAULT, vcpu):
            vcpu.run.exit_reason = K.KVM_EXIT_SHUTDOWN
            vcpu.mmio_needed = 0
            return 0
    if kvm_check_request(KVM_REQ_EVENT, vcpu) or req_int_win:
        vcpu.stat["req_event"] += 1
        kvm_check_and_inject_events(vcpu, None)
        if req_int_win:
            kvm_x86_ops.enable_irq_window(vcpu)
    vcpu.mode = 1  # IN_GUEST_MODE
    while True:
        exit_fastpath = kvm_x86_ops.vcpu_run(vcpu, False)
        if exit_fastpath != EXIT_FASTPATH_REENTER_GUEST:
            break
        # finished in the fastpath, straight back into the guest (e.g. a HLT with an interrupt pending);
        # the VMCS still holds the RIP of the exit (a skip only changed KVM's register cache so far)
        emit("kvm_exit_in_kernel", "kvm", vcpu=vcpu, exit_reason=vcpu.vmx.exit_reason,
             rip=vcpu.cpu.vmcs.GUEST_RIP, device=None, io=None)
        if kvm_vcpu_exit_request(vcpu):
            exit_fastpath = EXIT_FASTPATH_EXIT_HANDLED
            break
        vcpu.stat["exits"] += 1
    vcpu.mode = 0  # OUTSIDE_GUEST_MODE
    # local_irq_enable() (x86.c:11054): a host interrupt that arrived in guest mode is taken here. The
    # emulated CPU's only one is the host timer tick that ended its slice (EXIT_REASON_EXTERNAL_INTERRUPT).
    if vcpu.cpu.host_intr_pending:
        vcpu.cpu.host_intr_pending = False
        sched_tick(vcpu)
    vcpu.stat["exits"] += 1
    if exit_fastpath == EXIT_FASTPATH_EXIT_USERSPACE:
        return 0
    vcpu.kvm.last_io_dev = vcpu.kvm.last_io = None
    rip = vcpu.cpu.vmcs.GUEST_RIP
    r = kvm_x86_ops.handle_exit(vcpu, exit_fastpath)
    if r > 0:  # handled in the kernel: back into the guest, QEMU never sees it
        emit("kvm_exit_in_kernel", "kvm", vcpu=vcpu, exit_reason=vcpu.vmx.exit_reason, rip=rip,
             device=vcpu.kvm.last_io_dev, io=vcpu.kvm.last_io)
    return r


def kvm_vcpu_exit_request(vcpu) -> bool:
    """Leave the fastpath's re-entry loop: a request is pending (the PIC's kick makes KVM_REQ_EVENT) or
    the thread has work (a signal) (x86.c: kvm_vcpu_exit_request)."""
    return bool(vcpu.requests) or signal_pending(vcpu)


def signal_pending(vcpu) -> bool:
    """A signal for the vCPU thread: in the model, the scheduler asking the running thread to park, or a
    kick queued for it (QEMU's SIG_IPI)."""
    sched = vcpu.kvm.sched
    return bool(sched is not None and vcpu.model_thread is not None
                and (vcpu.sigpending or getattr(sched, "park_requested", False)))


@tracepoint("kvm", args=("vcpu",))
def vcpu_block(vcpu) -> int:
    """The halted vCPU sleeps (`kvm_vcpu_halt`) until it is runnable; a wake-up with nothing to do (a
    signal) returns 1 without changing its state; otherwise HALTED becomes RUNNABLE (x86.c:11171-11240)."""
    from vmio_edu.linux_6_12.virt.kvm.kvm_main import kvm_vcpu_halt
    if not kvm_arch_vcpu_runnable(vcpu):
        kvm_vcpu_halt(vcpu)
        if not kvm_arch_vcpu_runnable(vcpu):
            return 1
    if vcpu.arch.mp_state == K.KVM_MP_STATE_HALTED:
        vcpu.arch.mp_state = K.KVM_MP_STATE_RUNNABLE
    return 1


@tracepoint("kvm", args=("vcpu",))
def vcpu_run(vcpu) -> int:
    """The KVM_RUN loop (x86.c:11242): enter the guest while it is runnable, block while it is halted,
    and stop on r <= 0. Between entries, pending thread work goes to `xfer_to_guest_mode_handle_work`: a
    signal ends KVM_RUN (KVM_EXIT_INTR, -EINTR), TIF_NEED_RESCHED from the host tick lets other threads run."""
    vcpu.run.exit_reason = K.KVM_EXIT_UNKNOWN
    while True:
        vcpu.arch.at_instruction_boundary = False
        if kvm_vcpu_running(vcpu):
            r = vcpu_enter_guest(vcpu)
        else:
            r = vcpu_block(vcpu)
            if vcpu.block_gave_up:
                # Model: no scheduler to sleep in (a unit test driving KVM_RUN by hand), so the halted vCPU
                # comes back to the caller as KVM_EXIT_HLT instead of sleeping in the kernel.
                vcpu.block_gave_up = False
                vcpu.run.exit_reason = K.KVM_EXIT_HLT
                vcpu.exit_detail = ("halted with nothing to wake it now (IF=0 or no interrupt pending); the "
                                    "real kernel would sleep here")
                r = 0
        if r <= 0:
            break
        kvm_clear_request(KVM_REQ_UNBLOCK, vcpu)
        if dm_request_for_irq_injection(vcpu) and kvm_vcpu_ready_for_interrupt_injection(vcpu):
            r = 0
            vcpu.run.exit_reason = K.KVM_EXIT_IRQ_WINDOW_OPEN
            vcpu.stat["request_irq_exits"] += 1
            break
        if signal_pending(vcpu) or vcpu.need_resched:  # __xfer_to_guest_mode_work_pending()
            r = xfer_to_guest_mode_handle_work(vcpu)
            if r:
                return r
    return r


def post_kvm_run_save(vcpu) -> None:
    run = vcpu.run
    run.if_flag = 1 if kvm_get_rflags(vcpu) & X86_EFLAGS_IF else 0
    run.cr8 = vcpu.arch.cr8
    run.apic_base = vcpu.arch.apic_base
    run.ready_for_interrupt_injection = int(irqchip_in_kernel(vcpu.kvm)
                                            or kvm_vcpu_ready_for_interrupt_injection(vcpu))


@tracepoint("kvm", args=("vcpu",))
def kvm_arch_vcpu_ioctl_run(vcpu) -> int:
    """KVM_RUN: first finish what the last exit left half done (`complete_userspace_io`: after a plain
    OUT that is `complete_fast_pio_out`, which moves RIP past it), then run (x86.c:11475-11580)."""
    vcpu.exit_detail = ""
    vcpu.cpu.budget_left = vcpu.cpu.max_insns
    vcpu.run.padding2[0] = vcpu.run.padding2[1] = 0  # kvm_run->flags (the u16 at offset 14 in 6.12)
    try:
        cui = vcpu.arch.complete_userspace_io
        if cui is not None:
            vcpu.arch.complete_userspace_io = None
            r = cui(vcpu)
            if r <= 0:
                return r
        if not vcpu.wants_to_run:
            return -errno.EINTR
        return vcpu_run(vcpu)
    finally:
        post_kvm_run_save(vcpu)
        emit("kvm_userspace_exit", "kvm", reason=vcpu.run.exit_reason, vcpu=vcpu)


# ==========================================================================================================
# Registers and special registers (KVM_GET/SET_REGS, KVM_GET/SET_SREGS)
# ==========================================================================================================
def kvm_arch_vcpu_ioctl_get_regs(vcpu, regs: K.kvm_regs) -> int:
    if vcpu.arch.emulate_regs_need_sync_to_vcpu:
        E.writeback_registers(vcpu.arch.emulate_ctxt)  # emulator_writeback_register_cache
        vcpu.arch.emulate_regs_need_sync_to_vcpu = False
    for i, name in enumerate(_KVM_REGS_ORDER):
        setattr(regs, name, kvm_register_read(vcpu, i))
    regs.rip = kvm_rip_read(vcpu)
    regs.rflags = kvm_get_rflags(vcpu)
    return 0


def kvm_arch_vcpu_ioctl_set_regs(vcpu, regs: K.kvm_regs) -> int:
    vcpu.arch.emulate_regs_need_sync_from_vcpu = True
    vcpu.arch.emulate_regs_need_sync_to_vcpu = False
    for i, name in enumerate(_KVM_REGS_ORDER):
        kvm_register_write(vcpu, i, getattr(regs, name))
    kvm_rip_write(vcpu, regs.rip)
    kvm_set_rflags(vcpu, regs.rflags | 2)
    vcpu.arch.exception.pending = False
    kvm_make_request(KVM_REQ_EVENT, vcpu)
    vcpu.cpu.flush_code_cache()  # model: a VMM that sets registers may have rewritten guest code too
    return 0


def kvm_arch_vcpu_ioctl_get_sregs(vcpu, sregs: K.kvm_sregs) -> int:
    s = vcpu.cpu.get_sregs()
    ctypes.memmove(ctypes.addressof(sregs), ctypes.addressof(s), ctypes.sizeof(s))
    sregs.cr8, sregs.apic_base = vcpu.arch.cr8, vcpu.arch.apic_base
    for i in range(4):
        sregs.interrupt_bitmap[i] = 0
    it = vcpu.arch.interrupt
    if it.injected and not it.soft:
        sregs.interrupt_bitmap[it.nr // 64] |= 1 << (it.nr % 64)
    return 0


def kvm_arch_vcpu_ioctl_set_sregs(vcpu, sregs: K.kvm_sregs) -> int:
    vcpu.cpu.set_sregs(sregs)
    vcpu.arch.cr8, vcpu.arch.apic_base, vcpu.arch.efer = sregs.cr8, sregs.apic_base, sregs.efer
    pending = [i * 64 + b for i in range(4) for b in range(64) if sregs.interrupt_bitmap[i] >> b & 1]
    if pending:
        kvm_queue_interrupt(vcpu, pending[0], False)
    kvm_make_request(KVM_REQ_EVENT, vcpu)
    return 0


# ==========================================================================================================
# VM ioctls that are arch code
# ==========================================================================================================
# filp (the struct file) is not the model's vcpu/kvm object: gdb's <optimized out>, as on 3.7
@tracepoint("kvm", args=("ioctl", "arg"))
def kvm_arch_vm_ioctl(k: kvm, ioctl: int, arg: Any = 0) -> int:
    """The x86 VM ioctls (arch/x86/kvm/x86.c:7027). KVM_CREATE_IRQCHIP creates the PIC pair on the PIO bus
    (`kvm_pic_init`), the IOAPIC and the default GSI routing."""
    from vmio_edu.linux.virt.kvm.kvm_main import _err
    from .i8259 import kvm_pic_init
    from .ioapic import kvm_ioapic
    from .irq_comm import kvm_setup_default_irq_routing
    if ioctl == K.KVM_CREATE_IRQCHIP:
        if irqchip_in_kernel(k):
            raise _err(errno.EEXIST, "the irqchip exists already")
        if k.vcpus:
            raise _err(errno.EINVAL, "KVM_CREATE_IRQCHIP after KVM_CREATE_VCPU")
        kvm_pic_init(k)
        k.arch.vioapic = kvm_ioapic()
        kvm_setup_default_irq_routing(k)
        return 0
    if ioctl == K.KVM_SET_TSS_ADDR:
        k.arch.tss_addr = int(arg)
        return 0
    if ioctl == K.KVM_SET_IDENTITY_MAP_ADDR:
        k.arch.ept_identity_map_addr = arg.value if hasattr(arg, "value") else int(arg)
        return 0
    raise _err(errno.ENOTTY, f"VM ioctl {ioctl:#x} is not modelled")


@tracepoint("kvm", args=("kvm", "irq_event", "line_status"))
def kvm_vm_ioctl_irq_line(kvm, irq_event: K.kvm_irq_level, line_status: bool = True) -> int:
    """KVM_IRQ_LINE(_STATUS): drive GSI `irq` to `level` through `kvm_set_irq`; the status (>0 delivered,
    0 coalesced, <0 masked) goes back in the same struct (x86.c:6503-6513)."""
    from vmio_edu.linux_6_12.virt.kvm.irqchip import kvm_set_irq
    if not irqchip_in_kernel(kvm):
        return -errno.ENXIO
    status = kvm_set_irq(kvm, KVM_USERSPACE_IRQ_SOURCE_ID, irq_event.irq, irq_event.level, line_status)
    irq_event.irq = status & 0xFFFF_FFFF  # __s32 status shares the union with irq
    return 0
