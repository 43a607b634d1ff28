"""QEMU v10.2.0, the same I/O path as `vmio_edu.qemu` (QEMU 1.6.1) under today's names.

This package is a map of QEMU 10.2's source tree (read from pderwin/qemu-10.2.0, commit
8f22a9affdc511c3e2a49828a6a4e3dc2c099e12, whose VERSION is 10.2.0): `accel/kvm/kvm-all.c` is
`accel/kvm/kvm_all.py`, `system/physmem.c` is `system/physmem.py`, `block/block-backend.c` is
`block/block_backend.py`, and so on. Every modelled function carries its 10.2 name and file:line
(`vmio_edu/trace/sources_modern.json`, plus source-map.json's `modern` members).

What a reader of the 2013 path finds changed on the way from `rep outsw` to `pwrite`:

* The vCPU thread (`kvm_vcpu_thread_fn`, accel/kvm/kvm-accel-ops.c) runs `kvm_cpu_exec`, which drops the
  BQL once and handles KVM_EXIT_IO *without* it; the memory core takes the BQL around each device access
  (`prepare_mmio_access`), so `bql_lock`/`bql_unlock` run once per word of a `rep outsw`.
* `kvm_handle_io` calls `address_space_rw` directly (no `cpu_outw`), and the memory API goes through a
  FlatView: `address_space_write` → `flatview_write` → `flatview_write_continue` →
  `flatview_write_continue_step` → `memory_region_dispatch_write` (no `io_mem_write`).
* IDE calls the byte-based BlockBackend API: `blk_aio_pwritev(blk, sector_num << 9, qiov, 0, cb, s)`.
* The block layer has two generic layers per node (`bdrv_co_pwritev_part` → `bdrv_aligned_pwritev` →
  `bdrv_driver_pwritev`), once for the raw *format* node and again for the *file* node; the file node's
  driver (block/file-posix.c) submits to the thread pool *from the coroutine* (`raw_co_prw` →
  `raw_thread_pool_submit` → `thread_pool_submit_co`) and yields.
* A pool worker runs `handle_aiocb_rw` (no `aio_worker`), then schedules the pool's completion bottom half
  (no event notifier of its own); the main loop's `thread_pool_completion_bh` → `thread_pool_co_cb` →
  `aio_co_wake` re-enters the coroutine, which returns through `blk_aio_complete` → `ide_sector_write_cb`
  → `ide_bus_set_irq`.

Code that did not change between the versions is shared visibly with `vmio_edu.trace.stacks.unchanged`
(each use names both sources). Stack-neutral machinery (the scheduler, the engines, the recorder, the
debugger) is vmio-edu's own and used as is.
"""
