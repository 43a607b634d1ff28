"""Guest stops: breakpoints on guest instructions and stepping by guest instruction (issue 11, item 6).

    dbg.break_at(guest_label="ata_pio_outsw")    # the driver's `rep outsw` (labels: the guest's assembly)
    dbg.break_at(guest_addr=0x11bf)
    stop = dbg.cont()       # stop.kind == "guest", stop.function == "ata_pio_outsw", stop.layer == "guest"
    dbg.stepi()             # the next guest instruction (across VM exits, as gdb's stepi in a VM)

How the guest is stopped, per engine:
  emulated  a Unicorn code hook on each breakpoint address only (no cost at other instructions); stepi
            adds a hook on every instruction until the next one runs, then removes it.
  real KVM  KVM_SET_GUEST_DEBUG with hardware breakpoints (DR0-DR3, so at most four) or
            KVM_GUESTDBG_SINGLESTEP; KVM_RUN returns KVM_EXIT_DEBUG to the engine, which parks there
            and re-enters KVM_RUN, first single-stepping that instruction with its breakpoint off.
            QEMU's own loop never sees these exits: like gdbstub's, they are the debugger's, not the
            machine's, so the recorded trace, `machine.exits` and time travel stay exactly as without them.

On the emulated engine a breakpoint on a `rep` instruction that exits per element stops at each VM
entry into it (the CPU starts the instruction again after each exit); on real KVM it stops once per
execution of the instruction, and stepi steps over the whole `rep` (with its exits), as gdb does.

A guest stop happens between two trace events: the guest runs inside a VM entry. Its `index` is the
last recorded event (the entry into the guest), and `stop.guest["position"]` is `(rip, hit, steps)`:
the hit-th arrival at `rip` since that event, then `steps` single steps. `dbg.goto(index,
guest=position)` (what `stop.reference` says) comes back to it: go to the event, run the guest to that
arrival, step. Arrivals are counted where a hook is armed, so a position is exact for a stop made by a
breakpoint set before the VM entry began, or by stepping.

At a guest stop on the emulated engine the registers view shows KVM's copy of the registers (as of the
last VM exit) and `stop.guest["regs"]` the live CPU registers; on real KVM both are the live ones.
"""
from __future__ import annotations

import ctypes
import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import VmioError
from ..linux.include.uapi.linux import kvm as K
from .backtrace import BtFrame, backtrace
from .tracepoint import current_context
from .views import Views

if TYPE_CHECKING:
    from .debugger import Debugger, Stop

KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_HW_BP = 0x1, 0x2, 0x20000
MAX_HW_BREAKPOINTS = 4


class kvm_guest_debug(ctypes.Structure):  # noqa: N801 - the uapi name (x86: struct kvm_guest_debug_arch)
    _fields_ = [("control", ctypes.c_uint32), ("pad", ctypes.c_uint32), ("debugreg", ctypes.c_uint64 * 8)]


# _IOW(KVMIO, 0x9b, struct kvm_guest_debug)
KVM_SET_GUEST_DEBUG = (1 << 30) | (ctypes.sizeof(kvm_guest_debug) << 16) | (0xAE << 8) | 0x9B


@dataclass(eq=False)
class GuestBreakpoint:
    """A breakpoint on the guest instruction at `addr` (a linear address)."""

    number: int
    addr: int
    label: str | None = None
    enabled: bool = True
    hits: int = 0
    function: None = None  # (what Breakpoint has: it never matches a trace point)
    layer: str = "guest"
    condition: None = None

    def matches(self, tp: Any) -> bool:
        return False

    def to_json(self) -> dict:
        return {"number": self.number, "function": None, "layer": "guest", "guest_addr": self.addr,
                "guest_label": self.label, "condition": None, "enabled": self.enabled, "hits": self.hits}

    def __str__(self) -> str:
        return f"{self.number}: guest {self.label or ''} at {self.addr:#x}".replace("  ", " ")


