WRONG = [
    ("everything on the vCPU", "on_main", "def thread_of(function):\n    return 'vcpu0'\n"),
    ("callbacks on a worker", "on_main", "def thread_of(function):\n    return 'worker' if 'cb' in function else 'vcpu0'\n"),
    ("block layer on the main loop", "on_vcpu",
     "def thread_of(function):\n"
     "    if function.startswith(('bdrv', 'paio', 'thread_pool')):\n        return 'main'\n"
     "    if function in ('aio_worker', 'handle_aiocb_rw', 'worker_thread'):\n        return 'worker'\n"
     "    if function.endswith('_cb') or function in ('aio_bh_poll', 'event_notifier_ready', 'ide_set_irq',\n"
     "                                                'spawn_thread_bh_fn'):\n        return 'main'\n"
     "    return 'vcpu0'\n"),
    ("anything with aio on a worker", "on_main",
     "def thread_of(function):\n    if 'aio' in function or function == 'worker_thread':\n        return 'worker'\n"
     "    if function.endswith('_cb') or function.startswith(('bdrv_co_e', 'event', 'spawn', 'ide_set')):\n"
     "        return 'main'\n    return 'vcpu0'\n"),
    ("not a thread name", "on_vcpu", "def thread_of(function):\n    return 'cpu1'\n"),
]
