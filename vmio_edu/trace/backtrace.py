"""gdb-style backtraces from the shadow stack.

gdb shows each caller's frame at the line of its call into the next frame, and the innermost frame at the
line a breakpoint on it stops at: the first statement after the prologue (`bdrv_aio_writev` at
block.c:3388, not its declaration at 3384). The call lines come from the source map (`calls_at`), the stop
lines from `sources_stops.json`. Every parameter of the real signature is shown, pointers as stable
addresses (see `addresses.py`), so a frame reads
`#2 ide_data_writew (opaque=0x555556a3c2c0, addr=0x1f0, val=0x8c17) at hw/ide/core.c:1907`, as in a real gdb
session on QEMU 1.6.1 (integers formatted by `argfmt`: hex where the sources write hex, constants by name). A coroutine's stack ends in `coroutine_trampoline` (coroutine-ucontext.c), as in gdb,
and the main thread in `main` (QEMU 10.2 system/main.c, 1.6.1 vl.c).
"""
from __future__ import annotations

import inspect
from importlib import import_module
from dataclasses import asdict, dataclass
from typing import Any

from .addresses import ARGV_ADDRESS, KVM_RUN_MAP, AddressMap
from .argfmt import format_frame
from .sources import call_site, lookup
from .tracepoint import Frame

OPTIMIZED_OUT = "<optimized out>"  # gdb's word for a parameter it cannot show (one the model lacks)


@dataclass
class BtFrame:
    """One line of a backtrace, innermost first."""

    level: int
    function: str
    args: dict
    file: str
    line: int | None
    layer: str
    thread: str
    stack: str = "1.6.1"  # which versions' sources file:line refers to (vmio_edu.stacks)

    def __str__(self) -> str:
        return format_frame(self)  # as the CLI and the panel print it: port=0x1f0, type=KVM_RUN

    def to_json(self) -> dict:
        return asdict(self)


