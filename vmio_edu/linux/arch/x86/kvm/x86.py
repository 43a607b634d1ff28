"""arch/x86/kvm/x86.c (Linux v3.7): the vendor-independent x86 KVM code on the I/O path.

KVM_RUN enters `kvm_arch_vcpu_ioctl_run`. If the last exit left an instruction half done (an IN whose data
userspace has just put in the PIO page, an MMIO read), `complete_userspace_io` finishes it first:
`complete_emulated_pio` → `complete_emulated_io` → the emulator runs again without decoding. Then
`__vcpu_run` loops: `vcpu_enter_guest` (inject pending events, `kvm_x86_ops->run` = `vmx_vcpu_run`, then
`vmx_handle_exit`) while the exit handlers return 1; a 0 goes back to userspace with `struct kvm_run` filled.

PIO leaves through `emulator_pio_in_out`: `kernel_pio` first offers the access to in-kernel devices on the
KVM PIO bus (the PIC, and the ioeventfds of virt/kvm/eventfd.py); if none takes it, `kvm_run->io` is
filled (direction, size, port, count, data_offset = 4096) and the exit goes to userspace. OUT data is
copied into the PIO page before the exit; IN data is read from it when the instruction completes.

Exits handled in the kernel (a handler returned 1: an in-kernel device took the access, the host timer
tick, an in-kernel HLT, an interrupt window) emit the point event `kvm_exit_in_kernel` (fields: vcpu,
exit_reason = the VMX basic reason, rip at the exit, device = the in-kernel device's name or None);
`vmio_edu.trace.kernel_exits.KernelExitRecorder` turns those into `Machine.kernel_exits`.
"""
from __future__ import annotations

import ctypes
import errno
from typing import Any

from vmio_edu.errors import GuestFault
from vmio_edu.linux.arch.x86.include.asm.kvm_host import (
    EMULATE_DO_MMIO, EMULATE_DONE, EMULATE_FAIL, EMULTYPE_NO_DECODE, EMULTYPE_SKIP, EMULTYPE_TRAP_UD,
    KVM_PIO_PAGE_OFFSET, KVM_REQ_EVENT, KVM_REQ_TRIPLE_FAULT, KVM_REQ_UNHALT, VCPU_REGS_RAX, VCPU_REGS_RIP,
    VCPU_REGS_RSP)
from vmio_edu.linux.arch.x86.include.asm.page_types import PAGE_SIZE
from vmio_edu.linux.include.linux.kvm_host import (KVM_MMIO_BUS, KVM_PIO_BUS, KVM_USERSPACE_IRQ_SOURCE_ID,
                                                   irqchip_in_kernel, kvm_check_request, kvm_make_request)
from vmio_edu.linux.include.uapi.linux import kvm as K
from vmio_edu.linux.kernel.sched.core import scheduler_tick
from vmio_edu.trace.tracepoint import emit, tracepoint
from . import emulate as E
from .irq import kvm_cpu_get_interrupt, kvm_cpu_has_interrupt
from .kvm_cache_regs import kvm_register_read, kvm_register_write, kvm_rip_read, kvm_rip_write

X86_EFLAGS_IF = 1 << 9
X86_EFLAGS_VM = 1 << 17
UD_VECTOR, DF_VECTOR, GP_VECTOR, PF_VECTOR = 6, 8, 13, 14

# Set by vmx.py when it is imported, as `kvm_init(&vmx_x86_ops, ...)` does in vmx_init().
kvm_x86_ops: Any = None


# ==========================================================================================================
# Event queues (x86.c / x86.h)
# ==========================================================================================================
def kvm_queue_exception(vcpu, nr: int, error_code: int | None = None) -> None:
    ex = vcpu.arch.exception
    kvm_make_request(KVM_REQ_EVENT, vcpu)
    if ex.pending and ex.nr in (DF_VECTOR,):
        kvm_make_request(KVM_REQ_TRIPLE_FAULT, vcpu)  # a fault while delivering #DF
        return
    ex.pending, ex.nr, ex.reinject = True, nr, False
    ex.has_error_code, ex.error_code = error_code is not None, error_code or 0


