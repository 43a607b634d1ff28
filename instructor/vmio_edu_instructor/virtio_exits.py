"""virtio_exits: the reference, a step-by-step model of the driver and the device (the oracle), and the hidden
batches: idx wraps, ioeventfd on and off with both submit styles, completions together and apart, polling,
one request, the largest batch that fits, and sector counts that would give IDE thousands of exits.

The model, read from rzr/qemu 62ecc3a0 (v1.6.1) and tonyho/Linux-3.7-TQ2440 db95d3d8 (Linux 3.7):
* driver: virtqueue_add_buf bumps avail->idx (virtio_ring.c:282-289); virtqueue_kick_prepare with event idx asks
  vring_need_event(avail_event, new, old) (virtio_ring.c:314-345); a kick is vp_notify's iowrite16 to BAR+16
  (virtio_pci.c:200-208); vp_interrupt reads the ISR at BAR+19 (virtio_pci.c:247-265); virtblk_done reaps every
  used entry and virtqueue_enable_cb writes used_event = last_used_idx (virtio_blk.c:268-296,
  virtio_ring.c:511-532);
* device: a notify exit runs virtio_ioport_write → virtio_queue_notify → virtio_blk_handle_output, which pops
  every available request and sets avail_event to the avail idx it saw (virtio.c:440-456); with ioeventfd the
  outw is handled by KVM and never reaches QEMU; each completion runs virtqueue_push then virtio_notify, which
  asks vring_notify (virtio.c:790-811: event idx → need_event(used_event, new, signalled_used); no event idx →
  not VRING_AVAIL_F_NO_INTERRUPT) and then sets isr |= 1 and the INTx level (virtio-pci.c:112-118); the ISR read
  returns it, clears it and lowers the line (virtio-pci.c:360-364).
"""
from __future__ import annotations

from vmio_edu.grading.virtio_exits import new_batch

BODY = '''    n = batch["requests"]
    kicks = 1 if batch["submit"] == "batch" else n
    notify_exits = 0 if batch["ioeventfd"] else kicks
    if batch["mode"] == "poll":
        interrupts = 0
    elif batch["completion"] == "together":
        interrupts = 1
    else:
        interrupts = n
    isr_exits = interrupts
    idx = (batch["idx"] + n) % 65536
    return {"avail_idx": idx, "used_idx": idx, "notify_exits": notify_exits, "interrupts": interrupts,
            "isr_exits": isr_exits, "exits": notify_exits + isr_exits}
'''

M = 0xFFFF


def _need_event(event: int, new: int, old: int) -> bool:
    return ((new - event - 1) & M) < ((new - old) & M)