def show_value(v: Any) -> Any:
    """How an argument value is shown without a machine's address map (recorded values: numbers as
    numbers, functions by name; objects are not recorded)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return v
    if v is None:
        return "0x0"
    if callable(v) and hasattr(v, "__name__"):
        return v.__name__
    if isinstance(v, (bytes, bytearray, memoryview)):
        return f"<{len(v)} bytes>"
    if isinstance(v, str):
        return v
    return f"<{type(v).__name__}>"


def frame_args(f: Frame, addrs: AddressMap, where: dict | None = None, caller: bool = False) -> dict:
    """Every parameter of the real signature, in its order, as gdb prints it (`where`: id → the outermost
    place on the stack holding that value, which names a buffer passed down the frames; `caller`: the
    frame is past its first statement, so a parameter it reassigned shows its current value)."""
    have = dict(zip(f.tp.argnames, f.args))
    if f.tp.name == "kvm_handle_io" and isinstance(have.get("data"), int):
        # kvm-all.c:1665 passes `(uint8_t *)run + run->io.data_offset`; the model passes the offset
        have["data"] = _Pointer(KVM_RUN_MAP + have["data"])
    if caller and f.tp.name == "access_with_adjusted_size":
        # it turns a 0 into 1 and 4 before calling the accessor (10.2 system/memory.c:537-542, 1.6.1
        # memory.c:460-465); gdb shows the caller frame's parameters as they are now
        for name, default in (("access_size_min", 1), ("access_size_max", 4)):
            if have.get(name) == 0:
                have[name] = default
    params = f.tp.source.params if f.tp.source and f.tp.source.params else f.tp.argnames
    where = where or {}
    return {p: addrs.show(have[p], where.get(id(have[p]), "")) if p in have else OPTIMIZED_OUT for p in params}


class _Pointer(int):
    """An address computed here (not a model object): shown in hex, as gdb shows a pointer."""


def _coroutine_of(stack: list[Frame], state: Any) -> Any:
    table = getattr(state, "extra", {}).get("coroutines") if state is not None else None
    if table is None:
        return None
    for co in list(table.live) + list(table.terminated):
        if co.stack is stack:
            return co
    return None


def _trampoline(stack: list[Frame], state: Any, addrs: AddressMap, level: int, thread: str) -> BtFrame | None:
    """gdb's bottom frame of a coroutine stack: coroutine_trampoline(i0, i1), the two int halves of the
    CoroutineUContext pointer, at the line that calls the entry function (coroutine-ucontext.c:118)."""
    if not stack or stack[0].tp.fn is None or not inspect.isgeneratorfunction(inspect.unwrap(stack[0].tp.fn)):
        return None
    stk = stack[0].tp.stack
    src = lookup("qemu", "coroutine_trampoline", stk)
    if src is None:
        return None
    co = _coroutine_of(stack, state)
    ptr = (addrs.address(co) or 0) if co is not None else 0

    def as_int(x: int) -> int:
        return x - (1 << 32) if x >= 1 << 31 else x
    return BtFrame(level, "coroutine_trampoline", {"i0": as_int(ptr & 0xFFFFFFFF), "i1": as_int(ptr >> 32)},
                   src.file, call_site("qemu", "coroutine_trampoline", stack[0].tp.name, stk) or src.line,
                   "qemu-block", thread, stk)


def _main(stack: list[Frame], level: int, thread: str) -> BtFrame | None:
    """gdb's bottom frame of the main thread: `main (argc, argv)`, at the line that calls the stack's main
    loop function (QEMU 10.2: system/main.c main → qemu_default_main; 1.6.1: vl.c main → main_loop, with
    envp too). QEMU's start-up before that call is
    vmio_edu.machine, so `main` is no trace point; its frame is read from the source map, as
    coroutine_trampoline's is. argc and argv stand for the command line the machine models (the main
    loop's module `COMMAND_LINE`), argv where the kernel puts it on the main thread's stack."""
    if not stack:
        return None
    first = stack[0].tp
    src = lookup("qemu", "main", first.stack)
    if src is None:
        return None
    from ..stacks import get_stack
    module, _, function = get_stack(first.stack).main_loop.partition(":")
    if first.name != function:
        return None
    line = call_site("qemu", "main", function, first.stack)
    argv = getattr(import_module(module), "COMMAND_LINE", ())
    # argv's pointers, a NULL, then envp's (1.6.1's main also takes envp)
    shown = {"argc": len(argv), "argv": f"{ARGV_ADDRESS:#x}", "envp": f"{ARGV_ADDRESS + 8 * (len(argv) + 1):#x}"}
    args = {p: shown[p] if argv and p in shown else OPTIMIZED_OUT for p in src.params or ("argc", "argv")}
    return BtFrame(level, "main", args, src.file, line or src.line, first.layer, thread, first.stack)


def backtrace(stack: list[Frame], thread: str, state: Any = None, addrs: AddressMap | None = None
              ) -> list[BtFrame]:
    """The frames of `stack` (outermost first, as kept), returned innermost first. `state` is the
    machine's QemuState (`ctx.machine`): pointers are shown at their addresses in it (`addrs`, to share
    one map between several backtraces of the same moment)."""
    if addrs is None:
        addrs = AddressMap(state, [(thread, stack)])
    # name every reachable object before printing any frame: otherwise a buffer shown in an inner frame
    # (by its place on the stack) and again in an outer one, after a model object there started the walk,
    # got two addresses (pwrite's buf against handle_aiocb_rw_linear's)
    addrs.address(None)
    out: list[BtFrame] = []
    n = len(stack)
    where: dict[int, str] = {}  # a value's outermost place on this stack: the same buffer, the same address
    for i, f in enumerate(stack):
        for name, v in zip(f.tp.argnames, f.args):
            if not isinstance(v, (int, str, float, type(None))):
                where.setdefault(id(v), f"{thread}#{i}.{name}")
    for level, i in enumerate(range(n - 1, -1, -1)):
        f = stack[i]
        src = f.tp.source
        line = src.stop_line if src else None
        if i < n - 1:  # a caller: show the line that calls the frame above it
            line = (call_site(f.tp.side, f.tp.name, stack[i + 1].tp.name, f.tp.stack)
                    or (src.line if src else None))
        out.append(BtFrame(level, f.tp.name, frame_args(f, addrs, where, caller=i < n - 1), src.file if src else "",
                           line, f.tp.layer, thread, f.tp.stack))
    bottom = _trampoline(stack, state, addrs, len(out), thread) or _main(stack, len(out), thread)
    if bottom is not None:
        out.append(bottom)
    return out


def format_backtrace(frames: list[BtFrame]) -> str:
    return "\n".join(str(f) for f in frames)