def kvm_clear_exception_queue(vcpu) -> None:
    vcpu.arch.exception.pending = False


def kvm_queue_interrupt(vcpu, vector: int, soft: bool) -> None:
    it = vcpu.arch.interrupt
    it.pending, it.soft, it.nr = True, soft, vector


def kvm_clear_interrupt_queue(vcpu) -> None:
    vcpu.arch.interrupt.pending = False


def kvm_event_needs_reinjection(vcpu) -> bool:
    a = vcpu.arch
    return a.exception.pending or a.interrupt.pending or a.nmi_injected


def kvm_get_rflags(vcpu) -> int:
    return kvm_x86_ops.get_rflags(vcpu)


def kvm_set_rflags(vcpu, rflags: int) -> None:
    kvm_x86_ops.set_rflags(vcpu, rflags)
    kvm_make_request(KVM_REQ_EVENT, vcpu)


def is_protmode(vcpu) -> bool:
    return bool(vcpu.cpu.cr0 & 1)


def kvm_arch_interrupt_allowed(vcpu) -> bool:
    return kvm_x86_ops.interrupt_allowed(vcpu)


def kvm_arch_vcpu_runnable(vcpu) -> bool:
    """May a halted vCPU run again? With an interrupt it is allowed to take (IF=1, no shadow)."""
    return (vcpu.arch.mp_state == K.KVM_MP_STATE_RUNNABLE
            or (kvm_arch_interrupt_allowed(vcpu) and kvm_cpu_has_interrupt(vcpu)))


# ==========================================================================================================
# PIO
# ==========================================================================================================
@tracepoint("kvm", args=("vcpu", "pd"))
def kernel_pio(vcpu, pd) -> int:
    """Offer one element to the in-kernel devices on the PIO bus (0 = handled). String I/O is never split
    into elements for them ("TODO: String I/O for in kernel device")."""
    from vmio_edu.linux.virt.kvm.kvm_main import kvm_io_bus_read, kvm_io_bus_write
    pio = vcpu.arch.pio
    if pio.in_:
        return kvm_io_bus_read(vcpu.kvm, KVM_PIO_BUS, pio.port, pio.size, pd)
    return kvm_io_bus_write(vcpu.kvm, KVM_PIO_BUS, pio.port, pio.size, pd)


@tracepoint("kvm", args=("vcpu", "size", "port", "count", "in=in_"))
def emulator_pio_in_out(vcpu, size: int, port: int, count: int, in_: bool) -> int:
    """Record the access in vcpu->arch.pio; if no in-kernel device takes it, fill `kvm_run->io` for
    userspace (x86.c:4003-4027) and return 0."""
    pio = vcpu.arch.pio
    pio.port, pio.in_, pio.count, pio.size = port, in_, count, size
    if not kernel_pio(vcpu, vcpu.arch.pio_data):
        pio.count = 0
        return 1
    run = vcpu.run
    run.exit_reason = K.KVM_EXIT_IO
    io = run.u.io
    io.direction = K.KVM_EXIT_IO_IN if in_ else K.KVM_EXIT_IO_OUT
    io.size = size
    io.data_offset = KVM_PIO_PAGE_OFFSET * PAGE_SIZE
    io.count = count
    io.port = port
    return 0


@tracepoint("kvm", args=("ctxt", "size", "port", "count"))
def emulator_pio_in_emulated(ctxt, size: int, port: int, count: int) -> tuple[int, bytes]:
    """IN for the emulator: the first call sends the request out; the call on the next KVM_RUN finds
    `pio.count` set and takes size*count bytes from the PIO page (data_avail)."""
    vcpu = ctxt.vcpu
    if not vcpu.arch.pio.count:
        if not emulator_pio_in_out(vcpu, size, port, count, True):
            return 0, b""
    # data_avail:
    data = bytes(vcpu.arch.pio_data[:size * count])
    vcpu.arch.pio.count = 0
    return 1, data


