"""util/ (QEMU v10.2.0): the event loop (async.c, aio-posix.c, main-loop.c), the thread pool, coroutines,
threads and I/O vectors. In 1.6.1 several of these sat at the top of the tree (async.c, aio-posix.c,
main-loop.c, thread-pool.c, qemu-coroutine.c)."""
