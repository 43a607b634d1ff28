"""The emulated x86 processor with VMX-style exits: Unicorn runs the guest, Capstone decodes exits.

`X86Cpu` plays the hardware under KVM's VMX code. `run()` is one VM entry: it loads the guest state
KVM left in the VMCS, delivers an injected event if VM_ENTRY_INTR_INFO_FIELD asks for one, then lets
Unicorn execute guest instructions until something a VMX processor would exit on:

* IN/OUT/INS/OUTS (exit reason 30) and HLT (12): a code hook runs before every instruction and stops
  Unicorn *before* these, so nothing of them has happened; Capstone's decode fills EXIT_QUALIFICATION
  and VM_EXIT_INSTRUCTION_LEN. KVM then performs the instruction's effect itself, as the real one does.
* a guest-physical address outside every memory slot (48 EPT violation, or 49 EPT misconfig once KVM
  has marked the page as MMIO): MMIO is left unmapped in Unicorn, so the access faults precisely;
* an invalid opcode (0, exception #UD: KVM intercepts it);
* an open interrupt window when KVM asked for one (7);
* a failed event delivery (2, triple fault);
* the host timer tick (1, external interrupt): every `slice_insns` guest instructions (1,000,000 by
  default: 4 ms at HZ=250 and a nominal 250 M instructions/s), counted over the CPU's life, so the same
  guest is interrupted at the same instructions every run; `host_intr_pending` tells KVM the host
  interrupt is waiting to be taken (linux/kernel/sched/core.py).

Exceptions and `int n` inside the guest are delivered through its IVT/IDT without a VM exit, as on real
hardware (`vmio_edu.cpu.events`).

The per-instruction hook is the price of exact exits (~0.3 µs per instruction through raw ctypes): it
looks the address up in `kinds`, a cache of what each instruction is, and does nothing more for ordinary
instructions. The cache is dropped for a page when the guest writes to it (a write hook on code pages)
or when KVM writes guest memory (`write_phys`).
"""
from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass

from unicorn import (UC_HOOK_MEM_FETCH_UNMAPPED, UC_HOOK_MEM_READ, UC_HOOK_MEM_READ_UNMAPPED,
                     UC_HOOK_MEM_WRITE, UC_HOOK_MEM_WRITE_UNMAPPED, UC_MODE_16, UC_MODE_32, UC_MODE_64,
                     UC_PROT_ALL, Uc, UcError)
from unicorn import unicorn_const as UCC
from unicorn import x86_const as X

from ..errors import BudgetExceeded, GuestFault
from ..linux.include.uapi.linux.kvm import kvm_dtable, kvm_segment, kvm_sregs
from . import vmcs as V
from .decode import KIND_HLT, KIND_IO, KIND_NONE, KIND_SHADOW, KIND_STI, classify, decode_io, disasm, insn_length
from .events import (CONTRIBUTORY, EXT_INTR, HW_EXCEPTION, SOFT_INTR, DeliveryError, deliver, vector_name)
from .mmu import CR0_PE, EFER_LMA, PageFault, Paging, translate
from .ucapi import GPRS_32, GPRS_64, ExceptionState, FastUc, new_uc, uclib

PAGE = 4096
UNTIL = 0xFFFF_FFFF_FFFF_FFFF  # never reached: we stop on our own conditions
DEFAULT_MAX_INSNS = 50_000_000
DEFAULT_SLICE_INSNS = 1_000_000
EFLAGS_IF = 1 << 9
MSR_EFER = 0xC0000080
VCPU_REGS_RSP, VCPU_REGS_RIP = 4, 16
_STOP_WINDOW = 9
_UC_MODES = {16: UC_MODE_16, 32: UC_MODE_32, 64: UC_MODE_64}
_SEGS = ("cs", "ds", "es", "fs", "gs", "ss")
_SEG_IDS = {"cs": X.UC_X86_REG_CS, "ds": X.UC_X86_REG_DS, "es": X.UC_X86_REG_ES, "fs": X.UC_X86_REG_FS,
            "gs": X.UC_X86_REG_GS, "ss": X.UC_X86_REG_SS}
_UC_TB_FLUSH_WRITE = (1 << 30) | UCC.UC_CTL_TB_FLUSH


class _HookState:
    """What the hooks saw during one `uc_emu_start` (plain slots: the code hook touches them per insn)."""

    __slots__ = ("n", "watch", "stop", "addr", "size", "shadow_n", "shadow", "intr", "intr_eip", "mmio",
                 "error", "stepping", "step_log")

    def __init__(self) -> None:
        self.n = 0             # instructions seen by the code hook since the CPU was created
        self.watch = False     # interrupt-window exiting requested
        self.stop = 0          # KIND_IO / KIND_HLT / _STOP_WINDOW when the code hook stopped Unicorn
        self.addr = self.size = 0
        self.shadow_n = -2     # `n` of the last STI/MOV SS that blocks interrupts for one instruction
        self.shadow = 0        # its GUEST_INTR_STATE_* bit
        self.intr = -1         # vector handed to the interrupt hook
        self.intr_eip = 0
        self.mmio = None       # (access, gpa, size, value) of an access to unmapped memory
        self.error: BaseException | None = None
        self.stepping = False  # single-stepping an MMIO instruction over a scratch page
        self.step_log: list = []


@dataclass(frozen=True)
class MmioAccess:
    """The access that caused an EPT violation/misconfig (what the real CPU reports is the gpa)."""

    gpa: int
    size: int
    is_write: bool
    is_fetch: bool
    value: int


class MmioStepError(Exception):
    """The instruction touched MMIO in a way one single step over a scratch page cannot model."""