@tracepoint("kvm", args=("ctxt", "size", "port", "val", "count"))
def emulator_pio_out_emulated(ctxt, size: int, port: int, val: bytes, count: int) -> int:
    """OUT: copy the data into the PIO page, then `emulator_pio_in_out`."""
    vcpu = ctxt.vcpu
    vcpu.arch.pio_data[:size * count] = val[:size * count]
    return emulator_pio_in_out(vcpu, size, port, count, False)


@tracepoint("kvm", args=("vcpu", "size", "port"))
def kvm_fast_pio_out(vcpu, size: int, port: int) -> int:
    """The fast path of a plain OUT (handle_io has already moved RIP past it): RAX's low `size` bytes go out
    as one element; nothing is left for the emulator to do on the next KVM_RUN."""
    val = kvm_register_read(vcpu, VCPU_REGS_RAX)
    ret = emulator_pio_out_emulated(vcpu.arch.emulate_ctxt, size, port, val.to_bytes(8, "little"), 1)
    # do not return to emulator after return from userspace
    vcpu.arch.pio.count = 0
    return ret


# ==========================================================================================================
# The emulator's callbacks (struct x86_emulate_ops emulate_ops)
# ==========================================================================================================
@tracepoint("kvm", args=("ctxt", "addr=gpa", "val=data", "bytes=n", "is_write"))
def emulator_read_write(ctxt, gpa: int, data: bytes | None, n: int, is_write: bool) -> tuple[int, bytes]:
    """Guest memory access of the emulator that landed on MMIO (the gpa comes from the EPT exit): offer
    it to in-kernel MMIO devices, else queue a fragment and fill `kvm_run->mmio` (x86.c:3843-3893)."""
    from vmio_edu.linux.virt.kvm.kvm_main import kvm_io_bus_read, kvm_io_bus_write
    vcpu = ctxt.vcpu
    if not is_write and vcpu.mmio_read_completed:  # read_prepare: userspace answered already
        vcpu.mmio_read_completed = 0
        frag = vcpu.mmio_fragments[0]
        return E.X86EMUL_CONTINUE, bytes(frag["data"][:n])
    buf = bytearray(data if is_write else n)
    handled = (not kvm_io_bus_write(vcpu.kvm, KVM_MMIO_BUS, gpa, n, bytes(buf))) if is_write else \
        (not kvm_io_bus_read(vcpu.kvm, KVM_MMIO_BUS, gpa, n, buf))
    if handled:
        return E.X86EMUL_CONTINUE, bytes(buf)
    if not vcpu.mmio_needed:
        vcpu.mmio_fragments = []
        vcpu.mmio_nr_fragments = 0
    vcpu.mmio_fragments.append({"gpa": gpa, "data": buf, "len": n})
    vcpu.mmio_nr_fragments += 1
    if vcpu.mmio_needed:  # an earlier fragment of this instruction already fills kvm_run
        return E.X86EMUL_CONTINUE, bytes(buf)
    frag = vcpu.mmio_fragments[0]
    vcpu.mmio_needed = 1
    vcpu.mmio_cur_fragment = 0
    run = vcpu.run
    run.u.mmio.len = min(8, frag["len"])
    run.u.mmio.is_write = vcpu.mmio_is_write = int(is_write)
    run.exit_reason = K.KVM_EXIT_MMIO
    run.u.mmio.phys_addr = gpa
    if is_write:  # write_exit_mmio
        ctypes.memmove(ctypes.addressof(run.u.mmio.data), bytes(frag["data"][:8]), min(8, frag["len"]))
        return E.X86EMUL_CONTINUE, bytes(buf)
    return E.X86EMUL_IO_NEEDED, b""  # read_exit_mmio


