"""Exercise: write the IDE data port's 16-bit write handler, `ide_data_writew` (hw/ide/core.c:1890-1908).

Unit checks run the student's function on a real `IDEBus`/`IDEState` of the model, with a PIO window opened
by the model's own `ide_transfer_start` and the window's end function replaced by a recorder (so
`ide_is_pio_out` still tells the directions apart). The model check plugs the function into a machine (the
port list entry of 0x1f0 included) and writes sectors through it.
"""
from __future__ import annotations

import contextlib
from typing import Any

from .base import Exercise, Part, PartResult, StudentError, capture, fail_all, not_callable, rng, verdict
from .model import ModelUnavailable, from_summary, image_problems, plugged, probe, run_default_guest, summarize
from .standins import EndRecorder

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
    windows[1]["unit"] = 1  # the slave drive: the word goes to the drive the guest selected
    if len(windows[1]["words"]) < 2:
        windows[1].update(size=4, words=[r.getrandbits(16) for _ in range(2)])
    return {"seed": seed, "windows": windows, "stray": [r.getrandbits(16) for _ in range(3)],
            "model": {"lba": r.randrange(1, 1900), "sectors": 2, "pattern": r.randrange(1 << 16)}}


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


INTRO = """QEMU 1.6.1 `ide_data_writew` (hw/ide/core.c:1890-1908; semantics.md (f)):

* the drive is `s = idebus_active_if(bus)` (the one bit 4 of 0x1f6 selected);
* data moves only while DRQ (`s.status & DRQ_STAT`) is set, and only into a host-to-device window:
  `ide_is_pio_out(s)` is True for a device-to-host window (the guest reads), and then a write is ignored;
* the word goes to `s.io_buffer` at offset `s.data_ptr`, little-endian, and `data_ptr` moves 2 bytes on;
* when `data_ptr` reaches `s.data_end`, call `s.end_transfer_func(s)`: for `WRITE SECTORS` that is
  `ide_sector_write`, which sets BSY, drops DRQ and submits the sector to the block layer.

In vmio-edu `data_ptr` and `data_end` are offsets into `io_buffer` (a `bytearray`), not C pointers."""

TEMPLATE = '''from vmio_edu.qemu.hw.ide.core import ide_is_pio_out
from vmio_edu.qemu.hw.ide.internal import DRQ_STAT, idebus_active_if


def ide_data_writew(opaque, addr: int, val: int) -> None:
    """A 16-bit guest write to the IDE data port (0x1f0)."""
    bus = opaque
    s = idebus_active_if(bus)
    # YOUR CODE HERE
    raise NotImplementedError()
'''

PARTS = (
    Part("store", 1, "each word stored little-endian at data_ptr, data_ptr moved 2 bytes on"),
    Part("end", 1, "end_transfer_func called once, exactly when the window is full"),
    Part("guard", 1, "nothing happens without DRQ or in a device-to-host window"),
    Part("model", 2, "plugged into the model: the guest's sectors land in the image"),
)


@contextlib.contextmanager
def drive(end: EndRecorder, read_end: EndRecorder, unit: int = 0):
    """A fresh bus of the model with drive `unit` selected, ide_sector_write / ide_sector_read standing in as
    recorders (ide_is_pio_out compares against those names)."""
    from ..qemu.hw.ide import core
    from ..qemu.hw.ide.internal import IDEBus
    with plugged(core, "ide_sector_write", end) as w, plugged(core, "ide_sector_read", read_end) as r:
        bus = IDEBus()
        core.ide_init2(bus, None)
        bus.unit = unit
        yield bus, bus.ifs[unit], core, w, r


def capture_window(student: Any, w: dict) -> dict:
    """Sandbox side: open a host-to-device window on drive w["unit"], write its words, then one more.
    Records, per word, where data_ptr was before and after and what landed there; at each call of the end
    function, the state it was handed; then what the extra word changed."""
    end = EndRecorder("ide_sector_write", w["start"], w["size"])
    rend = EndRecorder("ide_sector_read")
    words: list[list] = []
    out: dict = {"words": words, "ends": [], "raised": None}
    with drive(end, rend, w.get("unit", 0)) as (bus, s, core, w_fn, _r):
        other = bus.ifs[1 - w.get("unit", 0)]
        other_before = bytes(other.io_buffer)
        s.status = 0x50
        core.ide_transfer_start(s, w["start"] if w["start"] else s.io_buffer, w["size"], w_fn)
        before = bytes(s.io_buffer)
        for val in w["words"]:
            ptr = s.data_ptr
            student(bus, 0x1F0, val)
            words.append([ptr, s.data_ptr, bytes(s.io_buffer[ptr:ptr + 2]), len(end.calls)])
        closed = bytes(s.io_buffer)
        ptr_closed = s.data_ptr
        out["ends"] = list(end.calls)  # before the extra word: that one is the guard's business
        student(bus, 0x1F0, w["extra"])
        out["extra_changed"] = bytes(s.io_buffer) != closed or s.data_ptr != ptr_closed
        out["ends_after_extra"] = len(end.calls)
        out["outside"] = next((i for i in range(len(before)) if not w["start"] <= i < w["start"] + w["size"]
                               and closed[i] != before[i]), None)
        out["other_drive_changed"] = bytes(other.io_buffer) != other_before
    return out


