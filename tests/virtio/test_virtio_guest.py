"""The virtio guest's host side: parameters checked with clear errors, a memory map that fits."""
import mmap

import pytest

from vmio_edu.errors import VmioError
from vmio_edu.guest import LAYOUT, virtio_guest


@pytest.fixture
def ram():
    m = mmap.mmap(-1, 2 << 20)
    yield m
    m.close()


@pytest.mark.parametrize("kw,message", [
    (dict(op="identify"), "unknown op 'identify'"),
    (dict(op=True), "op must be a name or a request type"),
    (dict(op=-1), "not a u32"),
    (dict(sectors=257), "sectors must be 1..256"),
    (dict(lba=1 << 32), "does not fit"),
    (dict(per_request=300), "per_request must be 0..256"),
    (dict(depth=-1), "depth must be 0..256"),
    (dict(fault="nope"), "unknown fault"),
])
def test_bad_parameters_are_named(ram, kw, message):
    with pytest.raises(VmioError, match=message):
        virtio_guest().write_params(ram, **kw)


def test_the_memory_map_fits_and_does_not_overlap():
    s = virtio_guest().symbols
    code_end = s["CODE"] + len(virtio_guest().code)
    regions = [("code", s["CODE"], code_end), ("params", s["PARAMS"], s["PARAMS"] + 0x30),
               ("result", s["RESULT"], s["RESULT"] + 4 * s["RESULT_DWORDS"]), ("driver", s["DRV"], s["DRV"] + 0x38),
               ("idt", s["IDT_BASE"], s["IDT_BASE"] + 256 * 16),
               ("buffer", s["BUFFER"], s["BUFFER2"]), ("buffer2", s["BUFFER2"], s["BUFFER2"] + 256 * 512),
               ("vring", s["VRING"], s["VRING"] + s["VRING_BYTES"]),
               ("headers", s["HDRS"], s["HDRS"] + 16 * s["MAX_SLOTS"]),
               ("status", s["STATUS"], s["STATUS"] + 16 * s["MAX_SLOTS"]),
               ("indirect", s["INDIRECT"], s["INDIRECT"] + 48 * s["MAX_SLOTS"]),
               ("loader tables", LAYOUT.gdt, LAYOUT.end)]
    regions.sort(key=lambda r: r[1])
    for (a, a0, a1), (b, b0, b1) in zip(regions, regions[1:]):
        assert a1 <= b0, f"{a} [{a0:#x}, {a1:#x}) overlaps {b} at {b0:#x}"
    assert s["VRING"] % 4096 == 0  # QUEUE_PFN holds the page number
    assert s["PARAMS"] + s["P_FAULT"] + 4 <= s["RESULT"]


def test_params_land_where_the_guest_reads_them(ram):
    g = virtio_guest()
    g.write_params(ram, op="write", lba=7, sectors=9, polling=True, per_request=2, depth=3,
                   fault="loop", indirect=True, data=b"\x5a" * 512)
    s = g.symbols

    def u32(off):
        return int.from_bytes(ram[s["PARAMS"] + off:s["PARAMS"] + off + 4], "little")
    assert (u32(s["P_OP"]), u32(s["P_LBA"]), u32(s["P_COUNT"])) == (s["OP_WRITE"], 7, 9)
    assert u32(s["P_FLAGS"]) == s["FLAG_POLLING"] | s["FLAG_INDIRECT"]
    assert (u32(s["P_PER_REQ"]), u32(s["P_DEPTH"]), u32(s["P_FAULT"])) == (2, 3, s["FAULT_LOOP"])
    assert ram[s["BUFFER"]:s["BUFFER"] + 512] == b"\x5a" * 512
