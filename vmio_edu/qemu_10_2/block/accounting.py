"""block/accounting.c (QEMU v10.2.0): the per-BlockBackend I/O statistics (query-blockstats).

Unlike 1.6.1 (which counted IDE PIO writes as reads, hw/ide/core.c:797 there), 10.2's IDE counts a write
as BLOCK_ACCT_WRITE.
"""
from __future__ import annotations

from dataclasses import dataclass, field

BLOCK_ACCT_NONE, BLOCK_ACCT_READ, BLOCK_ACCT_WRITE, BLOCK_ACCT_FLUSH = 0, 1, 2, 3


@dataclass
class BlockAcctStats:
    nr_bytes: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    nr_ops: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    failed_ops: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    invalid_ops: list[int] = field(default_factory=lambda: [0, 0, 0, 0])

    def view(self) -> dict:
        r, w = BLOCK_ACCT_READ, BLOCK_ACCT_WRITE
        return {"rd_bytes": self.nr_bytes[r], "wr_bytes": self.nr_bytes[w], "rd_operations": self.nr_ops[r],
                "wr_operations": self.nr_ops[w], "failed_rd_operations": self.failed_ops[r],
                "failed_wr_operations": self.failed_ops[w], "invalid_rd_operations": self.invalid_ops[r],
                "invalid_wr_operations": self.invalid_ops[w]}


@dataclass
class BlockAcctCookie:
    bytes: int = 0
    type: int = BLOCK_ACCT_NONE  # (QEMU also stamps the start time; the model has no clock)


def block_acct_start(stats: BlockAcctStats, cookie: BlockAcctCookie, bytes_: int, type_: int) -> None:
    cookie.bytes, cookie.type = bytes_, type_


def block_acct_done(stats: BlockAcctStats, cookie: BlockAcctCookie) -> None:
    """block_account_one_io(stats, cookie, false): count the bytes and one operation."""
    if cookie.type == BLOCK_ACCT_NONE:
        return
    stats.nr_bytes[cookie.type] += cookie.bytes
    stats.nr_ops[cookie.type] += 1
    cookie.type = BLOCK_ACCT_NONE


def block_acct_failed(stats: BlockAcctStats, cookie: BlockAcctCookie) -> None:
    if cookie.type == BLOCK_ACCT_NONE:
        return
    stats.failed_ops[cookie.type] += 1
    cookie.type = BLOCK_ACCT_NONE


def block_acct_invalid(stats: BlockAcctStats, type_: int) -> None:
    stats.invalid_ops[type_] += 1
