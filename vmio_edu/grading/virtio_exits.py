"""Exercise: predict the ring indices, the exits to QEMU and the interrupts of a batch of virtio-blk requests.

Scope (the problem text states it for the student): QEMU 1.6.1 virtio-blk-pci with the legacy I/O BAR, MSI-X
off (INTx, so Linux 3.7's `vp_interrupt` reads the ISR), the in-kernel irqchip, VIRTIO_RING_F_EVENT_IDX
negotiated in interrupt mode; counted from the first request's `virtqueue_add_buf` until the driver has
handled the last completion. Only KVM_EXIT_IO exits that reach QEMU count: the notify `outw` to BAR+16 (none
with ioeventfd, where KVM signals an eventfd in the kernel) and the ISR `inb` at BAR+19 (read-to-clear, one
per interrupt the guest takes). HLT, timer and EOI exits are handled inside KVM.

The expected values of the student's own cases come from `expected` (the rules in INTRO); the graded cases
carry the values of the instructor's step-by-step model of the driver and the device.
"""
from __future__ import annotations

from typing import Any

from .base import Exercise, Part, PartResult, StudentError, call, fail_all, not_callable, rng, verdict

NAME = "virtio_exits"
KEYS = ("avail_idx", "used_idx", "notify_exits", "interrupts", "isr_exits", "exits")


def expected(b: dict) -> dict:
    """The answer for one batch, from the rules in INTRO (the self-check's reference)."""
    n = b["requests"]
    kicks = {"batch": 1, "each": n}[b["submit"]]
    notify = kicks * (not b["ioeventfd"])
    irqs = {"poll": 0, "together": 1, "apart": n}[b["completion"] if b["mode"] == "interrupt" else "poll"]
    idx = (b["idx"] + n) & 0xFFFF
    return dict(zip(KEYS, (idx, idx, notify, irqs, irqs, notify + irqs)))


