"""Exercise: which QEMU thread runs each stage of the write and read path?

The oracle is a real recorded trace: the check runs the default guest (write, then read back) with
`Machine(record=True)` and takes, from `m.trace.stages()`, the thread that entered each function
(semantics.md (g): vCPU thread, main-loop thread, thread-pool workers).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from .base import Exercise, Part, PartResult, StudentError, call, fail_all, not_callable, rng, verdict
from .model import ModelUnavailable, run_default_guest

NAME = "threads"

# The functions asked about (the answer key, with why, is instructor material; the check uses the trace).
FUNCTIONS = ("aio_bh_poll", "aio_worker", "bdrv_aio_readv", "bdrv_aio_writev", "bdrv_co_do_rw", "bdrv_co_em_bh",
             "bdrv_co_io_em_complete", "event_notifier_ready", "handle_aiocb_rw", "ide_data_readw",
             "ide_data_writew", "ide_exec_cmd", "ide_sector_read", "ide_sector_read_cb", "ide_sector_write",
             "ide_sector_write_cb", "ide_set_irq", "kvm_handle_io", "paio_submit", "spawn_thread_bh_fn",
             "thread_pool_submit_aio", "worker_thread")
CATEGORY = {"vcpu0": "on_vcpu", "main": "on_main", "worker": "on_worker"}


def normalize(answer: Any) -> str | None:
    """Accept the usual ways to name a thread: vcpu0 / vCPU, main / main loop / iothread, worker-N."""
    if not isinstance(answer, str):
        return None
    a = answer.strip().lower().replace("_", "-").replace(" ", "-")
    if a.startswith("vcpu") or a in ("cpu", "cpu0", "vcpu-thread"):
        return "vcpu0"
    if a.startswith("main") or a in ("iothread", "io-thread"):
        return "main"
    if a.startswith("worker") or a.startswith("pool") or a.startswith("thread-pool"):
        return "worker"
    return None


def make(seed: int) -> dict:
    r = rng(NAME, seed)
    chosen = r.sample(FUNCTIONS, 7)
    return {"seed": seed, "functions": chosen, "lba": r.randrange(1, 1900), "pattern": r.randrange(1 << 16)}


def problem(p: dict) -> str:
    rows = "\n".join(f"| `{fn}` |" for fn in p["functions"])
    return f"""**Your stages** (seed {p['seed']}). The default guest writes one sector at LBA {p['lba']} and reads it
back. On which QEMU thread does each of these functions start?

| function |
|---|
{rows}

Write `thread_of(function)` returning `"vcpu0"`, `"main"` or `"worker"` (any `worker-N` of the thread
pool). The grader records the real trace (`Machine(record=True)`) and compares; hidden tests ask about
more functions of the path."""


INTRO = """QEMU 1.6.1 with KVM runs (semantics.md (g)):

* **vcpu0** (`qemu_kvm_cpu_thread_fn`): `KVM_RUN`, and everything that happens *because of* an exit, under
  the big QEMU lock: the port access, the IDE device, and the submission of block requests;
* **main** (`main_loop_wait` → `aio_poll`): file-descriptor handlers (the thread pool's event notifier)
  and bottom halves;
* **worker-N** (`worker_thread`): the blocking system calls (`pwrite`, `pread`), with no lock held.

A coroutine has no thread of its own: it runs on whichever thread enters it. Try
`Machine(op="both", record=True)` and `m.trace.stages()`, which lists `(layer, thread, function)` for every
stage, to explore."""

TEMPLATE = '''def thread_of(function: str) -> str:
    """The QEMU thread ("vcpu0", "main" or "worker") that enters `function` on the PIO write/read path."""
    # YOUR CODE HERE
    raise NotImplementedError()
'''

PARTS = (
    Part("on_vcpu", 1, "stages run by the vCPU thread"),
    Part("on_main", 2, "stages run by the main loop"),
    Part("on_worker", 1, "stages run by a thread-pool worker"),
)


def recorded_threads(p: dict) -> dict[str, set[str]]:
    """function -> the threads that entered it, in a recorded write + read back run."""
    run = run_default_guest("both", p["lba"], 1, seed=p["pattern"], record=True)
    if not run.ok:
        raise ModelUnavailable(f"the reference run failed: {run.error}")
    seen: dict[str, set[str]] = defaultdict(set)
    for layer, thread, fn in run.stages:
        if layer.startswith("qemu"):
            seen[fn].add("worker" if thread.startswith("worker") else thread)
    return seen


def check(answer: Any, params: dict, parts: list[str] | None = None, hidden: list | None = None) -> list[PartResult]:
    problem_ = not_callable(answer, EXERCISE.answer)
    if problem_:
        return fail_all(EXERCISE, parts, problem_)
    try:
        seen = recorded_threads(params)
    except ModelUnavailable as e:
        return fail_all(EXERCISE, parts, f"not graded: the model cannot run here ({e})")
    # hidden: [{"function": name, "why": text}] from the instructor material
    why = {h["function"]: h.get("why", "") for h in hidden or []}
    category = {h["function"]: CATEGORY.get(h.get("thread", "")) for h in hidden or []}
    functions = list(params["functions"]) + [h["function"] for h in hidden or [] if h["function"] not in
                                             params["functions"]]
    fails: dict[str, list[str]] = {p.name: [] for p in PARTS}
    totals = {p.name: 0 for p in PARTS}
    for fn in functions:
        threads = seen.get(fn)
        if not threads:
            continue  # not on this run's path (the model changed): nothing to compare with
        part = category.get(fn) or CATEGORY.get(sorted(threads)[0], "on_vcpu")
        if parts is not None and part not in parts:
            continue  # only ask what the requested parts need (a loop in one answer spares the others)
        totals[part] += 1
        try:
            got = call(answer, fn)
        except StudentError as e:
            fails[part].append(f"{fn}: your function raised {e}")
            continue
        name = normalize(got)
        if name is None:
            fails[part].append(f"{fn}: {got!r} is not a thread name; answer vcpu0, main or worker")
        elif name not in threads:
            real = " or ".join(sorted(threads))
            fails[part].append(f"{fn} runs on {real} in the recorded trace, not {name}" +
                               (f": {why[fn]}" if why.get(fn) else ""))
    return [verdict(p, fails[p.name], totals[p.name]) for p in PARTS if parts is None or p.name in parts]


EXERCISE = Exercise(
    name=NAME, title="Which thread runs it?",
    goal="Place every stage of a disk write and read on the QEMU thread that runs it (vCPU, main loop, pool "
         "worker), and see where the handovers are: the thread pool's submit and its event notifier.",
    answer="thread_of", parts=PARTS, make=make, problem=problem, check=check, template=TEMPLATE,
    intro=INTRO, uses_model=True, pure=True)
