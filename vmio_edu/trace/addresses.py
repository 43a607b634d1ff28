"""Stable, gdb-like addresses for model objects, so a backtrace can print pointers as gdb does.

gdb prints `bs=0x555556b0e400`: a learner compares pointers across frames (frame #0's `opaque` is frame
#1's `s`; the format BDS and the file BDS differ). Python's `id()` changes from run to run, so an object's
address here is a function of where it sits in the machine, never of when it was first looked at:

* the QEMU globals (`address_space_io`, `address_space_memory`, `qemu_aio_context`, `kvm_state`) sit at
  fixed addresses and carry their C name as gdb's `<symbol>`;
* every object reachable from them (the IDE bus, its drives, their BlockDriverStates, an in-flight
  request's QEMUIOVector …), then from the live coroutines, then from the threads' stacks, gets a heap
  address derived from the shortest such path (`address_space_io.root.subregions[0].opaque.portio_opaque
  .ifs[0]`), one global after the other, the device tree first: a function of the machine's state, so the same state gives the
  same addresses in every run, after time travel too, and a long-lived object keeps its address all run;
* a coroutine and its request's AIOCB are named by the coroutine's id (a per-machine allocation count),
  so they keep one address all their life, wherever they are held;
* a buffer in a frame's arguments (address_space_rw's `buf`) is named by its place on the stack;
* functions get a text address derived from their name, with `<symbol>`.

Nothing here is stored in the machine's state (a checkpoint saves none of it); the recorder keeps storing
small values only.
"""
from __future__ import annotations

import zlib
from typing import Any, Iterable

HEAP_BASE = 0x555556A00000  # where the heap starts for a QEMU run under gdb (no ASLR)
HEAP_SLOTS = 0x04000000 // 0x40  # path-derived addresses: 64-byte slots in 64 MiB (collisions are rare)
TEXT_BASE = 0x555555754000  # QEMU's .text
TEXT_SLOTS = 0x00400000 // 16
GLOBALS_BASE = 0x555556200000  # .data/.bss: the C globals
KVM_RUN_MAP = 0x7FFFF7FF0000  # where the vCPU's kvm_run mmap lands (mmap area, below the libraries)
ARGV_ADDRESS = 0x7FFFFFFFE2D8  # main's argv: on the main thread's stack, near its top (no ASLR)
_GLOBALS = (("address_space_io", "address_space_io"), ("address_space_memory", "address_space_memory"),
            ("aio_context", "qemu_aio_context"), ("kvm_state", "kvm_state"))
_WALK_DEPTH = 12
_BY_ID = frozenset({"Coroutine", "BlockDriverAIOCBCoroutine"})  # named by their per-machine id
_SKIP = frozenset({"events", "hooks", "listeners", "sched", "machine", "fn", "history", "tp", "source",
                   # an EventNotifier's model-only container_of link: a path through it (ioeventfds[0].e
                   # .container) named the VirtQueue differently with ioeventfd on and off
                   "container"})
# Not the machine's state, never walked through: trace points, and the scheduler's threads. A vCPU holds
# the model thread that runs its KVM_RUN (`model_thread`: the real engine notes it at the first kick, a
# matter of timing), and a path through it (…model_thread._args[0]) would name the CPUState by when a kick
# came; threads are reached as roots, by their stacks, last.
_NOT_STATE = frozenset({"TracePoint", "ModelThread"})


def _crc(s: str) -> int:
    return zlib.crc32(s.encode())


def text_address(name: str) -> int:
    """A function's address: derived from its name, so the same in every run and on every machine."""
    return TEXT_BASE + (_crc(name) % TEXT_SLOTS) * 16


def _walkable(v: Any) -> bool:
    return (type(v).__module__.startswith("vmio_edu") and not callable(v)) or \
        (isinstance(v, (list, tuple)) and 0 < len(v) <= 64)


def _pointer(v: Any) -> bool:
    """A value gdb would print as a pointer (not a number, string, NULL or function)."""
    return not isinstance(v, (int, str, float, type(None))) and not callable(v)