class _EmulateOps:
    """emulate_ops: how the emulator reaches registers, memory and ports of this vCPU."""

    @staticmethod
    def read_gpr(ctxt, nr: int) -> int:
        return kvm_register_read(ctxt.vcpu, nr)

    @staticmethod
    def write_gpr(ctxt, nr: int, val: int) -> None:
        kvm_register_write(ctxt.vcpu, nr, val)

    @staticmethod
    def get_segment_base(ctxt, seg: str) -> int:
        return ctxt.vcpu.cpu.segment_base(seg)

    @staticmethod
    def fetch(ctxt, eip: int, n: int) -> bytes:
        cpu = ctxt.vcpu.cpu
        la = (eip + _EmulateOps.get_segment_base(ctxt, "cs")) if ctxt.mode != E.X86EMUL_MODE_PROT64 else eip
        try:
            return cpu.read_code(la, n)
        except Exception:  # noqa: BLE001 - near the end of RAM: take what can be fetched
            out = b""
            for i in range(n):
                try:
                    out += cpu.read_code(la + i, 1)
                except Exception:  # noqa: BLE001 - a fetch fault ends the bytes
                    break
            return out

    @staticmethod
    def read_emulated(ctxt, addr: int, n: int) -> tuple[int, bytes]:
        try:
            return E.X86EMUL_CONTINUE, ctxt.vcpu.cpu.read_linear(addr, n)
        except Exception as e:  # noqa: BLE001
            return _fault(ctxt, addr, e)

    @staticmethod
    def write_emulated(ctxt, addr: int, data: bytes) -> int:
        try:
            ctxt.vcpu.cpu.write_linear(addr, data)
            return E.X86EMUL_CONTINUE
        except Exception as e:  # noqa: BLE001
            return _fault(ctxt, addr, e)[0]

    @staticmethod
    def read_emulated_gpa(ctxt, gpa: int, n: int) -> tuple[int, bytes]:
        return emulator_read_write(ctxt, gpa, None, n, False)

    @staticmethod
    def write_emulated_gpa(ctxt, gpa: int, data: bytes) -> int:
        return emulator_read_write(ctxt, gpa, data, len(data), True)[0]

    @staticmethod
    def pio_in_emulated(ctxt, size: int, port: int, count: int) -> tuple[int, bytes]:
        return emulator_pio_in_emulated(ctxt, size, port, count)

    @staticmethod
    def pio_out_emulated(ctxt, size: int, port: int, val: bytes, count: int) -> int:
        return emulator_pio_out_emulated(ctxt, size, port, val, count)

    @staticmethod
    def mmio_access(ctxt):
        return ctxt.vcpu.cpu.mmio_access

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


def _fault(ctxt, addr: int, e: Exception) -> tuple[int, bytes]:
    from vmio_edu.cpu.mmu import PageFault
    if isinstance(e, PageFault):
        ctxt.exception = E.x86_exception(PF_VECTOR, True, 0)
        return E.X86EMUL_PROPAGATE_FAULT, b""
    ctxt.fail_reason = f"{ctxt.text!r} at rip={ctxt.eip:#x}: {e}"
    return E.X86EMUL_UNHANDLEABLE, b""


emulate_ops = _EmulateOps()


# ==========================================================================================================
# x86_emulate_instruction and its completion
# ==========================================================================================================
def init_emulate_ctxt(vcpu) -> None:
    ctxt = vcpu.arch.emulate_ctxt
    ctxt.eflags = kvm_get_rflags(vcpu)
    ctxt.eip = kvm_rip_read(vcpu)
    cs_db, cs_l = kvm_x86_ops.get_cs_db_l_bits(vcpu)
    ctxt.mode = (E.X86EMUL_MODE_REAL if not is_protmode(vcpu) else
                 E.X86EMUL_MODE_VM86 if ctxt.eflags & X86_EFLAGS_VM else
                 E.X86EMUL_MODE_PROT64 if cs_l else
                 E.X86EMUL_MODE_PROT32 if cs_db else E.X86EMUL_MODE_PROT16)
    # init_decode_cache
    ctxt.io_read.pos = ctxt.io_read.end = 0
    E.emulator_invalidate_register_cache(ctxt)
    vcpu.arch.emulate_regs_need_sync_from_vcpu = False


