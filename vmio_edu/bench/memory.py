"""Memory: bytes per recorded event (tracemalloc) and the peak RSS of a 1,000,000-event recording."""
from __future__ import annotations


import json
import subprocess
import sys
from typing import Any


def _deep_size(v: Any, seen: set) -> int:
    """sys.getsizeof of a stored payload, tuples followed; shared objects (small ints, interned names,
    None, bools) are not counted, each other object once."""
    if v is None or isinstance(v, bool) or (isinstance(v, int) and -5 <= v <= 256) or id(v) in seen:
        return 0
    if isinstance(v, str) and sys.intern(v) is v:
        return 0
    seen.add(id(v))
    n = sys.getsizeof(v)
    if isinstance(v, tuple):
        n += sum(_deep_size(x, seen) for x in v)
    return n


def _store_size(events: Any) -> int:
    """A sys.getsizeof estimate of a columnar trace (vmio_edu.trace.events.EventStore): the word array,
    the payload table and its intern index, and the side table of wide events."""
    seen: set = set()
    n = sys.getsizeof(events.words) + sys.getsizeof(events._payloads) + sys.getsizeof(events._ids)
    n += sum(_deep_size(p, seen) for p in events._payloads)
    n += sys.getsizeof(events._wide) + sum(sys.getsizeof(e) for e in events._wide.values())
    return n


def bytes_per_event(sectors: int, engine: str = "unicorn") -> dict:
    """tracemalloc: the bytes freed when a recorded trace is emptied, per event (its packed columns, its
    payload table and everything only they hold). Also a sys.getsizeof estimate."""
    import tracemalloc

    from ..machine import Machine

    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        with Machine(engine=engine, op="write", sectors=sectors, record=True) as m:
            m.run()
            events = m.trace.events
            n = len(events)
            estimate = _store_size(events)
            before = tracemalloc.get_traced_memory()[0]
            events.clear()
            after = tracemalloc.get_traced_memory()[0]
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return {"engine": engine, "machine": f"op=write, {sectors} sectors, record=True", "events": n,
            "bytes_per_event": (before - after) / n, "getsizeof_bytes_per_event": estimate / n}


_RSS_CHILD = r"""
import json, resource, sys
from vmio_edu.machine import Machine
record, engine = sys.argv[1] == "1", sys.argv[5]
target, sectors, runs = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
keep, events, exits = [], 0, 0
while True:
    m = Machine(engine=engine, op="write", sectors=sectors, record=record)
    m.run()
    keep.append(m)  # the recording stays alive to the end
    exits += len(m.exits)
    events += len(m.trace.events) if record else 0
    if (record and events >= target) or (not record and len(keep) >= runs):
        break
# VmHWM: this process's own peak. ru_maxrss is not: Linux carries it over exec from the parent, which
# may be bigger than the child ever gets.
hwm = None
try:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
except OSError:
    pass
print(json.dumps({"peak_kb": hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "source": "VmHWM" if hwm is not None else "ru_maxrss", "events": events, "exits": exits,
                  "runs": len(keep)}))
"""


def _rss_child(record: bool, target: int, sectors: int, runs: int, engine: str) -> dict:
    p = subprocess.run([sys.executable, "-c", _RSS_CHILD, "1" if record else "0", str(target), str(sectors),
                        str(runs), engine], capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise RuntimeError(f"the RSS subprocess failed: {p.stderr.strip()[-500:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def rss_recording(min_events: int, sectors: int = 64, engine: str = "unicorn") -> dict:
    """Peak RSS (VmHWM, else ru_maxrss) of a fresh process that records >= `min_events` events (64-sector
    writes, kept alive), and of one that runs the same writes unrecorded (the baseline)."""
    rec = _rss_child(True, min_events, sectors, 0, engine)
    base = _rss_child(False, 0, sectors, rec["runs"], engine)
    diff = (rec["peak_kb"] - base["peak_kb"]) * 1024
    return {"engine": engine, "machine": f"{rec['runs']} x op=write, {sectors} sectors",
            "events": rec["events"],
            "source": rec["source"], "recorded_peak_mb": rec["peak_kb"] / 1024,
            "baseline_peak_mb": base["peak_kb"] / 1024, "difference_mb": diff / 2**20,
            "rss_bytes_per_event": diff / rec["events"]}