def capture_guard(student: Any, g: dict) -> dict:
    """Sandbox side: stray words with DRQ clear, or into a device-to-host window: did anything change?"""
    end, rend = EndRecorder("ide_sector_write"), EndRecorder("ide_sector_read")
    with drive(end, rend, g.get("unit", 0)) as (bus, s, core, w_fn, r_fn):
        s.status = 0x50
        if g["setup"] == "read":
            core.ide_transfer_start(s, s.io_buffer, 512, r_fn)
        else:
            core.ide_transfer_start(s, s.io_buffer, 512, w_fn)
            s.status = 0x50  # DRQ off again
        before, ptr = bytes(s.io_buffer), s.data_ptr
        for v in g["words"]:
            student(bus, 0x1F0, v)
        return {"changed": bytes(s.io_buffer) != before or s.data_ptr != ptr or bool(end.calls or rend.calls)}


def capture_model(student: Any, m: dict) -> dict:
    from ..qemu.hw.ide import core
    run = run_default_guest("write", m["lba"], m["sectors"], seed=m["pattern"],
                            patches=[(core, "ide_data_writew", student)])
    return summarize(run)


def _window(answer: Any, w: dict) -> dict[str, list[str]]:
    """Judge one window; failures by part (one message per part: a window is one case)."""
    out: dict[str, list[str]] = {"store": [], "end": [], "guard": []}
    drv = "slave" if w.get("unit") else "master"
    label = f"{drv} drive, window of {w['size']} bytes at offset {w['start']}"
    try:
        got = capture(answer, "window", w, CAPTURES)
    except StudentError as e:
        for k in ("store", "end"):
            out[k].append(f"{label}: your function raised {e}")
        return out
    words, ends = got.get("words"), got.get("ends")
    if not isinstance(words, list) or not isinstance(ends, list) or len(words) != len(w["words"]):
        for k in out:
            out[k].append(f"{label}: the sandbox sent back an incomplete record")
        return out
    n = len(w["words"])
    data_end = w["start"] + w["size"]
    for i, (val, rec) in enumerate(zip(w["words"], words)):
        ptr, after, stored, nends = rec
        want = val.to_bytes(2, "little")
        last = i == n - 1
        if stored != want and not out["store"]:
            hint = "store it little-endian (low byte first)" if stored == val.to_bytes(2, "big") else \
                f"it belongs at io_buffer[data_ptr] = io_buffer[{ptr}]"
            if last and nends:
                hint = "the end function already ran, so the last word never reached the sector it handed on"
            out["store"].append(f"{label}, word {i} ({val:#06x}): io_buffer[{ptr}:{ptr + 2}] holds "
                                f"{stored.hex() if isinstance(stored, bytes) else stored!r}, expected {want.hex()}; {hint}")
        if not last and after != ptr + 2 and not out["store"]:
            out["store"].append(f"{label}, word {i}: data_ptr went from {ptr} to {after}, expected {ptr + 2}")
        if not last and nends and not out["end"]:
            out["end"].append(f"{label}: end_transfer_func was called after word {i}, before the window was "
                              f"full ({after} of {data_end})")
    if len(ends) != 1 and not out["end"]:
        out["end"].append(f"{label}: end_transfer_func was called {len(ends)} times; expected once, when data_ptr "
                          f"reaches data_end ({data_end})")
    if len(ends) == 1 and not out["end"]:
        seen = ends[0] if isinstance(ends[0], dict) else {}
        full = b"".join(v.to_bytes(2, "little") for v in w["words"])
        if seen.get("window") != full:
            out["end"].append(f"{label}: when end_transfer_func ran, the window did not hold all {n} words yet "
                              "(the end function hands the sector on: store the word first, then call it)")
        elif seen.get("data_ptr") != data_end:
            out["end"].append(f"{label}: end_transfer_func saw data_ptr = {seen.get('data_ptr')}, expected "
                              f"data_end = {data_end}: move data_ptr before the hand-off")
        elif words[-1][1] != 0:
            out["end"].append(f"{label}: after end_transfer_func returned, your function set data_ptr to "
                              f"{words[-1][1]}; the end function had closed the window (data_ptr 0) or opened the "
                              "next one: don't touch the drive after the hand-off")
    if got.get("outside") is not None and not out["store"]:
        out["store"].append(f"{label}: bytes outside the window changed (first at offset {got['outside']})")
    if got.get("other_drive_changed") and not out["store"]:
        out["store"].append(f"{label}: the other drive's buffer changed: write to idebus_active_if(bus), the "
                            "drive bit 4 of 0x1f6 selected")
    if len(ends) == 1 and (got.get("extra_changed") or got.get("ends_after_extra") != 1):
        out["guard"].append(f"{label}: a word written after the window closed (DRQ off) changed the drive; "
                            "with DRQ clear it must be ignored")
    return out