def toggle_interruptibility(vcpu, mask: int) -> None:
    int_shadow = kvm_x86_ops.get_interrupt_shadow(vcpu, mask)
    # an sti; sti; sequence only disables interrupts for the first instruction
    if not int_shadow & mask:
        kvm_x86_ops.set_interrupt_shadow(vcpu, mask)


def inject_emulated_exception(vcpu) -> None:
    ex = vcpu.arch.emulate_ctxt.exception
    kvm_queue_exception(vcpu, ex.vector, ex.error_code if ex.error_code_valid else None)


@tracepoint("kvm", args=("vcpu",))
def handle_emulation_failure(vcpu) -> int:
    """The emulator gave up: KVM_EXIT_INTERNAL_ERROR (suberror 1, emulation) and a #UD queued."""
    vcpu.stat["insn_emulation_fail"] += 1
    run = vcpu.run
    run.exit_reason = K.KVM_EXIT_INTERNAL_ERROR
    run.u.internal.suberror = K.KVM_INTERNAL_ERROR_EMULATION
    run.u.internal.ndata = 0
    ctxt = vcpu.arch.emulate_ctxt
    vcpu.exit_detail = f"emulation failure: {ctxt.fail_reason or ctxt.text or 'unknown instruction'}"
    kvm_queue_exception(vcpu, UD_VECTOR)
    return EMULATE_FAIL


@tracepoint("kvm", args=("vcpu", "cr2", "emulation_type", "insn", "insn_len"))
def x86_emulate_instruction(vcpu, cr2: int, emulation_type: int, insn: bytes | None = None,
                            insn_len: int = 0) -> int:
    """Decode (unless EMULTYPE_NO_DECODE) and emulate one instruction; decide what the exit handler returns.

    After `x86_emulate_insn`: with `pio.count` set, an OUT is complete (count cleared, RIP written back:
    the exit goes out with RIP as the emulator left it) while an IN keeps the registers unwritten and arms
    `complete_emulated_pio` for the next KVM_RUN (x86.c:4620-4626). Likewise for MMIO. A RESTART loops
    here without going back to the guest.
    """
    ctxt = vcpu.arch.emulate_ctxt
    writeback = True
    kvm_clear_exception_queue(vcpu)
    if not emulation_type & EMULTYPE_NO_DECODE:
        init_emulate_ctxt(vcpu)
        ctxt.interruptibility = 0
        ctxt.have_exception = False
        ctxt.perm_ok = False
        ctxt.only_vendor_specific_insn = bool(emulation_type & EMULTYPE_TRAP_UD)
        r = E.x86_decode_insn(ctxt, insn, insn_len)
        vcpu.stat["insn_emulation"] += 1
        if r != E.EMULATION_OK:
            if emulation_type & EMULTYPE_TRAP_UD:
                return EMULATE_FAIL
            if emulation_type & EMULTYPE_SKIP:
                return EMULATE_FAIL
            return handle_emulation_failure(vcpu)
    if emulation_type & EMULTYPE_SKIP:
        kvm_rip_write(vcpu, ctxt._eip)
        return EMULATE_DONE
    if vcpu.arch.emulate_regs_need_sync_from_vcpu:
        vcpu.arch.emulate_regs_need_sync_from_vcpu = False
        E.emulator_invalidate_register_cache(ctxt)

    while True:  # restart:
        r = E.x86_emulate_insn(ctxt)
        if r == E.EMULATION_INTERCEPTED:
            return EMULATE_DONE
        if r == E.EMULATION_FAILED:
            return handle_emulation_failure(vcpu)
        if ctxt.have_exception:
            inject_emulated_exception(vcpu)
            r = EMULATE_DONE
        elif vcpu.arch.pio.count:
            if not vcpu.arch.pio.in_:
                vcpu.arch.pio.count = 0
            else:
                writeback = False
                vcpu.arch.complete_userspace_io = complete_emulated_pio
            r = EMULATE_DO_MMIO
        elif vcpu.mmio_needed:
            if not vcpu.mmio_is_write:
                writeback = False
            r = EMULATE_DO_MMIO
            vcpu.arch.complete_userspace_io = complete_emulated_mmio
        elif r == E.EMULATION_RESTART:
            continue
        else:
            r = EMULATE_DONE
        break

    if writeback:
        toggle_interruptibility(vcpu, ctxt.interruptibility)
        kvm_set_rflags(vcpu, ctxt.eflags)
        kvm_make_request(KVM_REQ_EVENT, vcpu)
        vcpu.arch.emulate_regs_need_sync_to_vcpu = False
        kvm_rip_write(vcpu, ctxt.eip)
    else:
        vcpu.arch.emulate_regs_need_sync_to_vcpu = True
    return r


