"""Clear ends: the guest's normal halt as a success with what it did, and a clear answer to a command
given after the end (issue 11, item 7).

The halted Stop keeps `reason == "halted"`; `stop.summary` says what the run did and whether it
succeeded, `stop.message` says it in one line. `step()`/`cont()`/`next()`/`finish()` past the end return
a Stop with reason "end" whose message says the run is over (dbg.stop stays the halted stop).
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Iterator, Sequence

from .events import _WIDE, HOLE, EventStore
from .tracepoint import REGISTRY

ENTER, LEAVE, POINT = 0, 1, 2
SECTOR = 512


def _host_io_leaves(events: Sequence) -> Iterator[tuple[int, Any, Any]]:
    """(kind, what, payload) of the events that can be host I/O returns. From a packed trace only the
    recorded words are decoded: a debugger's `cont` counts most events without recording them (HOLEs,
    vmio_edu.trace.events) but records the host reads' and writes' exits, and reading the others would
    replay the whole run to fill them in."""
    if not isinstance(events, EventStore):
        for e in events:
            yield e[0], e[1], e[4]
        return
    wanted = {tp.bits | LEAVE for tp in REGISTRY
              if tp.name in ("sys_pwrite64", "sys_pwritev", "sys_pread64", "sys_preadv")}
    for i, w in enumerate(events.words):
        if w & 0xFFFF in wanted or (w & 3 == _WIDE and w != HOLE):
            e = events.decode(i, w)
            yield e[0], e[1], e[4]


def run_summary(machine: Any, events: Sequence) -> dict:
    """What the run did: bytes and sectors the host wrote and read on the image (pwrite/pread results in
    the trace), the VM exits by reason, and for the default guest its own result block."""
    wrote = read = 0
    for kind, what, payload in _host_io_leaves(events):
        if kind == LEAVE and isinstance(payload, int) and payload > 0:
            name = REGISTRY[what].name
            if name in ("sys_pwrite64", "sys_pwritev"):
                wrote += payload
            elif name in ("sys_pread64", "sys_preadv"):
                read += payload
    exits = list(machine.exits)
    io = [x for x in exits if x.reason == "IO"]
    out: dict[str, Any] = {
        "sectors_written": wrote // SECTOR, "sectors_read": read // SECTOR,
        "bytes_written": wrote, "bytes_read": read,
        "exits": len(exits), "exits_by_reason": dict(Counter(x.reason for x in exits)),
        "io_exits_out": sum(1 for x in io if x.direction == "out"),
        "io_exits_in": sum(1 for x in io if x.direction == "in"),
        "events": len(events),
    }
    result = {}
    try:
        result = machine.guest_result()
    except Exception:  # noqa: BLE001 - a custom guest without a result block
        result = {}
    result.pop("read_back", None)
    if result:
        out["guest_result"] = result
        out["success"] = bool(result.get("done")) and not result.get("error") and not result.get("outcome")
    else:
        out["success"] = True  # it halted without a fault: for a guest of one's own, that is the end
    return out


def halted_message(summary: dict) -> str:
    parts = []
    if summary["sectors_written"]:
        parts.append(f"wrote {summary['sectors_written']} sector{'s' * (summary['sectors_written'] != 1)}")
    if summary["sectors_read"]:
        parts.append(f"read {summary['sectors_read']} sector{'s' * (summary['sectors_read'] != 1)}")
    did = " and ".join(parts) or "moved no disk data"
    exits = (f"{summary['exits']} VM exits ({summary['io_exits_out']} I/O out, {summary['io_exits_in']} "
             f"I/O in)")
    if summary["success"]:
        return f"success: the guest halted normally. It {did}, in {exits}"
    r = summary.get("guest_result", {})
    return (f"the guest halted, but its driver reports a failure (done={r.get('done')}, error="
            f"{r.get('error', 0):#x}, status={r.get('status', 0):#x}, outcome={r.get('outcome')}). "
            f"It {did}, in {exits}")


def past_end_message(halted_index: int) -> str:
    return (f"the run is over: the guest halted at index {halted_index}, there is nothing more to run. "
            "Go back with dbg.back() or dbg.goto(i), or start a new Machine")