class GuestStops:
    """The guest side of one debugger (see the module doc)."""

    def __init__(self, dbg: "Debugger") -> None:
        self.dbg = dbg
        self._machine: Any = None
        self._uc_hooks: dict[int, int] = {}  # addr -> Unicorn hook handle (emulated engine)
        self._step_hook: int | None = None
        self._stepping = False
        self._step_base: tuple | None = None  # the guest position stepping started from
        self._target: tuple | None = None     # (index, rip, hit) to stop at (time travel)
        self._temp: set[int] = set()           # addresses hooked only for the target
        self._hits: dict[int, int] = {}
        self._at = -1
        self._arm_n = -1
        self._stepping_over: int | None = None  # real KVM: the breakpoint being stepped over
        self._hw_set: set[int] = set()  # real KVM: the addresses in the debug registers now
        self._hw_on = False  # real KVM: guest debugging is enabled in the kernel

    # -- public -----------------------------------------------------------------------------------------
    def break_at(self, guest_label: str | None, guest_addr: int | None) -> GuestBreakpoint:
        if (guest_label is None) == (guest_addr is None):
            raise VmioError("give one of guest_label=… or guest_addr=…")
        m = self.dbg.machine
        if guest_label is not None:
            if not isinstance(guest_label, str):
                raise VmioError(f"guest_label must be a str, not {type(guest_label).__name__}")
            from ..guest.symbols import symbols
            addr = symbols(m.program).address(guest_label)
            label = guest_label
        else:
            if not isinstance(guest_addr, int) or isinstance(guest_addr, bool) or guest_addr < 0:
                raise VmioError(f"guest_addr must be a non-negative int, not {guest_addr!r}")
            addr, label = guest_addr, self._symbolize(guest_addr)
        live = [b for b in self._guest_bps() if b.enabled]
        if m.engine == "kvm" and len({b.addr for b in live} | {addr}) > MAX_HW_BREAKPOINTS:
            raise VmioError(f"real KVM: at most {MAX_HW_BREAKPOINTS} guest breakpoints (the debug registers "
                            "DR0-DR3 of KVM_SET_GUEST_DEBUG); delete one first, or use the emulated engine")
        d = self.dbg
        d._bp_numbers += 1
        bp = GuestBreakpoint(d._bp_numbers, addr, label)
        d._breakpoints.append(bp)
        d._index_breakpoints()
        try:
            self._sync()
        except VmioError:
            d._breakpoints.remove(bp)  # (not armed: not kept)
            d._index_breakpoints()
            raise
        return bp

    def stepi(self, reason: str = "stepi", silent: bool = False) -> "Stop":
        """Run to the next guest instruction (a trace-point breakpoint on the way stops first)."""
        d = self.dbg
        s = d.stop
        self._step_base = (s.index, s.guest["position"]) if s.guest else None
        self._stepping = True
        m = d.machine
        if s.guest is None and m.engine == "kvm" and not m._closed and len(self._armed()) < MAX_HW_BREAKPOINTS:
            # The CPU's single-step trap comes after an instruction: to stop before the guest's next one
            # (as the emulated engine does), also put a breakpoint where the guest will resume.
            regs = K.kvm_regs()
            m.cpu.kvm_fd.ioctl(K.KVM_GET_REGS, regs)
            self._temp = {regs.rip}
        try:
            self._sync()
            if silent:
                return d._go("silent", reason, target=1 << 62)
            return d._go("cont", reason)
        finally:
            self._stepping = False
            self._step_base = None
            self._temp = set()
            try:
                self._sync()
            except VmioError:
                pass  # (disarming on a host that refused to arm: nothing is armed)

    def goto(self, index: int, position: Any) -> "Stop":
        try:
            rip, hit, steps = (int(x) for x in position)
        except (TypeError, ValueError):
            raise VmioError(f"guest= takes a guest position (rip, hit, steps) as stop.guest['position'] "
                            f"gives it, not {position!r}") from None
        d = self.dbg
        if d.stop.kind == "guest" and d.stop.index == index:
            d.goto(index - 1)  # (the guest ran on since event `index`: go back before it first)
        stop = d.goto(index)
        if stop.reason in ("halted", "error"):
            raise VmioError(f"index {index} is the end of the run: the guest does not run after it")
        self._target, self._temp = (index, rip, hit), {rip}
        self._sync()
        try:
            stop = d._go("silent", "goto", target=index + 1)
        finally:
            self._target, self._temp = None, set()
            self._sync()
        if stop.kind != "guest":
            raise VmioError(f"the guest did not reach {rip:#x} (arrival {hit}) right after index {index}; "
                            "is this the position of a stop of the same machine?")
        for _ in range(steps):
            stop = self.stepi("goto", silent=True)
        return stop

    # -- attaching ----------------------------------------------------------------------------------------
    def attach(self, machine: Any) -> None:
        """A (new) machine: hook it up (its engine) and arm what is set."""
        self._machine = machine
        self._uc_hooks, self._step_hook = {}, None
        self._hits, self._at = {}, -1
        self._stepping_over, self._hw_set, self._hw_on = None, set(), False
        if machine.engine == "kvm":
            vcpu = machine.cpu.kvm_fd
            vcpu.debug_exit = self._on_kvm_debug_exit
        self._sync()

    def _guest_bps(self) -> list[GuestBreakpoint]:
        return [b for b in self.dbg._breakpoints if isinstance(b, GuestBreakpoint)]

    def _sync(self) -> None:
        """Arm exactly the hooks needed now: the enabled breakpoints, the target, stepping."""
        m = self._machine
        if m is None or m._closed:
            return
        addrs = self._armed()
        if m.engine == "kvm":
            self._set_guest_debug(m, sorted(addrs), self._stepping)
        else:
            self._sync_unicorn(m, addrs)

    # -- emulated engine --------------------------------------------------------------------------------------
    def _cpu(self, m: Any) -> Any:
        return m.cpu.kvm_fd.vcpu.cpu

    def _sync_unicorn(self, m: Any, addrs: set[int]) -> None:
        cpu = self._cpu(m)
        fuc = cpu.fuc
        for a in list(self._uc_hooks):
            if a not in addrs:
                fuc.hook_del(self._uc_hooks.pop(a))
        for a in addrs:
            if a not in self._uc_hooks:
                self._uc_hooks[a] = fuc.hook_code(self._uc_hook, a, a)
        # An instruction that exits (I/O, HLT) ends Unicorn's hook list at the CPU's own hook, which calls
        # this first (X86Cpu.guest_debug); every other instruction reaches the hooks below.
        cpu.guest_debug = self._uc_before_exit if (addrs or self._stepping) else None
        if self._stepping and self._step_hook is None:
            self._arm_n = cpu._hs.n  # (a step armed inside an instruction's hook must skip that one)
            self._step_hook = fuc.hook_code(self._uc_step_hook)
        elif not self._stepping and self._step_hook is not None:
            fuc.hook_del(self._step_hook)
            self._step_hook = None

    def _uc_before_exit(self, handle: Any, addr: int) -> None:
        if self._stepping:
            if self._cpu(self._machine)._hs.n != self._arm_n:
                self._uc_guard(handle, addr)
        elif addr in self._uc_hooks:
            self._uc_guard(handle, addr)

    def _uc_hook(self, handle: Any, addr: int, size: int, _ud: Any) -> None:
        if self._step_hook is not None:
            return  # the step hook sees this instruction too
        self._uc_guard(handle, addr)

    def _uc_step_hook(self, handle: Any, addr: int, size: int, _ud: Any) -> None:
        if self._cpu(self._machine)._hs.n == self._arm_n:
            return  # the instruction the step started at
        self._uc_guard(handle, addr)

    def _uc_guard(self, handle: Any, addr: int) -> None:
        cpu = self._cpu(self._machine)
        try:
            self._arrive(addr, lambda: self._uc_regs(cpu, addr))
        except BaseException as e:  # noqa: BLE001 - never raise into C; X86Cpu.run re-raises it
            from ..cpu.ucapi import uclib
            cpu._hs.error = e
            uclib.uc_emu_stop(handle)

    @staticmethod
    def _uc_regs(cpu: Any, rip: int) -> dict:
        """The live registers in KVM_GET_REGS's order (Unicorn holds them while the guest runs)."""
        from unicorn import x86_const as X
        out = {}
        for n, _ in K.kvm_regs._fields_:
            if n in ("rip", "rflags"):
                continue
            uc_name = n if cpu.uc_mode == 64 else ("e" + n[1:] if not n[1:].isdigit() else None)
            if uc_name is None or n[1:].isdigit() and cpu.uc_mode != 64:
                out[n] = 0
                continue
            out[n] = cpu.uc.reg_read(getattr(X, f"UC_X86_REG_{uc_name.upper()}"))
        out["rip"] = rip
        out["rflags"] = cpu.uc.reg_read(cpu._flags_id)
        return out

    # -- real engine ------------------------------------------------------------------------------------------
    def _set_guest_debug(self, m: Any, addrs: list[int], step: bool) -> None:
        if not addrs and not step and not self._hw_on:
            return  # never armed: leave guest debugging alone (a host without it still debugs trace points)
        g = kvm_guest_debug()
        if addrs or step:
            g.control = KVM_GUESTDBG_ENABLE
            if step:
                g.control |= KVM_GUESTDBG_SINGLESTEP
            if addrs:
                g.control |= KVM_GUESTDBG_USE_HW_BP
                dr7 = 0x400  # (bit 10 reads as 1)
                for n, a in enumerate(addrs[:MAX_HW_BREAKPOINTS]):
                    g.debugreg[n] = a
                    dr7 |= 1 << (2 * n)  # Ln; R/Wn = LENn = 00: instruction execution
                g.debugreg[7] = dr7
        try:
            m.cpu.kvm_fd.ioctl(KVM_SET_GUEST_DEBUG, g)
            self._hw_set = set(addrs[:MAX_HW_BREAKPOINTS])
            self._hw_on = bool(g.control)
        except OSError as e:
            raise VmioError(f"real KVM refused KVM_SET_GUEST_DEBUG ({e.strerror}): this host's /dev/kvm "
                            "cannot stop the guest at an instruction; use the emulated engine "
                            "(engine=\"unicorn\") for guest breakpoints and stepi") from e

    def _on_kvm_debug_exit(self) -> None:
        """KVM_RUN returned KVM_EXIT_DEBUG (in the engine, on the vCPU thread): stop if it is ours. To go
        on past a breakpoint the engine single-steps that one instruction with its breakpoint off (this
        host's KVM fires an instruction breakpoint again on re-entry even with RFLAGS.RF set), then arms
        it again."""
        m = self._machine
        vcpu = m.cpu.kvm_fd
        regs = K.kvm_regs()
        vcpu.ioctl(K.KVM_GET_REGS, regs)
        rip = regs.rip
        if self._stepping_over is not None:
            self._stepping_over = None
            self._sync()  # every breakpoint armed again
            if not self._stepping and rip not in self._armed():
                return  # the step over a breakpoint, not an arrival anyone asked for
        self._arrive(rip, lambda: {n: int(getattr(regs, n)) for n, _ in K.kvm_regs._fields_})
        if rip in self._hw_set:  # (also a breakpoint deleted since it was programmed)
            self._stepping_over = rip
            self._set_guest_debug(m, sorted(self._armed() - {rip}), True)

    def _armed(self) -> set[int]:
        return {b.addr for b in self._guest_bps() if b.enabled} | self._temp

    # -- both ---------------------------------------------------------------------------------------------
    def _arrive(self, rip: int, regs: Any) -> None:
        """The guest is about to run the instruction at `rip` (on the vCPU thread): stop here?"""
        d = self.dbg
        pos = d._position()
        if pos != self._at:
            self._hits.clear()
            self._at = pos
        hit = self._hits[rip] = self._hits.get(rip, 0) + 1
        bp = None
        if self._target is not None:
            if (pos - 1, rip, hit) != self._target:
                return
            reason, position = "goto", (rip, hit, 0)
        elif self._stepping:
            b = self._step_base
            reason = d._reason
            if b is not None and b[0] == pos - 1:  # still in the VM entry the step started in
                position = (b[1][0], b[1][1], b[1][2] + 1)
            else:  # a later VM entry: every arrival since its start was counted (the step hook was armed)
                position = (rip, hit, 0)
        else:
            if d._mode not in ("cont", "step", "next", "finish"):
                return
            bp = next((b for b in self._guest_bps() if b.enabled and b.addr == rip), None)
            if bp is None:
                return
            bp.hits += 1
            reason, position = "breakpoint", (rip, hit, 0)
        self._stepping = False  # one instruction
        stop = self._make_stop(reason, pos - 1, rip, position, regs(), bp)
        d.machine.sched.park(stop)

    def _symbolize(self, addr: int) -> str | None:
        try:
            from ..guest.symbols import symbols
            return symbols(self.dbg.machine.program).symbolize(addr)
        except VmioError:
            return None

    def _make_stop(self, reason: str, index: int, rip: int, position: tuple, regs: dict,
                   bp: GuestBreakpoint | None) -> "Stop":
        from ..cpu.decode import disasm
        from .debugger import Stop

        d, m = self.dbg, self.dbg.machine
        ctx = current_context()
        label = self._symbolize(rip) or f"{rip:#x}"
        try:
            code = m.read_guest(rip, 15)  # (the default guests are identity-mapped)
            text = disasm(code, m.mode, rip)
        except Exception:  # noqa: BLE001
            text = "?"
        prog = m.program
        file, line = "", None
        if prog is not None and hasattr(prog, "source"):
            from ..guest.symbols import symbols
            from ..guest.programs import DefaultGuest
            file = "vmio_edu/guest/asm/default_guest.s" if isinstance(prog, DefaultGuest) else \
                f"<guest {prog.name}>"
            line = symbols(prog).line_of(rip)
        host = backtrace(ctx.stack, ctx.name) if ctx is not None else []
        frames = [BtFrame(level=0, function=label, args={"rip": f"{rip:#x}", "insn": text}, file=file,
                          line=line, layer="guest", thread=ctx.name if ctx else "vcpu0")]
        frames += [dataclasses.replace(f, level=f.level + 1) for f in host]
        guest = {"rip": rip, "label": label, "insn": text, "position": position, "regs": regs,
                 "line": line, "file": file}
        where = f"{label} ({rip:#x}): {text}"
        msg = {"breakpoint": f"guest breakpoint {bp.number if bp else ''} at {where}",
               "stepi": f"guest instruction {where}", "goto": f"guest instruction {where}"}.get(
                   reason, f"guest instruction {where}")
        views = d._views_here()
        if m.engine != "kvm":
            views = _LiveRegisterViews(views, regs)
        return Stop(reason, index, "guest", label, "guest", ctx.name if ctx else "vcpu0",
                    len(ctx.stack) + 1 if ctx else 1, {"rip": f"{rip:#x}", "insn": text}, None, frames, bp,
                    msg, _views=views, _stack=ctx.stack if ctx else None, _ref=d._ref_prefix,
                    guest=guest)


class _LiveRegisterViews(Views):
    """The views at a guest stop on the emulated engine: the registers view shows the CPU's live
    registers (Unicorn holds them until the VM exit; KVM's copy is as of the last exit) and the code
    around the live RIP."""

    def __init__(self, base: Views, regs: dict) -> None:
        super().__init__(base._machine, base._pristine, base._valid)
        self._live = regs

    def _compute(self, name: str) -> Any:
        out = super()._compute(name)
        if name == "registers":
            from .views import RFLAGS_BITS, _Quiet, disassembly_around
            live = self._live
            out["regs"] = {k: live.get(k, v) for k, v in out["regs"].items()}
            fl = live["rflags"]
            out["rflags"] = {"value": fl, "set": [n for n, b in RFLAGS_BITS if fl >> b & 1]}
            with _Quiet():
                out["disassembly"] = disassembly_around(self._machine(), live["rip"], out["mode"])
            out["live"] = "the CPU's registers at this guest instruction (KVM's copy is older)"
        return out