class Model:
    """One virtqueue between the Linux 3.7 driver and QEMU 1.6.1's virtio-blk, counted in exits to QEMU."""

    def __init__(self, b: dict) -> None:
        self.b = b
        # Linux 3.7 negotiates event idx; the poll-mode guest (as SeaBIOS) does not. `event_idx` in the batch
        # overrides that, for guests that ack no ring features (the course's virtio guest).
        self.event_idx = b.get("event_idx", b["mode"] == "interrupt")
        i = b["idx"]
        self.avail_idx = self.used_idx = self.last_avail = self.last_used = i
        self.avail_event = i            # the device popped everything: virtqueue_pop wrote its avail idx
        self.used_event = i             # the driver's last enable_cb
        self.signalled_used, self.signalled_valid = i, True
        self.no_interrupt = b["mode"] == "poll"
        self.kick_old = i               # avail idx at the last kick_prepare (old = idx - num_added)
        self.isr = self.level = 0
        self.in_flight: list[int] = []
        self.notify_exits = self.isr_exits = self.interrupts = 0

    # driver
    def add(self) -> None:
        self.avail_idx = (self.avail_idx + 1) & M

    def kick(self) -> None:
        old, new = self.kick_old, self.avail_idx
        self.kick_old = new
        needed = _need_event(self.avail_event, new, old) if self.event_idx else True  # no NO_NOTIFY in virtio-blk
        if not needed:
            return
        if not self.b["ioeventfd"]:
            self.notify_exits += 1       # KVM_EXIT_IO, outw BAR+16
        self.handle_output()             # vCPU thread, or the main loop through the eventfd

    def handler(self) -> None:
        """vp_interrupt → vp_vring_interrupt → virtblk_done, when the guest takes the interrupt."""
        if not self.level:
            return
        self.interrupts += 1
        self.isr_exits += 1              # inb BAR+19
        self.isr, self.level = 0, 0      # read-to-clear lowers the line
        self.last_used = self.used_idx  # disable_cb; virtqueue_get_buf until used->idx
        self.used_event = self.last_used  # enable_cb; nothing completes meanwhile, so it returns true

    # device
    def handle_output(self) -> None:
        while self.last_avail != self.avail_idx:
            self.in_flight.append(self.last_avail)
            self.last_avail = (self.last_avail + 1) & M
        if self.event_idx:
            self.avail_event = self.avail_idx

    def complete_one(self) -> None:
        self.in_flight.pop(0)
        self.used_idx = (self.used_idx + 1) & M   # virtqueue_push
        if self.event_idx:                          # vring_notify
            old, self.signalled_used = self.signalled_used, self.used_idx
            notify = not self.signalled_valid or _need_event(self.used_event, self.used_idx, old)
            self.signalled_valid = True
        else:
            notify = not self.no_interrupt
        if notify:
            self.isr |= 1
            self.level = 1

    def poll(self) -> None:
        self.last_used = self.used_idx

    def run(self) -> dict:
        n = self.b["requests"]
        if 3 * n > self.b["num"]:
            raise ValueError("the batch does not fit in the ring")
        for _ in range(n):
            self.add()
            if self.b["submit"] == "each":
                self.kick()
        if self.b["submit"] == "batch":
            self.kick()
        together = self.b["mode"] == "interrupt" and self.b["completion"] == "together"
        while self.in_flight:
            self.complete_one()
            if not together:
                self.handler() if self.b["mode"] == "interrupt" else self.poll()
        if together:
            self.handler()
        assert self.last_used == self.used_idx == self.avail_idx  # the driver has seen every completion
        return {"avail_idx": self.avail_idx, "used_idx": self.used_idx, "notify_exits": self.notify_exits,
                "interrupts": self.interrupts, "isr_exits": self.isr_exits,
                "exits": self.notify_exits + self.isr_exits}


def oracle(b: dict) -> dict:
    return Model(b).run()


def complete(params: dict) -> dict:
    for c in params["cases"]:
        c["want"] = oracle(c)
    return params


def hidden(r, params: dict) -> list:
    cases = [new_batch(r, requests=5, idx=0xFFFD, submit="batch", ioeventfd=False, mode="interrupt",
                       completion="together"),
             new_batch(r, requests=3, idx=0xFFFF, mode="poll", ioeventfd=False, submit="each"),
             new_batch(r, requests=1, idx=0, submit="each", ioeventfd=False, mode="interrupt", completion="apart"),
             new_batch(r, requests=42, submit="batch", ioeventfd=True, mode="interrupt", completion="apart"),
             new_batch(r, requests=42, submit="each", ioeventfd=False, mode="interrupt", completion="together",
                       sectors=256),
             new_batch(r, requests=r.randrange(2, 20), submit="each", ioeventfd=True, mode="interrupt",
                       completion="together"),
             new_batch(r, requests=r.randrange(2, 20), submit="each", ioeventfd=False, mode="poll"),
             new_batch(r, requests=r.randrange(2, 20), submit="batch", ioeventfd=True, mode="poll"),
             new_batch(r, requests=r.randrange(2, 20), submit="batch", ioeventfd=False, mode="interrupt",
                       completion="apart", sectors=r.randrange(2, 257)),
             new_batch(r, requests=r.randrange(2, 20), submit="each", ioeventfd=False, mode="interrupt",
                       completion="apart", idx=0xFFFF - r.randrange(3))]
    cases += [new_batch(r) for _ in range(20)]
    for c in cases:
        c["want"] = oracle(c)
    return cases