@tracepoint("kvm", args=("vcpu", "emulation_type"))
def emulate_instruction(vcpu, emulation_type: int) -> int:
    """kvm_host.h's inline wrapper: x86_emulate_instruction(vcpu, 0, emulation_type, NULL, 0)."""
    return x86_emulate_instruction(vcpu, 0, emulation_type, None, 0)


@tracepoint("kvm", args=("vcpu",))
def complete_emulated_io(vcpu) -> int:
    """Re-run the emulator on the instruction decoded before the exit (EMULTYPE_NO_DECODE)."""
    r = emulate_instruction(vcpu, EMULTYPE_NO_DECODE)
    return 0 if r != EMULATE_DONE else 1


@tracepoint("kvm", args=("vcpu",))
def complete_emulated_pio(vcpu) -> int:
    """complete_userspace_io for an IN/INS: userspace has put the data in the PIO page."""
    if not vcpu.arch.pio.count:
        raise GuestFault("KVM model: complete_emulated_pio without a PIO request in flight (BUG_ON)")
    return complete_emulated_io(vcpu)


@tracepoint("kvm", args=("vcpu",))
def complete_emulated_mmio(vcpu) -> int:
    """complete_userspace_io for MMIO: take the data of a read, then go on to the next fragment or finish
    the instruction (x86.c:5531-5573)."""
    run = vcpu.run
    if not vcpu.mmio_needed:
        raise GuestFault("KVM model: complete_emulated_mmio without MMIO in flight (BUG_ON)")
    frag = vcpu.mmio_fragments[vcpu.mmio_cur_fragment]
    n = min(8, frag["len"])
    if not vcpu.mmio_is_write:
        frag["data"][:n] = bytes(run.u.mmio.data)[:n]
    if frag["len"] <= 8:
        vcpu.mmio_cur_fragment += 1  # switch to the next fragment
    else:
        frag["data"], frag["gpa"], frag["len"] = frag["data"][n:], frag["gpa"] + n, frag["len"] - n
    if vcpu.mmio_cur_fragment == vcpu.mmio_nr_fragments:
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
# HLT, events, the run loop
# ==========================================================================================================
@tracepoint("kvm", args=("vcpu",))
def kvm_emulate_halt(vcpu) -> int:
    """With the in-kernel irqchip the vCPU just becomes HALTED (and `__vcpu_run` blocks it); without one
    the HLT goes to userspace as KVM_EXIT_HLT."""
    vcpu.stat["halt_exits"] += 1
    if irqchip_in_kernel(vcpu.kvm):
        vcpu.arch.mp_state = K.KVM_MP_STATE_HALTED
        return 1
    vcpu.run.exit_reason = K.KVM_EXIT_HLT
    return 0


