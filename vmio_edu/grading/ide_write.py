"""Exercise: write the IDE data port's 16-bit write handler, `ide_data_writew` (hw/ide/core.c:1890-1908).

Unit checks run the student's function on a real `IDEBus`/`IDEState` of the model, with a PIO window opened
by the model's own `ide_transfer_start` and the window's end function replaced by a recorder (so
`ide_is_pio_out` still tells the directions apart). The model check plugs the function into a machine (the
port list entry of 0x1f0 included) and writes sectors through it.
"""
from __future__ import annotations

import contextlib
from typing import Any

from .base import Exercise, Part, PartResult, StudentError, call, fail_all, not_callable, rng, verdict
from .model import ModelUnavailable, image_problems, plugged, run_default_guest

NAME = "ide_write"


def random_window(r) -> dict:
    start = r.choice((0, 0, 2 * r.randrange(0, 256)))
    size = r.choice((512, 512, 2 * r.randrange(1, 40)))
    words = [r.getrandbits(16) for _ in range(size // 2)]
    return {"start": start, "size": size, "words": words, "extra": r.getrandbits(16)}


def make(seed: int) -> dict:
    r = rng(NAME, seed)
    windows = [random_window(r) for _ in range(2)]
    windows[0].update(start=0, size=512)
    windows[0]["words"] = [r.getrandbits(16) for _ in range(256)]
    return {"seed": seed, "windows": windows, "stray": [r.getrandbits(16) for _ in range(3)],
            "model": {"lba": r.randrange(1, 1900), "sectors": r.choice((1, 2)), "pattern": r.randrange(1 << 16)}}


def hidden_windows(seed: int) -> list[dict]:
    r = rng(NAME, seed, "hidden")
    return [dict(random_window(r), start=0, size=2, words=[0xBEEF])] + [random_window(r) for _ in range(4)]


def problem(p: dict) -> str:
    w0, w1 = p["windows"]
    m = p["model"]
    first = ", ".join(f"{v:#06x}" for v in w0["words"][:4])
    return f"""**Your transfers** (seed {p['seed']}).

1. After `WRITE SECTORS` the drive opened a 512-byte window at the start of `io_buffer` (status 0x58). The guest
   writes 256 words to port 0x1f0, starting {first}, ... Each must land little-endian at `data_ptr`, and the
   256th must call `end_transfer_func` (here a recorder standing for `ide_sector_write`) exactly once.
2. A window of {w1['size']} bytes at offset {w1['start']}: {w1['size'] // 2} words, then one more word after it closed.
3. Writes with DRQ clear, and writes into a *device-to-host* window (a read in progress), must change nothing.
4. In the model: the default guest writes {m['sectors']} sector(s) at LBA {m['lba']} through your handler.

Write `ide_data_writew(opaque, addr, val)`: `opaque` is the `IDEBus`, `addr` the port, `val` the 16-bit word."""


INTRO = """QEMU 1.6.1 `ide_data_writew` ([hw/ide/core.c:1890-1908](https://github.com/qemu/qemu/blob/v1.6.1/hw/ide/core.c#L1890-L1908)):

* the drive is `s = idebus_active_if(bus)` (the one bit 4 of 0x1f6 selected);
* data moves only while DRQ (`s.status & DRQ_STAT`) is set, and only into a host-to-device window:
  `ide_is_pio_out(s)` is True for a device-to-host window (the guest reads), and then a write is ignored;
* the word goes to `s.io_buffer` at offset `s.data_ptr`, little-endian, and `data_ptr` moves 2 bytes on;
* when `data_ptr` reaches `s.data_end`, call `s.end_transfer_func(s)`: for `WRITE SECTORS` that is
  `ide_sector_write`, which sets BSY, drops DRQ and submits the sector to the block layer.

In vmio-edu `data_ptr` and `data_end` are offsets into `io_buffer` (a `bytearray`), not C pointers."""

SOLUTION = '''from vmio_edu.qemu.hw.ide.core import ide_is_pio_out
from vmio_edu.qemu.hw.ide.internal import DRQ_STAT, idebus_active_if


def ide_data_writew(opaque, addr: int, val: int) -> None:
    """A 16-bit guest write to the IDE data port (0x1f0)."""
    bus = opaque
    s = idebus_active_if(bus)
    ### BEGIN SOLUTION
    if not (s.status & DRQ_STAT) or ide_is_pio_out(s):
        return
    p = s.data_ptr
    s.io_buffer[p:p + 2] = (val & 0xFFFF).to_bytes(2, "little")
    p += 2
    s.data_ptr = p
    if p >= s.data_end:
        s.end_transfer_func(s)
    ### END SOLUTION
'''

DEMO_INTRO = """## Your function in the machine (not graded)

Run this once your self-check passes. It builds a fresh machine with **your** `ide_data_writew` in place of
QEMU's, the way the grader plugs it in, and stops the debugger panel inside it at the guest's first data word.
The backtrace shows your function called from `portio_write`, under the real name and `hw/ide/core.c` line.
Pick the **IDE** view, then press **Finish**: your code stores the word and `data_ptr` moves 2 bytes on.
**Continue** stops at every word; delete the breakpoint and Continue to see the sector reach the disk.
`dbg.close()` puts QEMU's own function back."""

DEMO = """# Not graded: your ide_data_writew running inside the machine, in the debugger panel.
from vmio_edu.grading.demo import debug_with
from vmio_edu.qemu.hw.ide import core

dbg = debug_with(core, "ide_data_writew", ide_data_writew, op="write", lba=5, sectors=1)
dbg.break_at("ide_data_writew")
stop = dbg.cont()   # the guest's first data word reaches your function
print(stop)
dbg.panel()"""

PARTS = (
    Part("store", 1, "each word stored little-endian at data_ptr, data_ptr moved 2 bytes on"),
    Part("end", 1, "end_transfer_func called once, exactly when the window is full"),
    Part("guard", 1, "nothing happens without DRQ or in a device-to-host window"),
    Part("model", 2, "plugged into the model: the guest's sectors land in the image"),
)


class EndRecorder:
    """Stands for the window's end function; like ide_sector_write it drops DRQ (and sets BSY)."""

    def __init__(self, name: str):
        self.__name__ = name
        self.calls: list[int] = []  # data_ptr at each call

    def __call__(self, s: Any) -> None:
        self.calls.append(s.data_ptr)
        s.status = 0xD0


@contextlib.contextmanager
def drive(end: EndRecorder, read_end: EndRecorder):
    """A fresh bus and drive of the model, with ide_sector_write / ide_sector_read standing in as recorders
    (ide_is_pio_out compares against those names)."""
    from ..qemu.hw.ide import core
    from ..qemu.hw.ide.internal import IDEBus
    with plugged(core, "ide_sector_write", end) as w, plugged(core, "ide_sector_read", read_end) as r:
        bus = IDEBus()
        core.ide_init2(bus, None)
        yield bus, bus.ifs[0], core, w, r


def _window(answer: Any, w: dict) -> dict[str, list[str]]:
    """Run one window; failures by part."""
    out: dict[str, list[str]] = {"store": [], "end": [], "guard": []}
    end, rend = EndRecorder("ide_sector_write"), EndRecorder("ide_sector_read")
    label = f"window of {w['size']} bytes at offset {w['start']}"
    with drive(end, rend) as (bus, s, core, w_fn, _r):
        s.status = 0x50
        core.ide_transfer_start(s, w["start"] if w["start"] else s.io_buffer, w["size"], w_fn)
        before = bytes(s.io_buffer)
        for i, val in enumerate(w["words"]):
            ptr = s.data_ptr
            try:
                call(answer, bus, 0x1F0, val)
            except StudentError as e:
                for k in ("store", "end"):
                    out[k].append(f"{label}, word {i}: your function raised {e}")
                return {k: v[:1] for k, v in out.items()}
            got = bytes(s.io_buffer[ptr:ptr + 2])
            want = val.to_bytes(2, "little")
            if got != want and not out["store"]:
                hint = "store it little-endian (low byte first)" if got == val.to_bytes(2, "big") else \
                    f"it belongs at io_buffer[data_ptr] = io_buffer[{ptr}]"
                out["store"].append(f"{label}, word {i} ({val:#06x}): io_buffer[{ptr}:{ptr + 2}] holds "
                                    f"{got.hex()}, expected {want.hex()}; {hint}")
            if s.data_ptr != ptr + 2 and not out["store"]:
                out["store"].append(f"{label}, word {i}: data_ptr went from {ptr} to {s.data_ptr}, expected {ptr + 2}")
            last = i == len(w["words"]) - 1
            if not last and end.calls and not out["end"]:
                out["end"].append(f"{label}: end_transfer_func was called after word {i}, before the window was "
                                  f"full ({s.data_ptr} of {w['start'] + w['size']})")
        if len(end.calls) != 1 and not out["end"]:
            out["end"].append(f"{label}: end_transfer_func was called {len(end.calls)} times after the last word; "
                              f"expected once, when data_ptr reaches data_end ({w['start'] + w['size']})")
        if len(end.calls) != 1:
            return {k: v[:1] for k, v in out.items()}  # the window never closed properly: nothing more to try
        # one more word after the window closed (DRQ dropped by the end function): ignored
        ptr_after = s.data_ptr
        snapshot = bytes(s.io_buffer)
        try:
            call(answer, bus, 0x1F0, w["extra"])
        except StudentError as e:
            out["guard"].append(f"{label}: a word after the window closed made your function raise {e}")
            return out
        if bytes(s.io_buffer) != snapshot or s.data_ptr != ptr_after or len(end.calls) > 1:
            out["guard"].append(f"{label}: a word written after the window closed (DRQ off) changed the drive; "
                                "with DRQ clear it must be ignored")
        outside = [i for i in range(len(before)) if not w["start"] <= i < w["start"] + w["size"]
                   and snapshot[i] != before[i]]
        if outside and not out["store"]:
            out["store"].append(f"{label}: bytes outside the window changed (first at offset {outside[0]})")
    return {k: v[:1] for k, v in out.items()}  # one message per part and window: a window is one case


def _guard(answer: Any, stray: list[int]) -> list[str]:
    fails = []
    for label, setup in (("DRQ clear (status 0x50, no window)", "nodrq"),
                         ("a device-to-host window (a READ SECTORS in progress, status 0x58)", "read")):
        end, rend = EndRecorder("ide_sector_write"), EndRecorder("ide_sector_read")
        with drive(end, rend) as (bus, s, core, w_fn, r_fn):
            s.status = 0x50
            if setup == "read":
                core.ide_transfer_start(s, s.io_buffer, 512, r_fn)
            else:
                core.ide_transfer_start(s, s.io_buffer, 512, w_fn)
                s.status = 0x50  # DRQ off again
            before, ptr = bytes(s.io_buffer), s.data_ptr
            for v in stray:
                try:
                    call(answer, bus, 0x1F0, v)
                except StudentError as e:
                    fails.append(f"{label}: your function raised {e}")
                    break
            else:
                if bytes(s.io_buffer) != before or s.data_ptr != ptr or end.calls or rend.calls:
                    fails.append(f"{label}: a word write changed the drive; with "
                                 f"{'DRQ clear' if setup == 'nodrq' else 'ide_is_pio_out(s) true'} it must be ignored")
    return fails


def _model(part: Part, answer: Any, m: dict) -> PartResult:
    from ..qemu.hw.ide import core
    try:
        run = run_default_guest("write", m["lba"], m["sectors"], seed=m["pattern"],
                                patches=[(core, "ide_data_writew", answer)])
    except ModelUnavailable as e:
        return PartResult(part.name, 0, part.points, f"not graded: the model cannot run here ({e})")
    problems = image_problems(run, m["lba"], m["sectors"]) if run.ok else \
        [f"the machine did not finish: {run.error}"]
    if run.ok and (run.guest.get("error") or run.guest.get("sectors_done") != m["sectors"]):
        problems.append(f"the guest's driver finished {run.guest.get('sectors_done')} of {m['sectors']} sectors "
                        f"(status {run.guest.get('status', 0):#x}, error {run.guest.get('error', 0):#x})")
    label = f"write of {m['sectors']} sector(s) at LBA {m['lba']}"
    if problems:
        return PartResult(part.name, 0, part.points, f"{label}:\n- " + "\n- ".join(problems[:4]))
    return PartResult(part.name, part.points, part.points, f"{label}: the image holds exactly the guest's bytes")


def check(answer: Any, params: dict, parts: list[str] | None = None, hidden: bool = False) -> list[PartResult]:
    problem_ = not_callable(answer, EXERCISE.answer)
    if problem_:
        return fail_all(EXERCISE, parts, problem_)
    want = [p.name for p in PARTS if parts is None or p.name in parts]
    fails: dict[str, list[str]] = {"store": [], "end": [], "guard": []}
    windows = list(params["windows"]) + (hidden_windows(params["seed"]) if hidden else [])
    try:
        if {"store", "end", "guard"} & set(want):
            for w in windows:
                for k, v in _window(answer, w).items():
                    fails[k] += v
        if "guard" in want:
            fails["guard"] += _guard(answer, params["stray"])
    except ModelUnavailable as e:
        return fail_all(EXERCISE, parts, f"not graded: the IDE model is not available ({e})")
    out = []
    for p in PARTS:
        if p.name not in want:
            continue
        if p.name == "model":
            out.append(_model(p, answer, params["model"]))
        else:
            out.append(verdict(p, fails[p.name], len(windows) + (2 if p.name == "guard" else 0)))
    return out


EXERCISE = Exercise(
    name=NAME, title="The IDE data port: ide_data_writew",
    goal="Implement the step of the IDE WRITE SECTORS state machine that takes each word of the guest's "
         "`rep outsw`: the DRQ guard, the PIO window over io_buffer, and the hand-off to `ide_sector_write` "
         "when a sector is full; then watch the model write the sector through your code.",
    answer="ide_data_writew", parts=PARTS, make=make, problem=problem, check=check, solution=SOLUTION,
    intro=INTRO, uses_model=True, extra={"demo": {"intro": DEMO_INTRO, "code": DEMO}})
