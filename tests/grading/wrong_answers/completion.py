from vmio_edu.grading.completion import BUGGY

_IMPORTS = ("from vmio_edu.qemu.async_ import qemu_bh_schedule\n"
            "from vmio_edu.qemu.block import bdrv_co_do_readv, bdrv_co_do_writev, bdrv_co_em_bh\n"
            "from vmio_edu.qemu.main_loop import qemu_bh_new\n\n\n")
WRONG = [
    ("bug: bottom half before the request", "after_io", _IMPORTS + BUGGY["early"]),
    ("bug: direct callback", "bottom_half", _IMPORTS + BUGGY["direct"]),
    ("bug: bottom half and direct callback", "once", _IMPORTS + BUGGY["double"]),
    ("dropped result", "once", [("acb.req.error = yield from bdrv_co_do_readv", "yield from bdrv_co_do_readv"),
                                ("acb.req.error = yield from bdrv_co_do_writev", "yield from bdrv_co_do_writev")]),
    ("every request a write", "reads", [("    if not acb.is_write:\n", "    if False:\n")]),
    ("reads completed before the pread", "after_io",
     [("    if not acb.is_write:\n        acb.req.error",
       "    if not acb.is_write:\n        acb.bh = qemu_bh_new(bdrv_co_em_bh, acb)\n        qemu_bh_schedule(acb.bh)\n"
       "        acb.req.error"),
      ("    acb.bh = qemu_bh_new(bdrv_co_em_bh, acb)\n    qemu_bh_schedule(acb.bh)\n",
       "    if acb.is_write:\n        acb.bh = qemu_bh_new(bdrv_co_em_bh, acb)\n        qemu_bh_schedule(acb.bh)\n")]),
    ("flipped error sign", "once", [("acb.req.error = yield from bdrv_co_do_writev(",
                                     "acb.req.error = -1 * (yield from bdrv_co_do_writev("),
                                    ("acb.req.flags)\n    acb.bh", "acb.req.flags))\n    acb.bh")]),
    ("no completion at all", "after_io", _IMPORTS + "def bdrv_co_do_rw(acb):\n    bs = acb.bs\n"
     "    if not acb.is_write:\n        acb.req.error = yield from bdrv_co_do_readv(bs, acb.req.sector, "
     "acb.req.nb_sectors, acb.req.qiov, acb.req.flags)\n    else:\n        acb.req.error = yield from "
     "bdrv_co_do_writev(bs, acb.req.sector, acb.req.nb_sectors, acb.req.qiov, acb.req.flags)\n"),
    ("completes without doing the request", "once", _IMPORTS + "def bdrv_co_do_rw(acb):\n    acb.req.error = 0\n"
     "    acb.bh = qemu_bh_new(bdrv_co_em_bh, acb)\n    qemu_bh_schedule(acb.bh)\n    yield from ()\n"),
    ("success reported for every request", "once", [("    acb.bh = qemu_bh_new(bdrv_co_em_bh, acb)\n",
                                                     "    acb.req.error = 0\n    acb.bh = qemu_bh_new(bdrv_co_em_bh, acb)\n")]),
]