@tracepoint("kvm", args=("vcpu",))
def inject_pending_event(vcpu) -> None:
    """Re-inject a queued exception or interrupt, or take a new interrupt from the PIC if the guest can
    accept one now (IF=1, no STI/MOV SS shadow): `kvm_cpu_get_interrupt` acknowledges it (INTA) and
    `vmx_inject_irq` writes VM_ENTRY_INTR_INFO_FIELD."""
    a = vcpu.arch
    if a.exception.pending:
        kvm_x86_ops.queue_exception(vcpu, a.exception.nr, a.exception.has_error_code, a.exception.error_code,
                                    a.exception.reinject)
        return
    if a.interrupt.pending:
        kvm_x86_ops.set_irq(vcpu)
        return
    if kvm_cpu_has_interrupt(vcpu):
        if kvm_x86_ops.interrupt_allowed(vcpu):
            kvm_queue_interrupt(vcpu, kvm_cpu_get_interrupt(vcpu), False)
            kvm_x86_ops.set_irq(vcpu)


@tracepoint("kvm", args=("vcpu",))
def vcpu_enter_guest(vcpu) -> int:
    """Handle requests, inject events (or ask for an interrupt window), enter the guest through
    `kvm_x86_ops->run` and hand the exit to `kvm_x86_ops->handle_exit`."""
    req_int_win = not irqchip_in_kernel(vcpu.kvm) and vcpu.run.request_interrupt_window
    if vcpu.requests:
        if kvm_check_request(KVM_REQ_TRIPLE_FAULT, vcpu):
            vcpu.run.exit_reason = K.KVM_EXIT_SHUTDOWN
            return 0
    if kvm_check_request(KVM_REQ_EVENT, vcpu) or req_int_win:
        inject_pending_event(vcpu)
        # enable NMI/IRQ window open exits if needed
        if kvm_cpu_has_interrupt(vcpu) or req_int_win:
            kvm_x86_ops.enable_irq_window(vcpu)
    vcpu.mode = 1  # IN_GUEST_MODE
    kvm_x86_ops.run(vcpu)
    vcpu.mode = 0  # OUTSIDE_GUEST_MODE
    # local_irq_enable() (x86.c:5369): a host interrupt that arrived in guest mode is taken here. The
    # emulated CPU's only one is the host timer tick that ended its slice (EXIT_REASON_EXTERNAL_INTERRUPT).
    if vcpu.cpu.host_intr_pending:
        vcpu.cpu.host_intr_pending = False
        scheduler_tick(vcpu)
    vcpu.stat["exits"] += 1
    vcpu.kvm.last_io_dev = None
    rip = vcpu.cpu.vmcs.GUEST_RIP
    r = kvm_x86_ops.handle_exit(vcpu)
    if r > 0:  # handled in the kernel: back into the guest, QEMU never sees it
        emit("kvm_exit_in_kernel", "kvm", vcpu=vcpu, exit_reason=vcpu.vmx.exit_reason, rip=rip,
             device=vcpu.kvm.last_io_dev)
    return r


def signal_pending(vcpu) -> bool:
    """A signal for the vCPU thread: in the model, the scheduler asking the running thread to park, or a
    kick queued for it (`vcpu.sigpending`, as QEMU's qemu_cpu_kick sends SIG_IPI)."""
    sched = vcpu.kvm.sched
    return bool(sched is not None and vcpu.model_thread is not None
                and (vcpu.sigpending or getattr(sched, "park_requested", False)))


