"""Two runs of the same guest I/O, one per stack, reduced to their stages and aligned one stage per row.

    from vmio_edu.trace.diffpaths import reduce_stages, align
    rows = align(reduce_stages(old_run.trace.events), reduce_stages(new_run.trace.events))

**Stages.** A recorded run has thousands of events: every word of a `rep outsw` is one VM exit and one
trip through KVM and QEMU. `reduce_stages` folds them into a *calling-context tree* per thread: one row
per modelled function reached through a given chain of callers, with how often it ran (the 256 per-word
exits become one `ide_data_writew` row with count 256). Rows come in the order the run first reached
them. A coroutine's frames hang under the `qemu_coroutine_enter` that first entered it; when it resumes
on another thread (the main loop, after the pool's completion) its later frames name that thread.

**Alignment.** Each 1.6.1 name is mapped to its 10.2 counterpart through the reference map's rename
table (`bdrv_aio_writev` → `blk_aio_pwritev`, `paio_submit` → `raw_thread_pool_submit`, ...; see
`rename_table`), then the two stage lists of each thread are aligned by a longest common subsequence
(ties go to same-named, same-layer pairs; fully deterministic). A row is

    SAME     the same function on the same thread        RENAMED  matched through the rename table
    ADDED    only on the 10.2 path                       REMOVED  only on the 1.6.1 path
    MOVED    matched, but it runs on another thread

A stage the LCS leaves over on one side is then paired with a counterpart left over on the other, where
the 10.2 run has it: on the same thread, with a note that the run first reached it at another point (3.7
emulated the status-register IN, 6.12 takes it on the fast path, so `emulate_instruction` first runs for
another exit); on another thread, as MOVED.

`shared` marks a row whose 10.2 model runs the 1.6.1 body unchanged (`vmio_edu.trace.stacks.UNCHANGED`).
`merged` marks a stage the other stack reaches through a chain of callers already listed, with at least
as many calls (QEMU 1.6.1 has separate `cpu_outb` and `cpu_outw` chains into the memory API; 10.2 makes
the same calls through one `address_space_rw` chain), so it is not shown as removed. Stages the other run
calls fewer times stay ADDED/REMOVED: 10.2's second `bdrv_driver_pwritev` (the format node's) is new.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

from .events import ENTER, POINT
from .export import _Tracks
from .tracepoint import _LINUX_LAYERS, REGISTRY, TracePoint

KINDS = ("SAME", "RENAMED", "ADDED", "REMOVED", "MOVED")
_IDENT = re.compile(r"[A-Za-z_]\w*")


# -- the rename table ---------------------------------------------------------------------------------
def load_renames(path: str | Path | None = None) -> dict[tuple[str, str], str]:
    """(side, 1.6.1 name) → 10.2 name, for every function the map says was renamed.

    `path`: the reference map (`shared/reference/source-map.json`, a list of entries with `layer`,
    `function` and `modern`) or the packaged `sources.json` (keyed `side:function`); None reads the
    packaged one. A counterpart written as a chain ("SYSCALL_DEFINE4(pwrite64) -> ksys_pwrite64") counts
    as its last function; names that are not C functions (a struct) are left out, and so are the
    unchanged names.
    """
    if path is None:
        data = json.loads(resources.files(__package__).joinpath("sources.json").read_text())
    else:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read the rename table from {path}: {e}") from e
    if isinstance(data, dict):
        items = [(k.split(":", 1)[0], k.split(":", 1)[1], e) for k, e in data.items() if ":" in k]
    else:
        items = [("linux" if e.get("layer", "").startswith(("guest", "vmx", "kvm", "host")) else "qemu",
                  e.get("function", ""), e) for e in data]
    out: dict[tuple[str, str], str] = {}
    for side, name, e in items:
        new = (e.get("modern") or {}).get("function") or ""
        new = new.split("->")[-1].strip()  # "SYSCALL_DEFINE4(pwrite64) -> ksys_pwrite64": the function
        if new != name and _IDENT.fullmatch(name) and _IDENT.fullmatch(new):
            out[(side, name)] = new
    return out


@lru_cache(maxsize=1)
def rename_table() -> dict[tuple[str, str], str]:
    """The packaged rename table (`load_renames()`), read once."""
    return load_renames()


def counterparts(name: str, renames: dict[tuple[str, str], str] | None = None) -> tuple[str, str]:
    """(1.6.1 name, 10.2 name) of a function given by either stack's name: `bdrv_aio_writev` and
    `blk_aio_pwritev` both give ("bdrv_aio_writev", "blk_aio_pwritev"). A name the table does not know is
    its own counterpart. A 10.2 name with several 1.6.1 predecessors gives the first in the map."""
    renames = rename_table() if renames is None else renames
    for (_side, old), new in renames.items():
        if old == name:
            return old, new
    for (_side, old), new in renames.items():
        if new == name:
            return old, new
    return name, name


# -- stages ---------------------------------------------------------------------------------------------
@dataclass
class Stage:
    """One row of a reduced run: a modelled function reached through one chain of callers on one thread."""

    name: str
    layer: str
    thread: str
    count: int = 1  # how many times it ran through this chain
    depth: int = 1  # its depth in the calling-context tree (1: the thread's or coroutine's outermost)
    first: int = 0  # the trace index of its first entry
    parent: int | None = None  # the index (in the stage list) of its caller's stage
    caller: str = ""  # that stage's function ("" at a thread's outermost frame)
    coroutine: bool = False  # it ran on a coroutine's stack
    file: str = ""
    line: int | None = None
    shared: bool = False  # its model is a 1.6.1 body re-bound unchanged (trace.stacks.unchanged; 10.2 only)

    @property
    def side(self) -> str:
        return "linux" if self.layer in _LINUX_LAYERS else "qemu"

    def to_json(self) -> dict:
        return asdict(self)


def _is_shared(tp: TracePoint) -> bool:
    from .stacks import UNCHANGED
    fn = tp.fn
    if fn is None:
        return False
    # only the borrowing side knows: whether a 1.6.1 body is borrowed depends on whether the modern tree
    # was imported yet, which must not change a run's stages
    return f"{fn.__module__}.{fn.__qualname__}" in UNCHANGED


def reduce_stages(events: Sequence) -> list[Stage]:
    """The stages of a recorded run (a trace reader sequence of events): its calling-context tree, one
    `Stage` per (caller chain, function, thread), in the order first reached. Point events are skipped.
    """
    tracks = _Tracks([])  # which stack (thread or coroutine) each event happened on (as the export does)
    stages: list[Stage] = []
    index: dict[tuple, int] = {}
    open_: dict[int, list[int]] = {}  # track -> the open stages on it, outermost first
    coroutine_tracks: set[int] = set()
    for i, e in enumerate(events):
        kind, what, thread, depth = e[0], e[1], e[2], e[3]
        if kind == POINT:
            continue
        before = tracks.current.get(thread) or tracks.tid(thread)
        t = tracks.track(thread, kind, depth, what)
        if kind == ENTER:
            tracks.stacks[t].append(what)
            here = open_.setdefault(t, [])
            if here:
                parent = here[-1]
            elif t != tracks.tid(thread) or t in coroutine_tracks:
                coroutine_tracks.add(t)  # a coroutine's first frame: under whatever entered it
                caller = open_.get(before) or []
                parent = caller[-1] if caller and before != t else None
            else:
                parent = None
            key = (parent, thread, what)
            n = index.get(key)
            if n is None:
                tp = REGISTRY[what]
                src = tp.source
                n = index[key] = len(stages)
                stages.append(Stage(tp.name, tp.layer, thread, 0,
                                    stages[parent].depth + 1 if parent is not None else 1, i, parent,
                                    stages[parent].name if parent is not None else "",
                                    t in coroutine_tracks, src.file if src else "",
                                    src.line if src else None, _is_shared(tp)))
            stages[n].count += 1
            here.append(n)
        elif t is not None:
            tracks.stacks[t].pop()
            if open_.get(t):
                open_[t].pop()
            if not tracks.stacks[t] and tracks.current.get(thread) == t:
                tracks.current.pop(thread)
    return stages


# -- alignment ------------------------------------------------------------------------------------------
@dataclass
class Row:
    """One row of the aligned paths: a 1.6.1 stage, a 10.2 stage, or both."""

    kind: str
    old: Stage | None = None
    new: Stage | None = None
    shared: bool = False  # the 10.2 stage runs the 1.6.1 code unchanged
    # "new" (or "old"): that side's stage is repeated from the row it matched first, because that stack
    # makes these calls through one chain where the other has two (see the module doc); "" otherwise
    merged: str = ""
    note: str = ""

    @property
    def name(self) -> str:
        return (self.new or self.old).name  # type: ignore[union-attr]

    def to_json(self) -> dict:
        return {"kind": self.kind, "old": self.old.to_json() if self.old else None,
                "new": self.new.to_json() if self.new else None, "shared": self.shared,
                "merged": self.merged, "note": self.note}


def thread_role(thread: str) -> str:
    """What a thread is, across runs: pool workers are numbered as they start (worker-1, worker-2)."""
    return re.sub(r"-\d+$", "", thread)


def _role_key(role: str) -> tuple:
    order = 0 if role.startswith("vcpu") else 1 if role == "main" else 2 if role == "worker" else 3
    return (order, role)


# Counterparts the rename table cannot hold (it has one per 1.6.1 name): the reference map's notes name
# them ("bdrv_co_do_rw -> blk_aio_write_entry ... Read side: blk_aio_read_entry").
ALSO: dict[tuple[str, str], tuple[str, ...]] = {("qemu", "bdrv_co_do_rw"): ("blk_aio_read_entry",)}


def _matches(o: Stage, n: Stage, renames: dict[tuple[str, str], str]) -> bool:
    """Is 10.2 stage `n` the counterpart of 1.6.1 stage `o`: the same side, and the same name or the
    name the rename table gives (a model may keep the old name where the map renames, e.g. a syscall);
    with a rename table, also the counterparts in `ALSO`."""
    if o.side != n.side:
        return False
    key = (o.side, o.name)
    return n.name == o.name or n.name == renames.get(key) or bool(renames) and n.name in ALSO.get(key, ())


def _weight(o: Stage, n: Stage) -> int:
    # every match is worth 16; a same name adds 2, a same layer 1: among alignments with the most
    # matches, the most literal one wins
    return 16 + 2 * (o.name == n.name) + (o.layer == n.layer)


def _lcs(a: list[Stage], b: list[Stage], renames: dict) -> list[tuple[int, int]]:
    """The matched (i, j) pairs of a weighted longest common subsequence of `a` and `b` (see _weight).
    The walk back prefers a match, then dropping from `a` first: the result depends on the input only."""
    n, m = len(a), len(b)
    ok = [[_matches(x, y, renames) for y in b] for x in a]
    dp = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        row, below, oki = dp[i], dp[i + 1], ok[i]
        for j in range(m - 1, -1, -1):
            best = below[j] if below[j] >= row[j + 1] else row[j + 1]
            if oki[j]:
                w = _weight(a[i], b[j]) + below[j + 1]
                if w > best:
                    best = w
            row[j] = best
    pairs, i, j = [], 0, 0
    while i < n and j < m:
        if ok[i][j] and dp[i][j] == _weight(a[i], b[j]) + dp[i + 1][j + 1]:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif dp[i + 1][j] >= dp[i][j + 1]:
            i += 1
        else:
            j += 1
    return pairs


def _matched_row(o: Stage, n: Stage) -> Row:
    kind = "MOVED" if thread_role(o.thread) != thread_role(n.thread) else "SAME" if o.name == n.name \
        else "RENAMED"
    note = f"{o.thread} → {n.thread}" if kind == "MOVED" else ""
    return Row(kind, o, n, shared=n.shared, note=note)


def align(old: list[Stage], new: list[Stage], renames: dict[tuple[str, str], str] | None = None,
          *, old_name: str = "1.6.1", new_name: str = "10.2") -> list[Row]:
    """The aligned rows of two stage lists (see the module doc), thread by thread: vCPU threads first,
    then the main loop, then the pool workers. `renames` defaults to `rename_table()` when the two
    stacks differ, and to none when both lists come from the same stack."""
    if renames is None:
        renames = rename_table() if old_name != new_name else {}
    roles = sorted({thread_role(s.thread) for s in old + new}, key=_role_key)
    rows: list[Row] = []
    for role in roles:
        a = [s for s in old if thread_role(s.thread) == role]
        b = [s for s in new if thread_role(s.thread) == role]
        i = j = 0
        for pi, pj in _lcs(a, b, renames) + [(len(a), len(b))]:
            rows += [Row("REMOVED", old=s) for s in a[i:pi]]
            rows += [Row("ADDED", new=s, shared=s.shared) for s in b[j:pj]]
            if pi < len(a):
                rows.append(_matched_row(a[pi], b[pj]))
            i, j = pi + 1, pj + 1
    rows = _pair_leftovers(rows, renames, same_thread=True, old_name=old_name)
    rows = _pair_leftovers(rows, renames, same_thread=False, old_name=old_name)
    _mark_merged(rows, old, new, renames, old_name, new_name)
    return rows


def _pair_leftovers(rows: list[Row], renames: dict, *, same_thread: bool, old_name: str) -> list[Row]:
    """Pair a stage left REMOVED with its counterpart left ADDED, in order; the pair takes the place the
    10.2 run has it. `same_thread`: the run reached it at another point than the other run did (its
    first call had another cause: 3.7 emulated the status-register IN, 6.12 takes it on the fast path),
    so it is SAME or RENAMED with a note; otherwise, on another thread: MOVED."""
    removed = [r for r in rows if r.kind == "REMOVED"]
    taken: set[int] = set()
    out: list[Row] = []
    for r in rows:
        if r.kind == "ADDED":
            for o in removed:
                if id(o) in taken or not _matches(o.old, r.new, renames) \
                        or (thread_role(o.old.thread) == thread_role(r.new.thread)) != same_thread:
                    continue
                taken.add(id(o))
                r = _matched_row(o.old, r.new)
                if same_thread:
                    r.note = f"{old_name} first reached it at another point of the run"
                break
        out.append(r)
    return [r for r in out if id(r) not in taken]


def _mark_merged(rows: list[Row], old: list[Stage], new: list[Stage], renames: dict, old_name: str,
                 new_name: str) -> None:
    """A REMOVED stage is not gone when the 10.2 run makes at least as many calls of its counterpart on
    that thread, through chains already matched: 10.2 reaches it through fewer call chains. Mark it
    `merged`, paired with the first such 10.2 stage (and the same the other way round for ADDED). A
    stage the other run calls less often stays REMOVED/ADDED (10.2's second bdrv_driver_pwritev)."""
    matched = {id(s) for r in rows if r.old is not None and r.new is not None for s in (r.old, r.new)}
    for k, r in enumerate(rows):
        if r.kind not in ("REMOVED", "ADDED"):
            continue
        s = r.old if r.kind == "REMOVED" else r.new
        role = thread_role(s.thread)
        if r.kind == "REMOVED":
            theirs = [n for n in new if thread_role(n.thread) == role and _matches(s, n, renames)]
            mine = [o for o in old if thread_role(o.thread) == role and any(_matches(o, n, renames) for n in theirs)]
        else:
            theirs = [o for o in old if thread_role(o.thread) == role and _matches(o, s, renames)]
            mine = [n for n in new if thread_role(n.thread) == role and any(_matches(o, n, renames) for o in theirs)]
        partners = [p for p in theirs if id(p) in matched]
        if partners and sum(p.count for p in theirs) >= sum(p.count for p in mine):
            pair = (s, partners[0]) if r.kind == "REMOVED" else (partners[0], s)
            other = new_name if r.kind == "REMOVED" else old_name
            rows[k] = replace(_matched_row(*pair), merged="new" if r.kind == "REMOVED" else "old",
                              note=f"{other} makes these calls through the chain listed first")


def summary(rows: Iterable[Row]) -> dict[str, int]:
    """How many rows of each kind (every kind present, zeros included)."""
    out = {k: 0 for k in KINDS}
    for r in rows:
        out[r.kind] += 1
    return out


def find(rows: Iterable[Row], name: str, kind: str | None = None) -> list[Row]:
    """The rows where either side's stage is called `name` (and of `kind`, if given)."""
    return [r for r in rows if (r.old is not None and r.old.name == name or r.new is not None
                                and r.new.name == name) and (kind is None or r.kind == kind)]


__all__ = ["KINDS", "Row", "Stage", "align", "counterparts", "find", "load_renames", "reduce_stages",
           "rename_table", "summary", "thread_role"]
