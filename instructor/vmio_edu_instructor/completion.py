"""completion: the fixed coroutine, and hidden runs: other LBAs and sector counts for the write and the read."""

BODY = '''    if not acb.is_write:
        acb.req.error = yield from bdrv_co_do_readv(bs, acb.req.sector, acb.req.nb_sectors, acb.req.qiov,
                                                    acb.req.flags)
    else:
        acb.req.error = yield from bdrv_co_do_writev(bs, acb.req.sector, acb.req.nb_sectors, acb.req.qiov,
                                                     acb.req.flags)
    acb.bh = qemu_bh_new(bdrv_co_em_bh, acb)
    qemu_bh_schedule(acb.bh)
'''


def hidden(r, params: dict) -> list:
    return [{"write": {"lba": r.randrange(1, 1800), "sectors": r.choice((2, 3, 4)), "pattern": r.randrange(1 << 16)},
             "read": {"lba": r.randrange(1, 1800), "sectors": r.choice((2, 3)), "pattern": r.randrange(1 << 16)}}]
