"""threads: the answer key (function -> the thread QEMU 1.6.1 runs it on, and why). The check compares with
a recorded trace; the key gives the feedback its reason and asks about every function of the path."""

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

BODY = '''    main = {"spawn_thread_bh_fn", "event_notifier_ready", "bdrv_co_io_em_complete", "bdrv_co_em_bh",
            "ide_sector_write_cb", "ide_sector_read_cb", "ide_set_irq", "aio_bh_poll", "aio_poll"}
    worker = {"worker_thread", "aio_worker", "handle_aiocb_rw", "handle_aiocb_rw_linear"}
    if function in main:
        return "main"
    if function in worker:
        return "worker"
    return "vcpu0"
'''


def hidden(r, params: dict) -> list:
    return [{"function": fn, "thread": thread, "why": why} for fn, (thread, why) in sorted(POOL.items())]
