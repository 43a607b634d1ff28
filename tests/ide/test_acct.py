"""Block accounting as IDE does it in QEMU 1.6.1 (hw/ide/core.c at the tag): ide_sector_read starts a
BDRV_ACCT_READ of n*512 bytes (core.c:561) and ide_sector_read_cb ends it (core.c:510); ide_sector_write
starts one too, also as BDRV_ACCT_READ (core.c:797, a real 1.6.1 bug), and ide_sector_write_cb ends it
(core.c:735). So after a PIO write of k sectors, rd_bytes = 512*k, rd_ops = k, wr_* = 0."""
import pytest

from vmio_edu import Machine
from vmio_edu.trace.views import block_view


@pytest.mark.parametrize("op,sectors,reads", [("write", 2, 2), ("read", 3, 3), ("both", 1, 2)])
def test_pio_accounting_counts_every_sector_as_a_read(op, sectors, reads):
    with Machine(op=op, lba=5, sectors=sectors, engine="unicorn") as m:
        m.run()
        v = m.bs.view()
        b = block_view(m)
    per_sector = {"write": sectors, "read": sectors, "both": 2 * sectors}[op]
    assert reads == per_sector
    assert (v["rd_ops"], v["rd_bytes"]) == (per_sector, per_sector * 512)
    assert (v["wr_ops"], v["wr_bytes"]) == (0, 0)
    assert "core.c:797" in b["accounting_note"] and "BDRV_ACCT_READ" in b["accounting_note"]