def _guard(answer: Any, stray: list[int], units: tuple[int, ...] = (0,)) -> tuple[list[str], int]:
    fails, total = [], 0
    for unit in units:
        for setup, label in (("nodrq", "DRQ clear (status 0x50, no window)"),
                             ("read", "a device-to-host window (a READ SECTORS in progress, status 0x58)")):
            total += 1
            try:
                got = capture(answer, "guard", {"setup": setup, "words": stray, "unit": unit}, CAPTURES)
            except StudentError as e:
                fails.append(f"{label}: your function raised {e}")
                continue
            if not isinstance(got, dict) or got.get("changed") is not False:
                fails.append(f"{label}: a word write changed the drive; with "
                             f"{'DRQ clear' if setup == 'nodrq' else 'ide_is_pio_out(s) true'} it must be ignored")
    return fails, total


def _model(part: Part, answer: Any, m: dict) -> PartResult:
    why = probe()
    if why is not None:
        return PartResult(part.name, 0, part.points, f"not graded: the model cannot run here ({why})")
    try:
        run = from_summary(capture(answer, "model", m, CAPTURES), "write", m["lba"], m["sectors"], m["pattern"])
    except StudentError as e:
        return PartResult(part.name, 0, part.points, f"write of {m['sectors']} sector(s) at LBA {m['lba']}: {e}")
    problems = image_problems(run, m["lba"], m["sectors"]) if run.ok else \
        [f"the machine did not finish: {run.error}"]
    if run.ok and (run.guest.get("error") or run.guest.get("sectors_done") != m["sectors"]):
        problems.append(f"the guest's driver finished {run.guest.get('sectors_done')} of {m['sectors']} sectors "
                        f"(status {run.guest.get('status', 0):#x}, error {run.guest.get('error', 0):#x})")
    label = f"write of {m['sectors']} sector(s) at LBA {m['lba']}"
    if problems:
        return PartResult(part.name, 0, part.points, f"{label}:\n- " + "\n- ".join(problems[:4]))
    return PartResult(part.name, part.points, part.points, f"{label}: the image holds exactly the guest's bytes")


def check(answer: Any, params: dict, parts: list[str] | None = None, hidden: list | None = None) -> list[PartResult]:
    problem_ = not_callable(answer, EXERCISE.answer)
    if problem_:
        return fail_all(EXERCISE, parts, problem_)
    want = [p.name for p in PARTS if parts is None or p.name in parts]
    fails: dict[str, list[str]] = {"store": [], "end": [], "guard": []}
    windows = list(params["windows"]) + list(hidden or [])
    totals = {"store": len(windows), "end": len(windows), "guard": len(windows)}
    try:
        if {"store", "end", "guard"} & set(want):
            for w in windows:
                for k, v in _window(answer, w).items():
                    fails[k] += v
        if "guard" in want:
            f, n = _guard(answer, params["stray"], (0, 1) if hidden else (0,))
            fails["guard"] += f
            totals["guard"] += n
    except ModelUnavailable as e:
        return fail_all(EXERCISE, parts, f"not graded: the IDE model is not available ({e})")
    out = []
    for p in PARTS:
        if p.name not in want:
            continue
        if p.name == "model":
            out.append(_model(p, answer, params["model"]))
        else:
            out.append(verdict(p, fails[p.name], totals[p.name]))
    return out


CAPTURES = {"window": capture_window, "guard": capture_guard, "model": capture_model}

EXERCISE = Exercise(
    name=NAME, title="The IDE data port: ide_data_writew",
    goal="Implement the step of the IDE WRITE SECTORS state machine that takes each word of the guest's "
         "`rep outsw`: the DRQ guard, the PIO window over io_buffer, and the hand-off to `ide_sector_write` "
         "when a sector is full; then watch the model write the sector through your code.",
    answer="ide_data_writew", parts=PARTS, make=make, problem=problem, check=check, template=TEMPLATE,
    intro=INTRO, uses_model=True, originals=(("vmio_edu.qemu.hw.ide.core", "ide_data_writew"),),
    captures=CAPTURES)
