"""Issue 2, end to end: a pattern travels guest → ... → pwrite into the image, and back by pread."""
import pytest

from vmio_edu import Machine
from vmio_edu.machine import SECTOR


@pytest.mark.parametrize("lba,sectors", [(0, 1), (7, 3)])
def test_write_lands_exactly_and_nothing_else_changes(lba, sectors):
    with Machine(op="write", lba=lba, sectors=sectors, seed=lba) as m:
        m.run()
        assert m.halted
        for s, data in m.expected_sectors().items():
            assert m.image_bytes(s) == data
        assert m.image_changes() == list(range(lba, lba + sectors))
        r = m.guest_result()
        assert r["error"] == 0 and r["sectors_done"] == sectors


def test_read_back_puts_the_same_bytes_in_guest_memory():
    with Machine(op="both", lba=3, sectors=2, seed=11) as m:
        m.run()
        r = m.guest_result()
        assert r["read_back"] == m.pattern[:2 * SECTOR]
        assert m.image_bytes(3, 2) == m.pattern[:2 * SECTOR]


def test_exit_counts_per_sector_follow_real_kvm():
    n = 2
    with Machine(op="both", lba=1, sectors=n) as m:
        m.run()
        data_out = [x for x in m.exits if x.reason == "IO" and x.port == 0x1F0 and x.direction == "out"]
        data_in = [x for x in m.exits if x.reason == "IO" and x.port == 0x1F0 and x.direction == "in"]
        # rep outsw: one exit per word, count 1; rep insw: one exit per 512-byte sector, count 256
        assert len(data_out) == 256 * n and all(x.count == 1 and x.size == 2 for x in data_out)
        assert [x.count for x in data_in] == [256] * n
        # the words sent are the pattern, in order
        sent = bytes.fromhex("".join(x.data for x in data_out))
        assert sent == m.pattern[:n * SECTOR]
        assert bytes.fromhex("".join(x.data for x in data_in)) == m.pattern[:n * SECTOR]
        # PIC ports are handled in the kernel and never reach QEMU
        assert not [x for x in m.exits if x.port in (0x20, 0x21, 0xA0, 0xA1)]
        assert m.exits[-1].reason == "HLT"


def test_guest_polls_bsy_before_completion():
    with Machine(op="write", lba=0, sectors=1, polling=True) as m:
        m.run()
        statuses = [int(x.data, 16) for x in m.exits
                    if x.reason == "IO" and x.direction == "in" and x.port in (0x1F7, 0x3F6)]
        assert 0x58 in statuses  # DRQ after the command
        last_drq = len(statuses) - 1 - statuses[::-1].index(0x58)
        after = statuses[last_drq + 1:]
        assert after[0] == 0xD0  # BSY while the thread pool writes
        assert after[-1] == 0x50  # done