class AddressMap:
    """The addresses of one machine's objects at one moment (see the module docstring)."""

    def __init__(self, state: Any = None, stacks: Iterable[tuple[str, list]] = ()) -> None:
        self._state = state
        self._stacks = list(stacks)
        self._addr: dict[int, int] = {}
        self._keep: dict[int, Any] = {}  # the objects named, alive while the map is (ids stay unique)
        self._symbols: dict[int, str] = {}
        self._walked = False

    def _roots(self) -> list[list[tuple[Any, str]]]:
        """The walk's roots in order of preference: each global in turn (the device tree under
        address_space_io first, so a drive is named by its place on the bus, never through a request
        that holds it for a while), the coroutines, the threads' stacks."""
        state, groups, cos, stacks = self._state, [], [], []
        if state is not None:
            for i, (attr, cname) in enumerate(_GLOBALS):
                g = getattr(state, attr, None)
                if g is not None:
                    if id(g) not in self._addr:
                        self._put(g, GLOBALS_BASE + 0x1000 * i)
                        self._symbols[id(g)] = cname
                    groups.append([(g, attr)])
            table = getattr(state, "extra", {}).get("coroutines")
            if table is not None:
                cos.append((list(table.live), "coroutines"))
            sched = getattr(state, "sched", None)
            for t in getattr(sched, "threads", ()) or ():
                stacks.append((list(t.ctx.stack), f"{t.name}.stack"))
        stacks += [(list(stack), f"{name}.bt") for name, stack in self._stacks]
        return groups + [cos, stacks]

    def _put(self, obj: Any, addr: int) -> int:
        """Name `obj` by `addr`. Two objects with the same path get the same address, as malloc hands a
        freed chunk to the next request of its size (the next sector's acb sits where the last one was)."""
        self._addr[id(obj)] = addr
        self._keep[id(obj)] = obj
        return addr

    @staticmethod
    def _heap_address(obj: Any, path: str) -> int:
        name = type(obj).__name__
        key = f"{name}#{obj.id}" if name in _BY_ID and isinstance(getattr(obj, "id", None), int) else path
        return HEAP_BASE + (_crc(key) % HEAP_SLOTS) * 0x40

    def _walk(self) -> None:
        """Breadth first from each group of roots in turn: an object is named by its shortest path from
        the first group that reaches it."""
        self._walked = True
        seen: set[int] = set()
        for roots in self._roots():
            self._walk_from(roots, seen)

    def _walk_from(self, roots: list[tuple[Any, str]], seen: set[int]) -> None:
        todo = [(obj, path, 0) for obj, path in roots]
        k = 0
        while k < len(todo):
            obj, path, depth = todo[k]
            k += 1
            if id(obj) in seen or depth > _WALK_DEPTH:
                continue
            seen.add(id(obj))
            if isinstance(obj, (list, tuple)):
                items: Iterable = ((f"{path}[{i}]", v) for i, v in enumerate(obj))
            else:
                if id(obj) not in self._addr:
                    self._put(obj, self._heap_address(obj, path))
                fields = getattr(obj, "__dict__", None) or {}
                items = ((f"{path}.{a}", v) for a, v in fields.items() if a not in _SKIP)
            for p, v in items:
                if id(v) in seen or type(v).__name__ in _NOT_STATE:
                    continue
                if _walkable(v):
                    todo.append((v, p, depth + 1))
                elif _pointer(v) and id(v) not in self._addr:
                    # a buffer or foreign object (address_space_rw's buf, the IDE io_buffer): a leaf
                    self._put(v, HEAP_BASE + (_crc(p) % HEAP_SLOTS) * 0x40)
                    seen.add(id(v))

    def address(self, obj: Any) -> int | None:
        """The object's address, or None if it is not reachable from the machine."""
        a = self._addr.get(id(obj))
        if a is None and not self._walked:
            self._walk()
            a = self._addr.get(id(obj))
        return a

    def show(self, v: Any, where: str = "") -> Any:
        """An argument as gdb prints it: numbers as numbers, pointers as addresses (with `<symbol>` for
        functions and known globals), NULL as 0x0. `where` names the argument's place on the stack
        (thread, frame, name): a buffer or other non-model object there is addressed by it, no walk."""
        if isinstance(v, bool):
            return "true" if v else "false"
        if type(v).__name__ == "_Pointer":  # an address the backtrace computed (kvm_handle_io's data)
            return f"{int(v):#x}"
        if isinstance(v, int):
            return v
        if v is None:
            return "0x0"
        if isinstance(v, str):
            return v
        if callable(v) and hasattr(v, "__name__"):
            return f"{text_address(v.__name__):#x} <{v.__name__}>"
        addr = self._addr.get(id(v))
        if addr is None and where and not type(v).__module__.startswith("vmio_edu"):
            # a buffer or value cell of this call (address_space_rw's buf, memory.c's uint64_t *value):
            # it lives as long as the frame, so its place on the stack names it
            return f"{HEAP_BASE + (_crc(where) % HEAP_SLOTS) * 0x40:#x}"
        if addr is None:
            addr = self.address(v)
        if addr is None:
            addr = self._put(v, self._heap_address(v, type(v).__name__))
        sym = self._symbols.get(id(v))
        return f"{addr:#x} <{sym}>" if sym else f"{addr:#x}"