def new_batch(r, requests: int | None = None, submit: str | None = None, ioeventfd: bool | None = None,
              mode: str | None = None, completion: str | None = None, idx: int | None = None,
              op: str | None = None, sectors: int | None = None) -> dict:
    num = 128  # QEMU 1.6.1 virtio-blk's queue size (hw/block/virtio-blk.c:710)
    requests = requests or r.choice((1, 2, 3, 4, 8, r.randrange(2, num // 3 + 1)))
    mode = mode or r.choice(("interrupt", "interrupt", "poll"))
    if idx is None:
        idx = r.choice((r.randrange(1 << 16), r.randrange(1 << 16), 0xFFFF - r.randrange(requests + 2), 0))
    return {"requests": requests, "sectors": sectors or r.choice((1, 8, 64, 128, r.randrange(1, 257))),
            "op": op or r.choice(("write", "read")), "submit": submit or r.choice(("batch", "each")),
            "ioeventfd": r.random() < 0.5 if ioeventfd is None else ioeventfd, "mode": mode,
            "completion": (completion or r.choice(("together", "apart"))) if mode == "interrupt" else "apart",
            "idx": idx, "num": num}


def make(seed: int) -> dict:
    r = rng(NAME, seed)
    cases = [new_batch(r, requests=r.randrange(3, 9), submit="batch", ioeventfd=False, mode="interrupt",
                       completion="together", sectors=r.choice((8, 64, 128))),
             new_batch(r, requests=r.randrange(2, 9), submit="each", ioeventfd=True, mode="interrupt",
                       completion="apart"),
             new_batch(r, mode="poll", idx=0xFFFF - r.randrange(2)),
             new_batch(r)]
    return {"seed": seed, "cases": cases}


def _row(i: int, b: dict) -> str:
    completion = b["completion"] if b["mode"] == "interrupt" else "-"
    return (f"| {i + 1} | {b['requests']} × {b['op']} of {b['sectors']} sector(s) | {b['submit']} | "
            f"{'on' if b['ioeventfd'] else 'off'} | {b['mode']} | {completion} | {b['idx']} |")


def problem(p: dict) -> str:
    rows = "\n".join(_row(i, b) for i, b in enumerate(p["cases"]))
    return f"""**Your batches** (seed {p['seed']}). The queue (128 entries) is idle: `avail->idx` and `used->idx` are
both `idx`, and every earlier request has been handled. Each request is one chain (header, one data descriptor,
status), and every batch fits in the ring.

| # | requests | submit | ioeventfd | mode | completions | idx |
|---|---|---|---|---|---|---|
{rows}

Write `predict(batch)`; `batch` is a dict with the keys `requests`, `sectors`, `op`, `submit`, `ioeventfd`,
`mode`, `completion`, `idx` and `num`. Return a dict with
* `avail_idx`, `used_idx`: the two ring indices once the last completion has been handled,
* `notify_exits`: KVM_EXIT_IO exits for the notify register (BAR+16),
* `interrupts`: the interrupts the guest takes from the device,
* `isr_exits`: KVM_EXIT_IO exits for the ISR register (BAR+19),
* `exits`: all exits to QEMU (userspace) in the scope below."""


INTRO = """**Scope.** QEMU 1.6.1 `-device virtio-blk-pci` on KVM with the in-kernel irqchip, the legacy I/O BAR, and
MSI-X off (`vectors=0`), so Linux 3.7's `vp_find_vqs` falls back to INTx and `vp_interrupt`. Count from the
first request's `virtqueue_add_buf` until the driver has handled the last completion. Only exits that reach
QEMU (`KVM_RUN` returning with `KVM_EXIT_IO`) count. The PCI probe and queue setup come before this and are
not counted. HLT, timer and interrupt-acknowledge (EOI) exits are handled inside KVM and do not count either.
The data itself never causes an exit: the device reads it from guest RAM.

* **submit**: `batch` adds every request, then calls `virtqueue_kick` once, as `virtblk_request` does
  ([drivers/block/virtio_blk.c:379-400](https://github.com/torvalds/linux/blob/v3.7/drivers/block/virtio_blk.c#L379-L400)). `each` kicks after every add, as `virtblk_add_req` does on the bio path
  ([virtio_blk.c:130-144](https://github.com/torvalds/linux/blob/v3.7/drivers/block/virtio_blk.c#L130-L144)). A kick that `virtqueue_kick_prepare` lets through calls `vp_notify`: one `outw` of the
  queue index to `VIRTIO_PCI_QUEUE_NOTIFY`, BAR+16 ([drivers/virtio/virtio_pci.c:200-208](https://github.com/torvalds/linux/blob/v3.7/drivers/virtio/virtio_pci.c#L200-L208)).
  With event idx, the device is idle at the first kick and, with ioeventfd off, it pops every request inside
  each notify exit (`virtio_blk_handle_output`, [hw/block/virtio-blk.c:394-416](https://github.com/qemu/qemu/blob/v1.6.1/hw/block/virtio-blk.c#L394-L416)), so every kick is let through.
  (With ioeventfd on, the main loop may still be behind when the next kick comes, and `vring_need_event`
  may then skip it; that changes no count here, since none of those kicks exits to QEMU.)
* **ioeventfd** (on by default in 1.6.1, [hw/virtio/virtio-pci.c:1039-1040](https://github.com/qemu/qemu/blob/v1.6.1/hw/virtio/virtio-pci.c#L1039-L1040)): QEMU registers the notify port
  with `KVM_IOEVENTFD` once the driver sets DRIVER_OK ([virtio-pci.c:289-298](https://github.com/qemu/qemu/blob/v1.6.1/hw/virtio/virtio-pci.c#L289-L298)). The guest's `outw` is then handled
  inside KVM (`ioeventfd_write` → `eventfd_signal`), and QEMU's main loop runs `virtio_queue_host_notifier_read`
  ([hw/virtio/virtio.c:1112-1118](https://github.com/qemu/qemu/blob/v1.6.1/hw/virtio/virtio.c#L1112-L1118)): no exit to QEMU. Without it, each notify is a `KVM_EXIT_IO` that reaches
  `virtio_ioport_write` ([virtio-pci.c:284-288](https://github.com/qemu/qemu/blob/v1.6.1/hw/virtio/virtio-pci.c#L284-L288)) on the vCPU thread.
* **mode** `interrupt`: each completion runs `virtqueue_push` and `virtio_notify`, which sets ISR bit 0 and
  raises the INTx line ([hw/virtio/virtio.c:813-822](https://github.com/qemu/qemu/blob/v1.6.1/hw/virtio/virtio.c#L813-L822), [virtio-pci.c:112-118](https://github.com/qemu/qemu/blob/v1.6.1/hw/virtio/virtio-pci.c#L112-L118)). For every interrupt it takes,
  the guest runs `vp_interrupt`, which reads the ISR with one `inb` at BAR+19
  ([drivers/virtio/virtio_pci.c:247-265](https://github.com/torvalds/linux/blob/v3.7/drivers/virtio/virtio_pci.c#L247-L265)). The read returns the ISR, clears it and lowers the line
  ([virtio-pci.c:360-364](https://github.com/qemu/qemu/blob/v1.6.1/hw/virtio/virtio-pci.c#L360-L364)). Then `virtblk_done` reaps every used entry and points `used_event` at its
  `last_used_idx` ([virtio_ring.c:511-532](https://github.com/torvalds/linux/blob/v3.7/drivers/virtio/virtio_ring.c#L511-L532)).
  * completions `together`: the whole batch is pushed before the guest's handler runs. The line is level
    triggered and already high, and with event idx `vring_notify` ([virtio.c:790-811](https://github.com/qemu/qemu/blob/v1.6.1/hw/virtio/virtio.c#L790-L811)) suppresses the
    later notifies anyway: **one** interrupt for the batch.
  * completions `apart`: each completion is handled before the next one is pushed: one interrupt each.
* **mode** `poll`: as SeaBIOS does, the guest sets `VRING_AVAIL_F_NO_INTERRUPT`, negotiates neither event idx
  nor NOTIFY_ON_EMPTY, and spins on `used->idx` in guest RAM. `vring_notify` then says no: the ISR stays 0,
  the line stays low, and the guest never reads the ISR.
* `avail->idx` and `used->idx` count requests (one chain each, not sectors or descriptors). They are
  free-running u16s that wrap from 65535 to 0."""

TEMPLATE = '''def predict(batch: dict) -> dict:
    """Ring indices, exits to QEMU and interrupts of one batch of virtio-blk requests (QEMU 1.6.1, Linux 3.7)."""
    # YOUR CODE HERE
    raise NotImplementedError()
'''

PARTS = (
    Part("indices", 1, "avail->idx and used->idx after the batch: one per request, u16 wraparound"),
    Part("notify", 1, "notify exits: one outw per kick, none with ioeventfd"),
    Part("interrupts", 1, "interrupts and ISR reads: INTx level, completions together or apart, polling"),
    Part("exits", 1, "all exits to QEMU in scope"),
)
PART_KEYS = {"indices": ("avail_idx", "used_idx"), "notify": ("notify_exits",),
             "interrupts": ("interrupts", "isr_exits"), "exits": ("exits",)}
WHY = {"avail_idx": "one avail entry per request, idx + requests as a u16",
       "used_idx": "one used entry per completed request, idx + requests as a u16",
       "notify_exits": "one outw to BAR+16 per kick (batch: one kick; each: one per request); with ioeventfd "
                       "KVM handles it in the kernel; sectors do not matter",
       "interrupts": "poll: none; together: the level-triggered line is raised once for the batch; apart: one "
                     "per completion",
       "isr_exits": "vp_interrupt reads the ISR (inb at BAR+19) once per interrupt",
       "exits": "notify exits + ISR exits; the data moves through guest RAM without exits"}


def _label(b: dict) -> str:
    return (f"{b['requests']} {b['op']}(s) of {b['sectors']} sector(s), submit={b['submit']}, "
            f"ioeventfd={'on' if b['ioeventfd'] else 'off'}, mode={b['mode']}"
            + (f", completions {b['completion']}" if b["mode"] == "interrupt" else "") + f", idx={b['idx']}")


def check(answer: Any, params: dict, parts: list[str] | None = None, hidden: list | None = None) -> list[PartResult]:
    problem_ = not_callable(answer, EXERCISE.answer)
    if problem_:
        return fail_all(EXERCISE, parts, problem_)
    cases = list(params["cases"]) + list(hidden or [])
    fails: dict[str, list[str]] = {p.name: [] for p in PARTS}
    for c in cases:
        b = {k: v for k, v in c.items() if k != "want"}
        want = c["want"] if "want" in c else expected(b)
        label = _label(b)
        try:
            got = call(answer, dict(b))
        except StudentError as e:
            got = f"your function raised {e}"
        if not isinstance(got, dict):
            why = got if isinstance(got, str) else f"expected a dict with {', '.join(KEYS)}, got {type(got).__name__}"
            for k in fails:
                fails[k].append(f"{label}: {why}")
            continue
        for part, keys in PART_KEYS.items():
            wrong = [k for k in keys if not (type(got.get(k)) is int and got.get(k) == want[k])]
            if wrong:
                k = wrong[0]
                fails[part].append(f"{label}: {k} should be {want[k]}, you returned {got.get(k)!r:.40}; {WHY[k]}")
    return [verdict(p, fails[p.name], len(cases)) for p in PARTS if parts is None or p.name in parts]


EXERCISE = Exercise(
    name=NAME, title="Exits and interrupts of a virtio-blk batch",
    goal="Count what a batch of virtio-blk requests costs on QEMU 1.6.1 + Linux 3.7: the ring indices it moves, "
         "the notify exits (and why ioeventfd removes them), the interrupts and ISR reads, and see why the number "
         "of sectors does not matter, where IDE PIO pays 256 exits per sector.",
    answer="predict", parts=PARTS, make=make, problem=problem, check=check, template=TEMPLATE,
    intro=INTRO, pure=True)