@tracepoint("kvm", args=("vcpu",))
def __vcpu_run(vcpu) -> int:
    """The KVM_RUN loop: enter the guest while it is runnable, block while it is halted, stop on r <= 0
    or a pending signal (KVM_EXIT_INTR, -EINTR). Between entries, a vCPU thread the host tick marked
    TIF_NEED_RESCHED lets other threads run (`kvm_resched`) and then goes on, still inside KVM_RUN."""
    from vmio_edu.linux.virt.kvm.kvm_main import kvm_resched, kvm_vcpu_block
    r = 1
    while r > 0:
        if vcpu.arch.mp_state == K.KVM_MP_STATE_RUNNABLE:
            r = vcpu_enter_guest(vcpu)
        else:
            kvm_vcpu_block(vcpu)
            if kvm_check_request(KVM_REQ_UNHALT, vcpu):
                if vcpu.arch.mp_state == K.KVM_MP_STATE_HALTED:
                    vcpu.arch.mp_state = K.KVM_MP_STATE_RUNNABLE
            elif vcpu.block_gave_up:
                # Model: no scheduler to sleep in (a unit test driving KVM_RUN by hand), so the halted vCPU
                # comes back to the caller as KVM_EXIT_HLT instead of sleeping in the kernel.
                vcpu.block_gave_up = False
                vcpu.run.exit_reason = K.KVM_EXIT_HLT
                vcpu.exit_detail = ("halted with nothing to wake it now (IF=0 or no interrupt pending); the "
                                    "real kernel would sleep here")
                r = 0
        if r <= 0:
            break
        if signal_pending(vcpu):
            r = -errno.EINTR
            vcpu.run.exit_reason = K.KVM_EXIT_INTR
            vcpu.stat["signal_exits"] += 1
        if vcpu.need_resched:  # the host tick wants the CPU for another thread (x86.c:5481-5484)
            kvm_resched(vcpu)
    return r


def post_kvm_run_save(vcpu) -> None:
    run = vcpu.run
    run.if_flag = 1 if kvm_get_rflags(vcpu) & X86_EFLAGS_IF else 0
    run.cr8 = vcpu.arch.cr8
    run.apic_base = vcpu.arch.apic_base
    if irqchip_in_kernel(vcpu.kvm):
        run.ready_for_interrupt_injection = 1
    else:
        run.ready_for_interrupt_injection = int(kvm_arch_interrupt_allowed(vcpu)
                                                and not kvm_cpu_has_interrupt(vcpu)
                                                and not kvm_event_needs_reinjection(vcpu))


@tracepoint("kvm", args=("vcpu", "kvm_run"))
def kvm_arch_vcpu_ioctl_run(vcpu, kvm_run) -> int:
    """KVM_RUN: first finish what the last exit left half done (`complete_userspace_io`), then run."""
    vcpu.exit_detail = ""
    vcpu.cpu.budget_left = vcpu.cpu.max_insns
    try:
        cui = vcpu.arch.complete_userspace_io
        if cui is not None:
            vcpu.arch.complete_userspace_io = None
            r = cui(vcpu)
            if r <= 0:
                return r
        r = __vcpu_run(vcpu)
        return r
    finally:
        post_kvm_run_save(vcpu)
        emit("kvm_userspace_exit", "kvm", reason=vcpu.run.exit_reason, vcpu=vcpu)


# ==========================================================================================================
# Registers and special registers (KVM_GET/SET_REGS, KVM_GET/SET_SREGS)
# ==========================================================================================================
_KVM_REGS_ORDER = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13",
                   "r14", "r15")


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
    kvm_set_rflags(vcpu, regs.rflags)
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
    if it.pending and not it.soft:
        sregs.interrupt_bitmap[it.nr // 64] |= 1 << (it.nr % 64)
    return 0


def kvm_arch_vcpu_ioctl_set_sregs(vcpu, sregs: K.kvm_sregs) -> int:
    """Segments, control registers and descriptor tables go to the CPU (`X86Cpu.set_sregs` applies them
    to Unicorn as far as it allows and keeps notes of what it could not take)."""
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
@tracepoint("kvm", args=("kvm", "irq_event"))
def kvm_vm_ioctl_irq_line(kvm, irq_event: K.kvm_irq_level) -> int:
    """KVM_IRQ_LINE(_STATUS): drive GSI `irq` to `level` through `kvm_set_irq`; the status (>0 delivered,
    0 coalesced, <0 masked) goes back in the same struct (irq and status share a union)."""
    from vmio_edu.linux.virt.kvm.irq_comm import kvm_set_irq
    if not irqchip_in_kernel(kvm):
        return -errno.ENXIO
    status = kvm_set_irq(kvm, KVM_USERSPACE_IRQ_SOURCE_ID, irq_event.irq, irq_event.level)
    irq_event.irq = status & 0xFFFF_FFFF  # __s32 status in the union
    return 0
