"""Guest programs that ship with vmio-edu, and the host's side of their parameter and result blocks.

The default guest (`asm/default_guest.s`) is an ATA PIO driver in libata's order. The host writes a
parameter block before the start and reads a result block after the final `hlt`. Their addresses and
field offsets are defined once, by the `.equ` lines of the assembly source, and read from there: the
constants below are parsed from the file, so the Python side cannot drift from the guest.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from importlib import resources

from ..errors import VmioError
from .assembler import assemble

__all__ = [
    "GuestProgram", "DefaultGuest", "GuestParams", "GuestResult", "default_guest", "parse_equ", "OP_NAMES",
    "OP_WRITE", "OP_READ", "OP_WRITE_READ", "OP_IDENTIFY", "OP_RAW", "FLAG_POLLING",
    "PARAMS_ADDR", "RESULT_ADDR", "IDT_ADDR", "BUFFER_ADDR", "BUFFER2_ADDR", "DONE_MAGIC", "NO_VECTOR",
    "OUTCOME_OK", "OUTCOME_DEVICE_ERROR", "OUTCOME_PROTOCOL", "OUTCOME_BAD_PARAMS",
]

_EQU_LINE = re.compile(r"^\s*\.equ\s+([A-Za-z_]\w*)\s*,\s*(0x[0-9a-fA-F]+|\d+)\s*(?:#.*)?$", re.M)


def parse_equ(source: str) -> dict[str, int]:
    """The numeric `.equ NAME, value` definitions of an assembly source, in source order."""
    return {name: int(value, 0) for name, value in _EQU_LINE.findall(source)}


@dataclass(frozen=True)
class GuestProgram:
    """An assembly program and where it goes: load it at `load_addr`, start at `entry` in `mode`."""

    name: str
    source: str
    mode: int
    load_addr: int
    entry: int
    symbols: dict[str, int] = field(default_factory=dict)  # the source's .equ constants

    def assemble(self) -> bytes:
        return assemble(self.source, self.mode, self.load_addr)

    @property
    def code(self) -> bytes:
        """The machine code (assembled once, then served from the assembler's cache)."""
        return self.assemble()

    @property
    def load(self) -> int:
        """Alias of `load_addr`."""
        return self.load_addr


def _read_default_source() -> str:
    return resources.files(__package__).joinpath("asm/default_guest.s").read_text(encoding="ascii")


_DEFAULT_SOURCE = _read_default_source()
_SYM = parse_equ(_DEFAULT_SOURCE)

# Addresses (guest-physical) of the default guest's blocks and buffers.
LOAD_ADDR = _SYM["CODE"]
PARAMS_ADDR = _SYM["PARAMS"]
RESULT_ADDR = _SYM["RESULT"]
IDT_ADDR = _SYM["IDT_BASE"]
BUFFER_ADDR = _SYM["BUFFER"]
BUFFER2_ADDR = _SYM["BUFFER2"]

OP_WRITE, OP_READ, OP_WRITE_READ = _SYM["OP_WRITE"], _SYM["OP_READ"], _SYM["OP_WRITE_READ"]
OP_IDENTIFY, OP_RAW = _SYM["OP_IDENTIFY"], _SYM["OP_RAW"]
FLAG_POLLING = _SYM["FLAG_POLLING"]
DONE_MAGIC, NO_VECTOR, VECTOR_OTHER = _SYM["DONE_MAGIC"], _SYM["NO_VECTOR"], _SYM["VECTOR_OTHER"]
OUTCOME_OK, OUTCOME_DEVICE_ERROR = _SYM["OUTCOME_OK"], _SYM["OUTCOME_DEVICE_ERROR"]
OUTCOME_PROTOCOL, OUTCOME_BAD_PARAMS = _SYM["OUTCOME_PROTOCOL"], _SYM["OUTCOME_BAD_PARAMS"]
IRQ14_VECTOR = _SYM["IRQ14_VECTOR"]


OP_NAMES = {"write": OP_WRITE, "read": OP_READ, "both": OP_WRITE_READ, "identify": OP_IDENTIFY}


@dataclass(frozen=True)
class DefaultGuest(GuestProgram):
    """The default guest, plus the host's side of its parameter and result blocks."""

    params_addr = PARAMS_ADDR      # class constants (not dataclass fields): where the blocks live
    result_addr = RESULT_ADDR
    buffer_addr = BUFFER_ADDR
    buffer2_addr = BUFFER2_ADDR

    def write_params(self, ram, op: "str | int" = "both", lba: int = 0, sectors: int = 1,
                     polling: bool = False, data: bytes | None = None) -> GuestParams:
        """Fill the parameter block (and the data buffer with `data`) before the start.

        op: "write", "read", "both" (write then read back into the second buffer), "identify", or an
        int: a raw ATA command byte sent with no data phase. `sectors` is 1..256 (0 also means 256).
        """
        if isinstance(op, bool) or not isinstance(op, (str, int)):
            raise VmioError(f"op must be a name or a command byte, not {op!r}")
        if isinstance(op, str):
            if op not in OP_NAMES:
                raise VmioError(f"unknown op {op!r}: choose one of {', '.join(OP_NAMES)} or a command byte")
            params = GuestParams(op=OP_NAMES[op])
        else:
            if not 0 <= op <= 0xFF:
                raise VmioError(f"raw ATA command {op!r} is not a byte")
            params = GuestParams(op=OP_RAW, command=op)
        for name, v in (("sectors", sectors), ("lba", lba)):
            if isinstance(v, bool):  # an int to Python: sectors=True would mean 1
                raise VmioError(f"{name} must be an integer, not the bool {v!r} (True is not taken for 1)")
        if not isinstance(sectors, int) or not 0 <= sectors <= 256:
            raise VmioError(f"sectors must be 1..256 (0 means 256), not {sectors!r}")
        if not isinstance(lba, int) or not 0 <= lba < 1 << 28:
            raise VmioError(f"lba {lba!r} does not fit the 28-bit LBA the driver uses")
        params.lba, params.count, params.polling = lba, sectors, bool(polling)
        if data is not None:
            if len(data) > BUFFER2_ADDR - BUFFER_ADDR:
                raise VmioError(f"{len(data)} bytes of data do not fit the {BUFFER2_ADDR - BUFFER_ADDR} "
                                f"byte buffer at {BUFFER_ADDR:#x}")
            ram[BUFFER_ADDR:BUFFER_ADDR + len(data)] = bytes(data)
        params.write(ram)
        return params

    def read_result(self, ram) -> dict:
        """The result block as a dict, plus `read_back`: the bytes a read-type op put in guest memory.

        Keys: done, status, error, irqs, sectors_done (all sectors moved, a write-read counts both
        directions), vector, irq_status, outcome, and read_back for read / both / identify.
        """
        r = GuestResult.read(ram)
        out = {"done": r.done, "status": r.status, "error": r.error, "irqs": r.irqs,
               "sectors_done": r.sectors, "vector": r.vector, "irq_status": r.irq_status,
               "outcome": r.outcome}
        op, count, buf, buf2 = _read_params(ram)
        n = (count & 0xFF) or 256
        where = {OP_READ: (buf, n), OP_WRITE_READ: (buf2, n), OP_IDENTIFY: (buf, 1)}.get(op)
        if where is not None:
            addr, n = where
            out["read_back"] = bytes(ram[addr:addr + n * 512])
        return out


def _read_params(ram) -> tuple[int, int, int, int]:
    raw = bytes(ram[PARAMS_ADDR:PARAMS_ADDR + _SYM["P_COMMAND"] + 4])
    op, count = (struct.unpack_from("<I", raw, _SYM[k])[0] for k in ("P_OP", "P_COUNT"))
    buf, buf2 = (struct.unpack_from("<Q", raw, _SYM[k])[0] for k in ("P_BUFFER", "P_BUFFER2"))
    return op, count, buf, buf2


def default_guest() -> DefaultGuest:
    """The x86-64 ATA PIO driver (write / read / write+read back / identify / raw command)."""
    return DefaultGuest(name="default_guest", source=_DEFAULT_SOURCE, mode=64, load_addr=LOAD_ADDR,
                        entry=LOAD_ADDR, symbols=dict(_SYM))


@dataclass
class GuestParams:
    """The default guest's parameter block, as the host fills it in before the start."""

    op: int = OP_WRITE
    lba: int = 0
    count: int = 1                      # 1..256; 0 also means 256
    polling: bool = False               # True: nIEN set, the driver polls instead of taking IRQ 14
    buffer: int = BUFFER_ADDR
    buffer2: int = BUFFER2_ADDR
    command: int = 0                    # the raw command byte for OP_RAW

    def pack(self) -> bytes:
        out = bytearray(_SYM["P_COMMAND"] + 4)
        struct.pack_into("<I", out, _SYM["P_OP"], self.op)
        struct.pack_into("<I", out, _SYM["P_LBA"], self.lba)
        struct.pack_into("<I", out, _SYM["P_COUNT"], self.count)
        struct.pack_into("<I", out, _SYM["P_FLAGS"], FLAG_POLLING if self.polling else 0)
        struct.pack_into("<Q", out, _SYM["P_BUFFER"], self.buffer)
        struct.pack_into("<Q", out, _SYM["P_BUFFER2"], self.buffer2)
        struct.pack_into("<I", out, _SYM["P_COMMAND"], self.command)
        return bytes(out)

    def write(self, ram) -> None:
        """Store the block at PARAMS_ADDR in guest RAM."""
        data = self.pack()
        ram[PARAMS_ADDR:PARAMS_ADDR + len(data)] = data


@dataclass
class GuestResult:
    """The default guest's result block, as the host reads it after the guest halted."""

    done: bool           # the program reached its end (DONE_MAGIC written)
    status: int          # last ATA status the driver saw
    error: int           # ATA error register (read when status had ERR)
    irqs: int            # IRQ 14 interrupts the handler took
    sectors: int         # sectors moved through the data port
    vector: int          # last unexpected vector, NO_VECTOR (0xff) for none, 0xfe for one >= 0x30
    irq_status: int      # status read by the IRQ handler
    outcome: int         # OUTCOME_OK / _DEVICE_ERROR / _PROTOCOL / _BAD_PARAMS

    SIZE = _SYM["R_OUTCOME"] + 4

    @classmethod
    def unpack(cls, raw: bytes) -> "GuestResult":
        def u32(name: str) -> int:
            return struct.unpack_from("<I", raw, _SYM[name])[0]

        return cls(done=u32("R_DONE") == DONE_MAGIC, status=u32("R_STATUS"), error=u32("R_ERROR"),
                   irqs=u32("R_IRQS"), sectors=u32("R_SECTORS"), vector=u32("R_VECTOR"),
                   irq_status=u32("R_IRQ_STATUS"), outcome=u32("R_OUTCOME"))

    @classmethod
    def read(cls, ram) -> "GuestResult":
        """Read the block at RESULT_ADDR from guest RAM."""
        return cls.unpack(bytes(ram[RESULT_ADDR:RESULT_ADDR + cls.SIZE]))