class X86Cpu:
    """One virtual processor (see the module docstring). KVM's vCPU owns one."""

    def __init__(self, vcpu_id: int = 0, max_insns: int = DEFAULT_MAX_INSNS,
                 slice_insns: int = DEFAULT_SLICE_INSNS) -> None:
        self.vcpu_id = vcpu_id
        self.vmcs = V.VMCS()
        self.max_insns = max_insns        # per KVM_RUN: more instructions without an exit to userspace fail
        self.slice_insns = slice_insns    # instructions per host timer tick (then an external-interrupt exit)
        self.host_intr_pending = False    # the host timer interrupt that ended the last entry is not yet taken
        self.budget_left = max_insns
        self.slots: dict[int, tuple[int, int, int]] = {}  # slot -> (gpa, size, host address): guest RAM
        self.mmio_gfns: set[int] = set()  # guest pages KVM's MMU has marked as MMIO (EPT misconfig)
        self.kinds: dict[int, int] = {}   # linear address -> KIND_*
        self._io_cache: dict[int, object] = {}  # linear address -> decoded IoInsn (dropped with `kinds`)
        self.code_sites: dict[int, set[int]] = {}  # guest-physical page -> linear addresses in `kinds`
        self.mmio_access: MmioAccess | None = None
        self.guest_debug: Any = None  # set by a debugger with guest stops (vmio_edu.trace.guest_stops)
        self.last_event = ""              # the last event delivered, for views
        self.fault_detail = ""            # why the last triple fault / emulation failure happened
        self.notes: list[str] = []        # state Unicorn could not take (from KVM_SET_SREGS)
        self.uc_mode = 0
        self.uc: Uc | None = None
        self.fuc: FastUc | None = None
        self._hs = _HookState()
        self._watched_pages: set[int] = set()
        self._lin_pages: dict[int, int] = {}
        self._seg_cache: dict[tuple, tuple[int, int]] = {}
        self._paging: Paging | None = None
        self._paging_key: tuple = ()
        self._efer = 0
        self._sregs = _reset_sregs()
        # guest state as saved at the last exit (the VMCS holds RIP/RSP/RFLAGS)
        self.gprs = [0] * 17
        self.sel = {s: 0 for s in _SEGS}
        self.cr0 = self.cr3 = self.cr4 = 0
        self._create(16)
        self.set_sregs(self._sregs, reset=True)
        self.vmcs.GUEST_RIP, self.vmcs.GUEST_RFLAGS = 0xFFF0, 0x2

    # ==================================================================================================
    # The Unicorn engine behind the CPU
    # ==================================================================================================
    def _create(self, bits: int) -> None:
        """A fresh Unicorn in `bits` mode with every memory slot mapped and the hooks installed.

        Unicorn's mode is fixed at creation and decides which registers its API accepts (16/32-bit
        engines have no R8-R15), so a KVM_SET_SREGS into another mode recreates the engine."""
        if self.uc is not None:
            self.uc = self.fuc = None
        self.uc = new_uc(_UC_MODES[bits])
        self.fuc = FastUc(self.uc)
        self._exc = ExceptionState(self.uc)
        self.uc_mode = bits
        self._gpr_ids = GPRS_64 if bits == 64 else GPRS_32
        self._flags_id = X.UC_X86_REG_RFLAGS if bits == 64 else X.UC_X86_REG_EFLAGS
        self._ip_id = X.UC_X86_REG_RIP if bits == 64 else X.UC_X86_REG_EIP
        self._sp_id = X.UC_X86_REG_RSP if bits == 64 else X.UC_X86_REG_ESP
        ids = [r for r in self._gpr_ids if r is not None]
        self._exit_batch = ids + [self._flags_id, X.UC_X86_REG_CS, X.UC_X86_REG_SS, X.UC_X86_REG_DS,
                                  X.UC_X86_REG_ES, X.UC_X86_REG_CR0, X.UC_X86_REG_CR3, X.UC_X86_REG_CR4]
        self._gpr_slots = [i for i, r in enumerate(self._gpr_ids) if r is not None]
        for gpa, size, hva in self.slots.values():
            self.uc.mem_map_ptr(gpa, size, UC_PROT_ALL, hva)
        self.kinds.clear()
        self._io_cache.clear()
        self.code_sites.clear()
        self._watched_pages.clear()
        self._full_load = True  # the new engine knows nothing: load every register at the next entry
        self._install_hooks()

    def _install_hooks(self) -> None:
        fuc, st, kinds_get, slow = self.fuc, self._hs, self.kinds.get, self._hook_slow

        def code_hook(handle, addr, size, _ud):  # the hot path: keep it this small
            st.n += 1
            k = kinds_get(addr, -1)
            if k or st.watch:
                slow(handle, addr, size, k)

        def intr_hook(handle, intno, _ud):
            st.intr = intno
            try:
                st.intr_eip = fuc.read(self._ip_id)
            except Exception as e:  # noqa: BLE001 - never raise into C
                st.error = e
            uclib.uc_emu_stop(handle)

        def unmapped_hook(handle, access, addr, size, value, _ud):
            st.mmio = (access, addr, size, value)
            return False

        fuc.hook_code(code_hook)
        fuc.hook_intr(intr_hook)
        fuc.hook_mem_invalid(UC_HOOK_MEM_READ_UNMAPPED | UC_HOOK_MEM_WRITE_UNMAPPED
                             | UC_HOOK_MEM_FETCH_UNMAPPED, unmapped_hook)

    def _hook_slow(self, handle, addr: int, size: int, k: int) -> None:
        st = self._hs
        try:
            if k == -1:
                k = self._classify(addr, size)
            if st.watch and not st.stepping and self._window_open(st):
                st.stop, st.addr, st.size = _STOP_WINDOW, addr, size
                uclib.uc_emu_stop(handle)
            elif k == KIND_IO or k == KIND_HLT:
                if not st.stepping:
                    if self.guest_debug is not None:  # a guest stop here first (it ends the hooks' turn)
                        self.guest_debug(handle, addr)
                    st.stop, st.addr, st.size = k, addr, size
                    uclib.uc_emu_stop(handle)
            elif k == KIND_STI:
                if not self.fuc.read(self._flags_id) & EFLAGS_IF:  # STI only blocks if IF was 0
                    st.shadow_n, st.shadow = st.n, V.GUEST_INTR_STATE_STI
            elif k == KIND_SHADOW:
                st.shadow_n, st.shadow = st.n, V.GUEST_INTR_STATE_MOV_SS
        except BaseException as e:  # noqa: BLE001 - never raise into C; run() re-raises it
            st.error = e
            uclib.uc_emu_stop(handle)

    def _window_open(self, st: _HookState) -> bool:
        """Interrupt-window exiting: at this instruction boundary, may an interrupt be taken?"""
        return st.shadow_n != st.n - 1 and bool(self.fuc.read(self._flags_id) & EFLAGS_IF)

    def _classify(self, addr: int, size: int) -> int:
        try:
            code = self.read_code(addr, size)
        except PageFault:
            return KIND_NONE
        k = classify(code, size)
        self.kinds[addr] = k
        for page in {addr & ~0xFFF, (addr + size - 1) & ~0xFFF}:
            phys = self._phys_page(page)
            self.code_sites.setdefault(phys, set()).add(addr)
            if phys not in self._watched_pages:
                self._watched_pages.add(phys)
                self.fuc.hook_mem(UC_HOOK_MEM_WRITE, self._code_written, phys, phys + PAGE - 1)
        return k

    def _code_written(self, handle, access, addr, size, value, _ud) -> None:
        """The guest wrote into a page it runs code from: forget what we knew about those bytes."""
        self._forget_page(addr & ~0xFFF)
        if (addr + size - 1) & ~0xFFF != addr & ~0xFFF:
            self._forget_page((addr + size - 1) & ~0xFFF)

    def _forget_page(self, phys_page: int) -> None:
        for a in self.code_sites.pop(phys_page, ()):
            self.kinds.pop(a, None)
            self._io_cache.pop(a, None)

    def flush_code_cache(self) -> None:
        """Drop every translated block and classification (after a VMM rewrote guest code or state)."""
        uclib.uc_ctl(self.fuc.h, _UC_TB_FLUSH_WRITE)
        self.kinds.clear()
        self._io_cache.clear()
        self.code_sites.clear()
        self._lin_pages.clear()
        self._seg_cache.clear()

    # ==================================================================================================
    # Memory: slots (the EPT's RAM), physical and linear access
    # ==================================================================================================
    def map_slot(self, slot: int, gpa: int, size: int, hva: int) -> None:
        if slot in self.slots:
            self.unmap_slot(slot)
        self.uc.mem_map_ptr(gpa, size, UC_PROT_ALL, hva)
        self.slots[slot] = (gpa, size, hva)
        self.flush_code_cache()

    def unmap_slot(self, slot: int) -> None:
        gpa, size, _ = self.slots.pop(slot)
        self.uc.mem_unmap(gpa, size)
        self.flush_code_cache()

    def is_ram(self, gpa: int) -> bool:
        return any(g <= gpa < g + s for g, s, _ in self.slots.values())

    def read_phys(self, gpa: int, n: int) -> bytes | None:
        """Guest-physical bytes straight from the host memory behind the slots; None outside RAM."""
        out = b""
        while n > 0:
            for g, s, hva in self.slots.values():
                if g <= gpa < g + s:
                    k = min(n, g + s - gpa)
                    out += ctypes.string_at(hva + gpa - g, k)
                    gpa, n = gpa + k, n - k
                    break
            else:
                return None
        return out

    def write_phys(self, gpa: int, data: bytes) -> bool:
        """Write guest RAM through Unicorn (so translated code there is invalidated); False outside RAM."""
        if not data:
            return True
        if not self.fuc.mem_write(gpa, data):
            return False
        for page in range(gpa & ~0xFFF, gpa + len(data), PAGE):
            if page in self.code_sites:
                self._forget_page(page)
        return True

    def paging(self) -> Paging:
        if self._paging is None:
            self._paging = Paging(self.cr0, self.cr3, self.cr4, self._read_efer())
        return self._paging

    def _sync_paging(self, live: bool = False) -> None:
        """Forget cached translations (our small TLB) when CR0, CR3 or CR4 changed since they were made.
        Like a real TLB it is not flushed by page-table edits alone (a guest would need INVLPG)."""
        if live:
            self.cr0, self.cr3, self.cr4 = self.fuc.read_batch([X.UC_X86_REG_CR0, X.UC_X86_REG_CR3,
                                                                X.UC_X86_REG_CR4])
        key = (self.cr0, self.cr3, self.cr4)
        if key != self._paging_key:
            self._paging_key = key
            self._paging = None
            self._lin_pages.clear()

    def _read_efer(self) -> int:
        try:
            self._efer = self.uc.msr_read(MSR_EFER)
        except UcError:
            pass
        return self._efer

    def linear_to_phys(self, linear: int) -> int:
        return translate(self.paging(), linear, self._read_phys_strict)

    def _read_phys_strict(self, gpa: int, n: int) -> bytes:
        data = self.read_phys(gpa, n)
        if data is None:
            raise PageFault(gpa, f"page-table entry at guest-physical {gpa:#x} is outside RAM")
        return data

    def _phys_page(self, linear_page: int) -> int:
        p = self._lin_pages.get(linear_page)
        if p is None:
            p = self._lin_pages[linear_page] = self.linear_to_phys(linear_page) & ~0xFFF
        return p

    def read_linear(self, addr: int, n: int) -> bytes:
        """Bytes at a linear address (page by page); raises PageFault or GuestFault outside RAM."""
        out = b""
        while n > 0:
            k = min(n, PAGE - (addr & 0xFFF))
            gpa = self._phys_page(addr & ~0xFFF) | (addr & 0xFFF)
            data = self.read_phys(gpa, k)
            if data is None:
                raise GuestFault(f"read of {k} bytes at guest-physical {gpa:#x} (linear {addr:#x}): not RAM")
            out += data
            addr, n = addr + k, n - k
        return out

    def write_linear(self, addr: int, data: bytes) -> None:
        while data:
            k = min(len(data), PAGE - (addr & 0xFFF))
            gpa = self._phys_page(addr & ~0xFFF) | (addr & 0xFFF)
            if not self.write_phys(gpa, data[:k]):
                raise GuestFault(f"write of {k} bytes at guest-physical {gpa:#x} (linear {addr:#x}): not RAM")
            addr, data = addr + k, data[k:]

    def read_code(self, addr: int, size: int) -> bytes:
        """The `size` bytes of the instruction at linear `addr`."""
        out = b""
        while size > 0:
            k = min(size, PAGE - (addr & 0xFFF))
            data = self.read_phys(self._phys_page(addr & ~0xFFF) | (addr & 0xFFF), k)
            if data is None:
                raise PageFault(addr, "instruction bytes outside RAM")
            out += data
            addr, size = addr + k, size - k
        return out

    # ==================================================================================================
    # Registers and modes (live, from Unicorn)
    # ==================================================================================================
    def protected_mode(self) -> bool:
        return bool(self.fuc.read(X.UC_X86_REG_CR0) & CR0_PE)

    def long_mode(self) -> bool:
        return self.uc_mode == 64 and bool(self._read_efer() & EFER_LMA)

    def code_bits(self) -> int:
        """16, 32 or 64: the default operand/address size of the code running now (CS.L / CS.D)."""
        if not self.cr0 & CR0_PE:
            return 16
        if self.uc_mode == 64 and self._efer & EFER_LMA:
            return 64  # compatibility mode (CS.L = 0 in long mode) is not modelled
        desc = self._descriptor(self.sel["cs"])
        return 32 if desc is None or desc[2] & (1 << 22) else 16

    def cpl(self) -> int:
        return self.fuc.read(X.UC_X86_REG_CS) & 3 if self.protected_mode() else 0

    def _descriptor(self, selector: int) -> tuple[int, int, int] | None:
        """(base, limit, flags) of a GDT/LDT descriptor as the CPU caches it; None if unreadable."""
        key = ("desc", selector)
        hit = self._seg_cache.get(key)
        if hit is not None:
            return hit
        _sel, base, limit, _fl = self.uc.reg_read(X.UC_X86_REG_GDTR)
        if selector & 4 or (selector & ~7) + 7 > limit:
            return None
        try:
            lo, hi = struct.unpack("<II", self.read_linear(base + (selector & ~7), 8))
        except (PageFault, GuestFault):
            return None
        dbase = (lo >> 16) | (hi & 0xFF) << 16 | (hi & 0xFF000000)
        dlimit = (lo & 0xFFFF) | (hi & 0xF0000)
        if hi & (1 << 23):
            dlimit = dlimit << 12 | 0xFFF
        out = (dbase, dlimit, hi & 0x00F0FF00)
        self._seg_cache[key] = out
        return out

    def segment_base(self, seg: str) -> int:
        """Base of segment register `seg` as of the last exit (what KVM's get_segment_base returns)."""
        sel = self.sel[seg] if seg in self.sel else self.fuc.read(_SEG_IDS[seg])
        if not self.cr0 & CR0_PE:
            return sel << 4
        if self.uc_mode == 64 and self._efer & EFER_LMA:
            if seg in ("fs", "gs"):
                return self.fuc.read(X.UC_X86_REG_FS_BASE if seg == "fs" else X.UC_X86_REG_GS_BASE)
            return 0
        desc = self._descriptor(sel)
        return desc[0] if desc else 0

    def idtr(self) -> tuple[int, int]:
        _sel, base, limit, _fl = self.uc.reg_read(X.UC_X86_REG_IDTR)
        return base, limit

    def get_flags(self) -> int:
        return self.fuc.read(self._flags_id)

    def set_flags(self, value: int) -> None:
        self.fuc.write(self._flags_id, value | 2)

    def get_ip(self) -> int:
        return self.fuc.read(self._ip_id)

    def get_sp(self) -> int:
        return self.fuc.read(self._sp_id)

    def set_sp(self, value: int) -> None:
        self.fuc.write(self._sp_id, value)

    def get_seg_selector(self, seg: str) -> int:
        return self.fuc.read(_SEG_IDS[seg])

    def set_cs_ip(self, cs: int, ip: int) -> None:
        if self.fuc.read(X.UC_X86_REG_CS) != cs:
            self.uc.reg_write(X.UC_X86_REG_CS, cs)  # 16/32-bit engines load the descriptor too
        self.fuc.write(self._ip_id, ip)
        self.sel["cs"] = cs
        self.vmcs.GUEST_RIP = ip

    def ist_stack(self, ist: int) -> int:
        _sel, base, _limit, _fl = self.uc.reg_read(X.UC_X86_REG_TR)
        return struct.unpack("<Q", self.read_linear(base + 0x24 + 8 * (ist - 1), 8))[0]

    def push(self, value: int, width: int) -> None:
        """Push `width` bytes on SS:SP with the stack's address size."""
        sp = self.get_sp()
        if not self.protected_mode():
            sp = (sp - width) & 0xFFFF
            base = self.fuc.read(X.UC_X86_REG_SS) << 4
        elif self.uc_mode == 64 and self._read_efer() & EFER_LMA:
            sp, base = (sp - width) & 0xFFFF_FFFF_FFFF_FFFF, 0
        else:
            sp = (sp - width) & 0xFFFF_FFFF
            desc = self._descriptor(self.fuc.read(X.UC_X86_REG_SS))
            base = desc[0] if desc else 0
        self.write_linear(base + sp, (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little"))
        if not self.protected_mode():
            self.fuc.write(self._sp_id, (self.get_sp() & ~0xFFFF) | sp)
        else:
            self.set_sp(sp)

    # ==================================================================================================
    # VM entry .. VM exit
    # ==================================================================================================
    def _load_guest_state(self, gprs: list[int], dirty: int) -> None:
        """Load what KVM changed since the last exit: dirty GPRs, and RIP/RSP/RFLAGS from the VMCS."""
        v, f, full = self.vmcs, self.fuc, self._full_load
        self._full_load = False
        if full or dirty & 0xFFEF:
            for i in self._gpr_slots:
                if i < 16 and i != VCPU_REGS_RSP and (full or dirty >> i & 1):
                    f.write(self._gpr_ids[i], gprs[i])
                    self.gprs[i] = gprs[i]
        if full or v.GUEST_RSP != self.gprs[VCPU_REGS_RSP]:
            f.write(self._sp_id, v.GUEST_RSP)
            self.gprs[VCPU_REGS_RSP] = v.GUEST_RSP
        if full or v.GUEST_RIP != self.gprs[VCPU_REGS_RIP]:
            f.write(self._ip_id, v.GUEST_RIP)
            self.gprs[VCPU_REGS_RIP] = v.GUEST_RIP
        if full or v.GUEST_RFLAGS != self._rflags:
            f.write(self._flags_id, v.GUEST_RFLAGS)
            self._rflags = v.GUEST_RFLAGS

    def save_guest_state(self) -> list[int]:
        """What the VM exit stores: GPRs (returned, in VCPU_REGS_* order, RIP last) and the VMCS guest area."""
        vals = self.fuc.read_batch(self._exit_batch)
        g = self.gprs
        for slot, val in zip(self._gpr_slots, vals):
            g[slot] = val
        rest = vals[len(self._gpr_slots):]
        self._rflags, cs, ss, ds, es, self.cr0, self.cr3, self.cr4 = rest
        self.sel["cs"], self.sel["ss"], self.sel["ds"], self.sel["es"] = cs, ss, ds, es
        self._sync_paging()
        v = self.vmcs
        v.GUEST_RIP, v.GUEST_RSP, v.GUEST_RFLAGS = g[VCPU_REGS_RIP], g[VCPU_REGS_RSP], self._rflags
        v.GUEST_CR0, v.GUEST_CR3, v.GUEST_CR4 = self.cr0, self.cr3, self.cr4
        v.GUEST_CS_SELECTOR = cs
        v.GUEST_CS_BASE = cs << 4 if not self.cr0 & CR0_PE else 0 if self.uc_mode == 64 else self.segment_base("cs")
        return g

    def _begin(self) -> int:
        # uc_emu_start(begin) sets EIP = begin, except that a 16-bit engine subtracts CS*16 first.
        rip = self.gprs[VCPU_REGS_RIP]
        return (self.sel["cs"] << 4) + rip if self.uc_mode == 16 else rip

    def run(self, gprs: list[int], dirty: int) -> list[int]:
        """One VM entry and the guest until the next VM exit; returns the GPRs the exit saved.

        `gprs`/`dirty` are KVM's `vcpu->arch.regs` and `regs_dirty`. The exit is described in `self.vmcs`.
        """
        v, st = self.vmcs, self._hs
        self._load_guest_state(gprs, dirty)
        st.stop, st.intr, st.mmio, st.error = 0, -1, None, None
        self.mmio_access = None
        v.IDT_VECTORING_INFO_FIELD = v.VM_EXIT_INTR_INFO = 0
        blocking = v.GUEST_INTERRUPTIBILITY_INFO & (V.GUEST_INTR_STATE_STI | V.GUEST_INTR_STATE_MOV_SS)
        st.shadow_n, st.shadow = (st.n, blocking) if blocking else (-2, 0)
        info = v.VM_ENTRY_INTR_INFO_FIELD
        if info & V.INTR_INFO_VALID_MASK:  # event injection happens as part of VM entry
            v.VM_ENTRY_INTR_INFO_FIELD = info & ~V.INTR_INFO_VALID_MASK
            st.shadow_n = -2
            if not self._inject(info):
                return self._exit(V.EXIT_REASON_TRIPLE_FAULT)
            self._sync_ip()
        st.watch = bool(v.CPU_BASED_VM_EXEC_CONTROL & V.CPU_BASED_VIRTUAL_INTR_PENDING)
        if st.watch and not blocking and self.fuc.read(self._flags_id) & EFLAGS_IF:
            return self._exit(V.EXIT_REASON_PENDING_INTERRUPT)

        retries = 0
        while True:
            before = st.n
            count = max(1, min(self.slice_insns - st.n % self.slice_insns, self.budget_left + 1))
            err = self.fuc.start(self._begin(), UNTIL, count)
            self.budget_left -= max(0, st.n - before - (1 if st.stop else 0))
            if st.error is not None:
                e, st.error = st.error, None
                raise e
            if st.stop:
                return self._exit_on_stop()
            if err == UCC.UC_ERR_OK and st.intr == 8 and st.intr_eip == self.fuc.read(self._ip_id) \
                    and self._exc.ctx is not None and retries < 3:
                # Unicorn never delivers events, so a #DF from it is stale double-fault bookkeeping
                # (see ucapi.ExceptionState): clear it and let the faulting instruction raise again.
                retries += 1
                st.intr = -1
                self._exc.reset()
                self._sync_ip()  # resume at the faulting instruction, not at the entry RIP
                continue
            if err == UCC.UC_ERR_OK and st.intr >= 0:
                if not self._guest_exception():
                    return self._exit(V.EXIT_REASON_TRIPLE_FAULT)
                retries = 0
                continue
            if err in (UCC.UC_ERR_READ_UNMAPPED, UCC.UC_ERR_WRITE_UNMAPPED, UCC.UC_ERR_FETCH_UNMAPPED) \
                    and st.mmio is not None:
                return self._exit_mmio()
            if err == UCC.UC_ERR_INSN_INVALID:  # KVM intercepts #UD (exception bitmap)
                v.VM_EXIT_INTR_INFO = 6 | V.INTR_TYPE_HARD_EXCEPTION | V.INTR_INFO_VALID_MASK
                return self._exit(V.EXIT_REASON_EXCEPTION_NMI)
            if err == UCC.UC_ERR_OK and st.n - before < count and self._exc.ctx is not None and retries < 3:
                # QEMU's "triple fault" on that stale bookkeeping stops Unicorn without a word: clear it
                # and run the instruction again.
                retries += 1
                self._exc.reset()
                self._sync_ip()
                continue
            if err == UCC.UC_ERR_OK and st.n - before < count:
                self.save_guest_state()
                raise GuestFault(f"Unicorn stopped for no reason it reports, at {self.where()}",
                                 rip=self.gprs[VCPU_REGS_RIP], mode=self.code_bits())
            if err == UCC.UC_ERR_OK:
                if self.budget_left < 0:
                    self.save_guest_state()
                    raise BudgetExceeded(
                        f"the guest ran {self.max_insns} instructions inside one KVM_RUN without an exit "
                        f"to userspace (now at {self.where()}): does it loop forever?")
                self.host_intr_pending = True
                return self._exit(V.EXIT_REASON_EXTERNAL_INTERRUPT)  # the slice ended: a host timer tick
            self.save_guest_state()
            raise GuestFault(f"Unicorn stopped with {UcError(err)} at {self.where()}",
                             rip=self.gprs[VCPU_REGS_RIP], mode=self.code_bits())

    def _sync_ip(self) -> None:
        self.gprs[VCPU_REGS_RIP] = self.fuc.read(self._ip_id)
        self.sel["cs"] = self.fuc.read(X.UC_X86_REG_CS)

    def _exit(self, reason: int, qualification: int = 0, length: int = 0) -> list[int]:
        v, st = self.vmcs, self._hs
        v.VM_EXIT_REASON, v.EXIT_QUALIFICATION, v.VM_EXIT_INSTRUCTION_LEN = reason, qualification, length
        g = self.save_guest_state()
        v.GUEST_INTERRUPTIBILITY_INFO = st.shadow if st.shadow_n == st.n - 1 else 0
        st.watch = False
        return g

    def _exit_on_stop(self) -> list[int]:
        st = self._hs
        kind, addr, size = st.stop, st.addr, st.size
        st.stop = 0
        if kind == _STOP_WINDOW:
            return self._exit(V.EXIT_REASON_PENDING_INTERRUPT)
        if kind == KIND_HLT:
            return self._exit(V.EXIT_REASON_HLT, 0, size)
        g = self._exit(V.EXIT_REASON_IO_INSTRUCTION, 0, size)
        io = self._io_cache.get(addr)
        if io is None or io.length != size:
            io = self._io_cache[addr] = decode_io(self.read_code(addr, size), self.code_bits())
        port = io.port if io.imm else g[2] & 0xFFFF  # DX
        self.vmcs.EXIT_QUALIFICATION = V.io_exit_qualification(io.size, io.is_in, io.string, io.rep, io.imm, port)
        self.vmcs.VM_EXIT_INSTRUCTION_LEN = io.length
        return g

    def _exit_mmio(self) -> list[int]:
        access, gpa, size, value = self._hs.mmio
        self._hs.mmio = None
        is_write = access == UCC.UC_MEM_WRITE_UNMAPPED
        is_fetch = access == UCC.UC_MEM_FETCH_UNMAPPED
        self.mmio_access = MmioAccess(gpa, size, is_write, is_fetch, value & ((1 << (8 * size)) - 1))
        qual = V.EPT_VIOLATION_FETCH if is_fetch else V.EPT_VIOLATION_WRITE if is_write else V.EPT_VIOLATION_READ
        reason = V.EXIT_REASON_EPT_MISCONFIG if gpa >> 12 in self.mmio_gfns else V.EXIT_REASON_EPT_VIOLATION
        g = self._exit(reason, 0 if reason == V.EXIT_REASON_EPT_MISCONFIG else qual)
        self.vmcs.GUEST_PHYSICAL_ADDRESS = gpa
        return g

    # -- events -------------------------------------------------------------------------------------------
    def _inject(self, info: int) -> bool:
        self._sync_paging(live=True)
        vector, itype = info & V.INTR_INFO_VECTOR_MASK, info & V.INTR_INFO_INTR_TYPE_MASK
        kind = EXT_INTR if itype == V.INTR_TYPE_EXT_INTR else SOFT_INTR if itype == V.INTR_TYPE_SOFT_INTR \
            else HW_EXCEPTION
        err = self.vmcs.VM_ENTRY_EXCEPTION_ERROR_CODE if info & V.INTR_INFO_DELIVER_CODE_MASK else None
        if itype in (V.INTR_TYPE_SOFT_INTR, V.INTR_TYPE_SOFT_EXCEPTION):
            self.fuc.write(self._ip_id, self.fuc.read(self._ip_id) + self.vmcs.VM_ENTRY_INSTRUCTION_LEN)
        return self._deliver_escalating(vector, kind, err, f"injected {kind} {vector_name(vector)}")

    def _guest_exception(self) -> bool:
        """An exception or `int n` raised while the guest ran: deliver it like the processor would."""
        st = self._hs
        vector, eip_then = st.intr, st.intr_eip
        st.intr = -1
        self._sync_paging(live=True)
        eip_now = self.fuc.read(self._ip_id)
        if eip_now != eip_then:  # Unicorn moved EIP past an `int n`: a software interrupt
            kind, err = SOFT_INTR, None
        else:
            kind, err = HW_EXCEPTION, self._exc.reset()
        self._sync_ip()
        return self._deliver_escalating(vector, kind, err, f"{vector_name(vector)} raised by the guest")

    def _deliver_escalating(self, vector: int, kind: str, err: int | None, what: str) -> bool:
        """Deliver; if the table cannot take it, raise #GP, then #DF, then give up (triple fault)."""
        chain = [f"{what} at {self.where_live()}"]
        while True:
            try:
                self.last_event = deliver(self, vector, kind, err)
                self._sync_ip()
                return True
            except (DeliveryError, PageFault, GuestFault) as e:
                chain.append(f"{vector_name(vector)}: {e}")
                if vector == 8:
                    chain.append("a fault while delivering #DF is a triple fault: the processor shuts down")
                    self.fault_detail = "; ".join(chain)
                    return False
                if kind == HW_EXCEPTION and (vector in CONTRIBUTORY or vector == 14):
                    vector, kind, err = 8, HW_EXCEPTION, 0
                else:
                    vector, kind, err = 13, HW_EXCEPTION, 0
                chain.append(f"-> {vector_name(vector)}")

    # -- MMIO: one instruction over a scratch page --------------------------------------------------------
    def mmio_step(self, gprs: list[int], dirty: int,
                  read_data: dict[int, bytes]) -> list[tuple[str, int, int, int]]:
        """Execute the instruction at RIP with the MMIO page(s) it touches backed by scratch memory.

        `read_data` maps a guest-physical address to the bytes userspace answered for it. Returns the
        accesses the instruction made to the scratch page: ("read"|"write", gpa, size, value). This is
        how the model completes an MMIO instruction without an x86 emulator of its own: the real CPU
        does the arithmetic, KVM only moves the data. Registers and RIP are updated by the step: read
        them back with `save_guest_state()` (this returns the new GPRs in `self.gprs`).
        """
        self._load_guest_state(gprs, dirty)
        first = self.mmio_access
        pages = {first.gpa & ~0xFFF} | {g & ~0xFFF for g in read_data}
        bufs, st = [], self._hs
        hooks = []
        try:
            for page in sorted(pages):
                buf = (ctypes.c_ubyte * PAGE)(*([0xFF] * PAGE))
                for g, data in read_data.items():
                    if g & ~0xFFF == page:
                        ctypes.memmove(ctypes.addressof(buf) + (g & 0xFFF), bytes(data), len(data))
                self.uc.mem_map_ptr(page, PAGE, UC_PROT_ALL, ctypes.addressof(buf))
                bufs.append((page, buf))

                def log(handle, access, addr, size, value, _ud):
                    st.step_log.append(("write" if access == UCC.UC_MEM_WRITE else "read", addr, size,
                                        value & ((1 << (8 * size)) - 1)))
                hooks.append(self.fuc.hook_mem(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, log, page, page + PAGE - 1))
            st.step_log, st.stepping, st.mmio, st.intr = [], True, None, -1
            self._exc.reset()
            err = self.fuc.start(self._begin(), UNTIL, 1)
        finally:
            st.stepping = False
            st.stop = 0
            for h in hooks:
                self.fuc.hook_del(h)
            for page, _buf in bufs:
                self.uc.mem_unmap(page, PAGE)
        if st.error is not None:
            e, st.error = st.error, None
            raise e
        if err != UCC.UC_ERR_OK or st.intr >= 0:
            what = f"{UcError(err)}" if err else f"exception {vector_name(st.intr)}"
            st.intr = -1
            raise MmioStepError(f"{what} while completing the MMIO instruction")
        for kind, gpa, size, _ in st.step_log:
            if kind == "read" and not any(g <= gpa and gpa + size <= g + len(d) for g, d in read_data.items()):
                raise MmioStepError(f"the instruction also read {size} bytes of MMIO at {gpa:#x}, which one "
                                    "KVM_EXIT_MMIO cannot answer (not modelled)")
        log = st.step_log
        st.step_log = []
        self.save_guest_state()
        return log

    # ==================================================================================================
    # KVM_SET_SREGS / KVM_GET_SREGS
    # ==================================================================================================
    def set_sregs(self, s: kvm_sregs, reset: bool = False) -> None:
        """Take segment, control and descriptor-table state, as far as Unicorn allows (see `notes`).

        Unicorn's mode is picked from CS: L → 64-bit, D/B → 32-bit, else 16-bit. Segment registers are
        loaded by selector, so their hidden base/limit come from the GDT (protected mode) or selector×16
        (real mode), as a real `mov sreg` would; a 64-bit engine only takes the selector."""
        bits = 64 if s.cs.l else 32 if s.cs.db else 16
        if bits != self.uc_mode:
            self._create(bits)
        uc, notes = self.uc, []
        uc.reg_write(X.UC_X86_REG_GDTR, (0, s.gdt.base, s.gdt.limit, 0))
        uc.reg_write(X.UC_X86_REG_IDTR, (0, s.idt.base, s.idt.limit, 0))
        if bits != 16:
            uc.reg_write(X.UC_X86_REG_CR4, s.cr4)
            uc.reg_write(X.UC_X86_REG_CR3, s.cr3)
            uc.msr_write(MSR_EFER, s.efer)
        uc.reg_write(X.UC_X86_REG_CR0, s.cr0)
        if bits == 16 and s.cr0 & CR0_PE:
            notes.append("16-bit protected mode: segments are loaded the real-mode way")
        for name in _SEGS:
            seg = getattr(s, name)
            try:
                uc.reg_write(_SEG_IDS[name], seg.selector)
            except UcError as e:
                notes.append(f"{name}={seg.selector:#x} could not be loaded from the GDT ({e})")
            if bits == 16 and seg.base != seg.selector << 4 and not reset:
                notes.append(f"{name}.base {seg.base:#x} is not selector*16: Unicorn uses {seg.selector << 4:#x}")
        if bits == 64:
            uc.reg_write(X.UC_X86_REG_FS_BASE, s.fs.base)
            uc.reg_write(X.UC_X86_REG_GS_BASE, s.gs.base)
        for reg, seg in ((X.UC_X86_REG_TR, s.tr), (X.UC_X86_REG_LDTR, s.ldt)):
            uc.reg_write(reg, (seg.selector, seg.base, seg.limit, _ar_flags(seg)))
        self._sregs = _copy(s)
        self._efer = s.efer
        self.notes = notes
        self.flush_code_cache()
        self._full_load = True  # segment loads may have touched nothing else, but be sure
        cs, ss, ds, es, self.cr0, self.cr3, self.cr4 = self.fuc.read_batch(self._exit_batch[-7:])
        self.sel.update(cs=cs, ss=ss, ds=ds, es=es)
        self._paging_key = ()
        self._sync_paging()

    def get_sregs(self) -> kvm_sregs:
        s = _copy(self._sregs)
        sels = self.fuc.read_batch([_SEG_IDS[n] for n in _SEGS])
        cr0, cr2, cr3, cr4 = self.fuc.read_batch([X.UC_X86_REG_CR0, X.UC_X86_REG_CR2, X.UC_X86_REG_CR3,
                                                  X.UC_X86_REG_CR4])
        self.cr0 = cr0
        for name, sel in zip(_SEGS, sels):
            seg = getattr(s, name)
            if sel != seg.selector:  # the guest loaded it since: show what the load put in the cache
                seg.selector = sel
                if not cr0 & CR0_PE:
                    seg.base, seg.limit = sel << 4, 0xFFFF
                else:
                    desc = self._descriptor(sel)
                    if desc:
                        base, limit, fl = desc
                        seg.base, seg.limit = base, limit
                        seg.type, seg.s, seg.dpl, seg.present = (fl >> 8) & 0xF, (fl >> 12) & 1, (fl >> 13) & 3, (fl >> 15) & 1
                        seg.avl, seg.l, seg.db, seg.g = (fl >> 20) & 1, (fl >> 21) & 1, (fl >> 22) & 1, (fl >> 23) & 1
        for table, reg in ((s.gdt, X.UC_X86_REG_GDTR), (s.idt, X.UC_X86_REG_IDTR)):
            _sel, base, limit, _fl = self.uc.reg_read(reg)
            table.base, table.limit = base, limit
        s.cr0, s.cr2, s.cr3, s.cr4 = cr0, cr2, cr3, cr4
        s.efer = self._read_efer() if self.uc_mode != 16 else s.efer
        return s

    # ==================================================================================================
    # For messages and views
    # ==================================================================================================
    def where(self) -> str:
        """RIP, mode, bytes and disassembly of the instruction at the last exit."""
        rip = self.gprs[VCPU_REGS_RIP]
        return self._where(rip, self._linear_ip(rip))

    def where_live(self) -> str:
        self._sync_ip()
        rip = self.gprs[VCPU_REGS_RIP]
        return self._where(rip, self._linear_ip(rip))

    def _linear_ip(self, rip: int) -> int:
        cr0 = self.fuc.read(X.UC_X86_REG_CR0)
        if not cr0 & CR0_PE:
            return (self.sel["cs"] << 4) + (rip & 0xFFFF)
        return rip + (0 if self.uc_mode == 64 else self.segment_base("cs"))

    def _where(self, rip: int, linear: int) -> str:
        bits = self.code_bits()
        try:
            code = self.read_code(linear, 15)
        except Exception:  # noqa: BLE001 - it is only a message
            code = b""
            for i in range(15):
                try:
                    code += self.read_code(linear + i, 1)
                except Exception:  # noqa: BLE001
                    break
        text = disasm(code, bits, rip) if code else "(no bytes: not RAM)"
        shown = code[:insn_length(code, bits) or 8]
        return f"rip={rip:#x} ({bits}-bit mode), bytes {shown.hex(' ') or '-'}: {text}"

    def view(self) -> dict:
        """Plain data for a widget: registers saved at the last exit, the VMCS, instruction counts."""
        names = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12",
                 "r13", "r14", "r15", "rip")
        return {"regs": dict(zip(names, self.gprs)), "rflags": self._rflags, "sel": dict(self.sel),
                "cr0": self.cr0, "cr3": self.cr3, "cr4": self.cr4, "mode": self.uc_mode,
                "instructions": self._hs.n, "vmcs": self.vmcs.view(), "last_event": self.last_event,
                "notes": list(self.notes)}

    def close(self) -> None:
        """Release the Unicorn engine (the guest RAM it mapped belongs to the VMM and stays)."""
        self.uc = self.fuc = None
        self._exc = None

    @property
    def instructions(self) -> int:
        """Instructions the code hook has seen since the CPU was created."""
        return self._hs.n

    _rflags = 2


def _ar_flags(seg: kvm_segment) -> int:
    """A kvm_segment's attributes in QEMU's SegmentCache.flags layout (descriptor bits 8-23 << 8)."""
    return (seg.type << 8 | seg.s << 12 | seg.dpl << 13 | seg.present << 15 | seg.avl << 20 | seg.l << 21
            | seg.db << 22 | seg.g << 23)


def _copy(s: kvm_sregs) -> kvm_sregs:
    out = kvm_sregs()
    ctypes.memmove(ctypes.addressof(out), ctypes.addressof(s), ctypes.sizeof(s))
    return out


def _reset_sregs() -> kvm_sregs:
    """The state KVM's vCPU reset leaves (real mode at F000:FFF0, CS base 0xffff0000)."""
    s = kvm_sregs()
    for name in _SEGS:
        seg = getattr(s, name)
        seg.selector, seg.base, seg.limit, seg.present, seg.s = 0, 0, 0xFFFF, 1, 1
        seg.type = 0xB if name == "cs" else 0x3
    s.cs.selector, s.cs.base = 0xF000, 0xFFFF0000
    s.tr.limit, s.tr.type, s.tr.present = 0xFFFF, 0xB, 1
    s.ldt.limit, s.ldt.type, s.ldt.present = 0xFFFF, 0x2, 1
    s.gdt, s.idt = kvm_dtable(0, 0xFFFF), kvm_dtable(0, 0xFFFF)
    s.cr0 = 0x60000010
    s.apic_base = 0xFEE00900
    return s
