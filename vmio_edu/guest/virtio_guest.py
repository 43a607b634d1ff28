"""The virtio guest (`asm/virtio_guest.s`): a virtio-blk driver in Linux 3.7's order, and the host's side
of its parameter and result blocks. Offsets come from the source's `.equ` lines, as for the default guest.

It finds virtio-blk-pci by PCI config reads, sets up one queue, and moves `sectors` sectors at `lba` as
requests of `per_request` sectors, `depth` of them published per kick; it takes the INTx interrupt, or
with `polling=True` keeps interrupts off and spins on the used ring as SeaBIOS does.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from importlib import resources

from ..errors import VmioError
from .programs import GuestProgram, parse_equ

_SOURCE = resources.files(__package__).joinpath("asm/virtio_guest.s").read_text(encoding="ascii")
_SYM = parse_equ(_SOURCE)

PARAMS_ADDR, RESULT_ADDR = _SYM["PARAMS"], _SYM["RESULT"]
BUFFER_ADDR, BUFFER2_ADDR = _SYM["BUFFER"], _SYM["BUFFER2"]
VRING_ADDR, HDRS_ADDR, STATUS_ADDR = _SYM["VRING"], _SYM["HDRS"], _SYM["STATUS"]
OP_NAMES = {"write": _SYM["OP_WRITE"], "read": _SYM["OP_READ"], "both": _SYM["OP_WRITE_READ"]}
OP_RAW = _SYM["OP_RAW"]
FAULTS = {None: _SYM["FAULT_NONE"], "desc_out_of_ram": _SYM["FAULT_DESC_OUT_OF_RAM"],
          "loop": _SYM["FAULT_LOOP"], "bad_head": _SYM["FAULT_BAD_HEAD"],
          "zero_len": _SYM["FAULT_ZERO_LEN"]}
DONE_MAGIC = _SYM["DONE_MAGIC"]
OUTCOME_OK, OUTCOME_DEVICE_ERROR = _SYM["OUTCOME_OK"], _SYM["OUTCOME_DEVICE_ERROR"]
OUTCOME_PROTOCOL, OUTCOME_BAD_PARAMS = _SYM["OUTCOME_PROTOCOL"], _SYM["OUTCOME_BAD_PARAMS"]
OUTCOME_READ_ONLY = _SYM["OUTCOME_READ_ONLY"]  # a write refused: the device offered VIRTIO_BLK_F_RO
VIRTIO_VECTOR = _SYM["VIRTIO_VECTOR"]
MAX_SECTORS = (BUFFER2_ADDR - BUFFER_ADDR) // 512


@dataclass(frozen=True)
class VirtioGuest(GuestProgram):
    """The virtio-blk guest plus the host's side of its blocks (the same interface as DefaultGuest)."""

    params_addr = PARAMS_ADDR
    result_addr = RESULT_ADDR
    buffer_addr = BUFFER_ADDR
    buffer2_addr = BUFFER2_ADDR

    def write_params(self, ram, op: "str | int" = "both", lba: int = 0, sectors: int = 1,
                     polling: bool = False, data: bytes | None = None, per_request: int = 0,
                     depth: int = 0, fault: str | None = None, indirect: bool = False) -> None:
        """Fill the parameter block (and the data buffer) before the start.

        op: "write", "read", "both" (write, then read back into the second buffer), or an int: one request
        of that virtio_blk_outhdr.type (a bad type, say). sectors 1..256 (0 = 256); per_request: sectors per
        request (0 = one request for all); depth: requests published per kick (0 = as many as the queue
        holds); fault: None, "desc_out_of_ram", "loop", "bad_head" or "zero_len" (break every request on purpose);
        indirect: take VIRTIO_RING_F_INDIRECT_DESC, so each request is one ring descriptor pointing at a
        table of its three (as Linux 3.7 does with QEMU; interrupt mode only).
        """
        if isinstance(op, bool) or not isinstance(op, (str, int)):
            raise VmioError(f"op must be a name or a request type, not {op!r}")
        if isinstance(op, str):
            if op not in OP_NAMES:
                raise VmioError(f"unknown op {op!r} for the virtio guest: choose one of {', '.join(OP_NAMES)} "
                                "or a virtio-blk request type (an int)")
            code, command = OP_NAMES[op], 0
        else:
            if not 0 <= op <= 0xFFFFFFFF:
                raise VmioError(f"request type {op!r} is not a u32")
            code, command = OP_RAW, op
        for name, v in (("sectors", sectors), ("lba", lba), ("per_request", per_request), ("depth", depth)):
            if isinstance(v, bool):  # an int to Python: depth=True would mean 1
                raise VmioError(f"{name} must be an integer, not the bool {v!r} (True is not taken for 1)")
        if not isinstance(sectors, int) or not 0 <= sectors <= MAX_SECTORS:
            raise VmioError(f"sectors must be 1..{MAX_SECTORS} (0 means 256), not {sectors!r}")
        if not isinstance(lba, int) or not 0 <= lba < 1 << 32:
            raise VmioError(f"lba {lba!r} does not fit the driver's 32-bit sector number")
        for name, v in (("per_request", per_request), ("depth", depth)):
            if not isinstance(v, int) or not 0 <= v <= 256:
                raise VmioError(f"{name} must be 0..256, not {v!r}")
        if fault not in FAULTS:
            raise VmioError(f"unknown fault {fault!r}: choose one of {', '.join(k for k in FAULTS if k)}")
        if data is not None:
            if len(data) > BUFFER2_ADDR - BUFFER_ADDR:
                raise VmioError(f"{len(data)} bytes of data do not fit the buffer at {BUFFER_ADDR:#x}")
            ram[BUFFER_ADDR:BUFFER_ADDR + len(data)] = bytes(data)
        block = bytearray(_SYM["P_FAULT"] + 4)
        flags = (_SYM["FLAG_POLLING"] if polling else 0) | (_SYM["FLAG_INDIRECT"] if indirect else 0)
        for key, val in (("P_OP", code), ("P_LBA", lba), ("P_COUNT", sectors), ("P_FLAGS", flags),
                         ("P_COMMAND", command),
                         ("P_PER_REQ", per_request), ("P_DEPTH", depth), ("P_FAULT", FAULTS[fault])):
            struct.pack_into("<I", block, _SYM[key], val)
        struct.pack_into("<QQ", block, _SYM["P_BUFFER"], BUFFER_ADDR, BUFFER2_ADDR)
        ram[PARAMS_ADDR:PARAMS_ADDR + len(block)] = bytes(block)

    def read_result(self, ram) -> dict:
        """The result block: done, status (first bad status byte), error (requests that failed), irqs,
        sectors_done, vector, irq_status (the ISR value last read), outcome, requests, kicks, capacity,
        features, irq_line, iobase, bar_size, seg_max, blk_size, opt_io_size, wce (the config fields the driver
        read), read_only (1: the device offered VIRTIO_BLK_F_RO, so a write is refused with outcome
        OUTCOME_READ_ONLY and never sent; a raw op=1 request still goes); read_back for read/both."""
        raw = bytes(ram[RESULT_ADDR:RESULT_ADDR + 4 * _SYM["RESULT_DWORDS"]])

        def u32(name: str) -> int:
            return struct.unpack_from("<I", raw, _SYM[name])[0]

        out = {"done": u32("R_DONE") == DONE_MAGIC, "status": u32("R_STATUS"), "error": u32("R_ERROR"),
               "irqs": u32("R_IRQS"), "sectors_done": u32("R_SECTORS"), "vector": u32("R_VECTOR"),
               "irq_status": u32("R_IRQ_STATUS"), "outcome": u32("R_OUTCOME"), "requests": u32("R_REQUESTS"),
               "kicks": u32("R_KICKS"), "capacity": struct.unpack_from("<Q", raw, _SYM["R_CAPACITY"])[0],
               "features": u32("R_FEATURES"), "irq_line": u32("R_IRQ_LINE"), "iobase": u32("R_IOBASE"),
               "bar_size": u32("R_BAR_SIZE"), "seg_max": u32("R_SEG_MAX"), "blk_size": u32("R_BLK_SIZE"),
               "opt_io_size": u32("R_OPT_IO_SIZE"), "wce": u32("R_WCE"), "read_only": u32("R_READ_ONLY")}
        p = bytes(ram[PARAMS_ADDR:PARAMS_ADDR + _SYM["P_FAULT"] + 4])
        op, count = (struct.unpack_from("<I", p, _SYM[k])[0] for k in ("P_OP", "P_COUNT"))
        n = (count & 0x1FF) or 256
        where = {OP_NAMES["read"]: BUFFER_ADDR, OP_NAMES["both"]: BUFFER2_ADDR}.get(op)
        if where is not None:
            out["read_back"] = bytes(ram[where:where + n * 512])
        return out


def virtio_guest() -> VirtioGuest:
    """The x86-64 virtio-blk driver (write / read / write+read back / one raw request)."""
    return VirtioGuest(name="virtio_guest", source=_SOURCE, mode=64, load_addr=_SYM["CODE"],
                       entry=_SYM["CODE"], symbols=dict(_SYM))
