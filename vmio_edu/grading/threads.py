"""Exercise: which QEMU thread runs each stage of the write and read path?

The oracle is a real recorded trace: the check runs the default guest (write, then read back) with
`Machine(record=True)` and takes, from `m.trace.stages()`, the thread that entered each function
(vCPU thread, main-loop thread, thread-pool workers).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from .base import Exercise, Part, PartResult, StudentError, call, fail_all, not_callable, rng, verdict
from .model import ModelUnavailable, run_default_guest

NAME = "threads"

# function -> (the thread QEMU 1.6.1 runs it on, why): the teaching text; the check uses the trace.
POOL = {
    "kvm_handle_io": ("vcpu0", "each vCPU thread handles its own exits, under the BQL, as soon as KVM_RUN returns"),
    "ide_data_writew": ("vcpu0", "a port write is emulated synchronously, inside the exit that trapped it"),
    "ide_sector_write": ("vcpu0", "the 256th ide_data_writew calls it, still inside that same exit"),
    "bdrv_aio_writev": ("vcpu0", "ide_sector_write calls it directly; submitting does not wait, so the vCPU can "
                                 "go back to the guest"),
    "bdrv_co_do_rw": ("vcpu0", "bdrv_aio_writev creates the coroutine and enters it at once, on the caller's "
                               "thread (it finishes later on the main loop)"),
    "paio_submit": ("vcpu0", "the coroutine runs on the vCPU until it yields, right after submitting"),
    "thread_pool_submit_aio": ("vcpu0", "queuing the request and posting the semaphore is quick work of the "
                                        "submitter"),
    "ide_exec_cmd": ("vcpu0", "the guest's OUT to 0x1f7 is emulated in that exit"),
    "ide_sector_read": ("vcpu0", "cmd_read_pio and the last ide_data_readw of a sector call it, in the exit"),
    "bdrv_aio_readv": ("vcpu0", "ide_sector_read submits the read from the vCPU's exit"),
    "ide_data_readw": ("vcpu0", "a port read is answered synchronously in the exit (rep insw batches them)"),
    "spawn_thread_bh_fn": ("main", "the vCPU asks the main loop to create the worker (new_thread_bh), so it "
                                   "inherits the main thread's CPU affinity"),
    "aio_worker": ("worker", "the blocking pwrite/pread runs on a thread-pool worker, with no lock held"),
    "handle_aiocb_rw": ("worker", "aio_worker calls it on the worker to do the pwrite/pread"),
    "worker_thread": ("worker", "it is the worker thread's own body"),
    "event_notifier_ready": ("main", "the worker signals an eventfd; the main loop's aio_poll sees it readable"),
    "bdrv_co_io_em_complete": ("main", "called by the pool's completion on the main loop; it re-enters the "
                                       "coroutine there"),
    "bdrv_co_em_bh": ("main", "a bottom half: bottom halves run in the main loop's aio_bh_poll"),
    "ide_sector_write_cb": ("main", "bdrv_co_em_bh calls it, so the IRQ ioctl comes from the main loop"),
    "ide_sector_read_cb": ("main", "the read's completion comes back through the same bottom half"),
    "ide_set_irq": ("main", "the completion callbacks raise IRQ 14 from the main loop"),
    "aio_bh_poll": ("main", "part of aio_poll, the main loop's dispatcher"),
}
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
    by = defaultdict(list)
    for fn, (thread, _why) in sorted(POOL.items()):
        by[thread].append(fn)
    chosen = r.sample(by["vcpu0"], 2) + r.sample(by["main"], 3) + r.sample(by["worker"], 1)
    r.shuffle(chosen)
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


INTRO = """QEMU 1.6.1 with KVM runs three kinds of thread ([cpus.c](https://github.com/qemu/qemu/blob/v1.6.1/cpus.c#L761), [main-loop.c](https://github.com/qemu/qemu/blob/v1.6.1/main-loop.c#L448), [thread-pool.c](https://github.com/qemu/qemu/blob/v1.6.1/thread-pool.c#L81)):

* **vcpu0** (`qemu_kvm_cpu_thread_fn`): `KVM_RUN`, with the big QEMU lock (BQL) dropped so the main loop
  can run meanwhile ([kvm-all.c:1642-1646](https://github.com/qemu/qemu/blob/v1.6.1/kvm-all.c#L1642-L1646)); then, with the BQL taken again, everything that happens
  *because of* an exit: the port access, the IDE device, and the submission of block requests;
* **main** (`main_loop_wait` → `aio_poll`): file-descriptor handlers (the thread pool's event notifier)
  and bottom halves;
* **worker-N** (`worker_thread`): the blocking system calls (`pwrite`, `pread`), with no lock held.

A coroutine has no thread of its own: it runs on whichever thread enters it. Try
`Machine(op="both", record=True)` and `m.trace.stages()`, which lists `(layer, thread, function)` for every
stage, to explore."""

SOLUTION = '''def thread_of(function: str) -> str:
    """The QEMU thread ("vcpu0", "main" or "worker") that enters `function` on the PIO write/read path."""
    ### BEGIN SOLUTION
    main = {"spawn_thread_bh_fn", "event_notifier_ready", "bdrv_co_io_em_complete", "bdrv_co_em_bh",
            "ide_sector_write_cb", "ide_sector_read_cb", "ide_set_irq", "aio_bh_poll", "aio_poll"}
    worker = {"worker_thread", "aio_worker", "handle_aiocb_rw", "handle_aiocb_rw_linear"}
    if function in main:
        return "main"
    if function in worker:
        return "worker"
    return "vcpu0"
    ### END SOLUTION
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


def check(answer: Any, params: dict, parts: list[str] | None = None, hidden: bool = False) -> list[PartResult]:
    problem_ = not_callable(answer, EXERCISE.answer)
    if problem_:
        return fail_all(EXERCISE, parts, problem_)
    try:
        seen = recorded_threads(params)
    except ModelUnavailable as e:
        return fail_all(EXERCISE, parts, f"not graded: the model cannot run here ({e})")
    functions = list(params["functions"]) + (sorted(set(POOL) - set(params["functions"])) if hidden else [])
    fails: dict[str, list[str]] = {p.name: [] for p in PARTS}
    totals = {p.name: 0 for p in PARTS}
    for fn in functions:
        threads = seen.get(fn)
        if not threads:
            continue  # not on this run's path (the model changed): nothing to compare with
        part = CATEGORY.get(sorted(threads)[0], "on_vcpu") if len(threads) == 1 else CATEGORY[POOL[fn][0]]
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
            fails[part].append(f"{fn} runs on {real} in the recorded trace, not {name}: {POOL[fn][1]}")
    return [verdict(p, fails[p.name], totals[p.name]) for p in PARTS if parts is None or p.name in parts]


EXERCISE = Exercise(
    name=NAME, title="Which thread runs it?",
    goal="Place every stage of a disk write and read on the QEMU thread that runs it (vCPU, main loop, pool "
         "worker), and see where the handovers are: the thread pool's submit and its event notifier.",
    answer="thread_of", parts=PARTS, make=make, problem=problem, check=check, solution=SOLUTION,
    intro=INTRO, uses_model=True)
