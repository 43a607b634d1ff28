"""kvm_run: the decoder, and hidden exits: every flag of the header set, MMIO above 4 GiB, 8-byte MMIO
writes, string IN/OUT with many elements (counts past 255), ports past 255."""
from vmio_edu.grading.kvm_run import case

BODY = '''    import struct
    out = {"exit_reason": struct.unpack_from("<I", mem, 8)[0]}
    if out["exit_reason"] == 2:  # KVM_EXIT_IO
        direction, size, port, count, data_offset = struct.unpack_from("<BBHIQ", mem, 32)
        out.update(direction="in" if direction == 0 else "out", size=size, port=port, count=count,
                   data_offset=data_offset)
        out["values"] = None if direction == 0 else [
            int.from_bytes(mem[data_offset + i * size:data_offset + (i + 1) * size], "little")
            for i in range(count)]
    elif out["exit_reason"] == 6:  # KVM_EXIT_MMIO
        phys_addr, = struct.unpack_from("<Q", mem, 32)
        length, is_write = struct.unpack_from("<IB", mem, 48)
        out.update(phys_addr=phys_addr, len=length, is_write=bool(is_write))
        out["values"] = [int.from_bytes(mem[40:40 + length], "little")] if is_write else None
    return out
'''


def hidden(r, params: dict) -> list:
    big = 0x1_0000_0000
    edge = [case(r, "out", busy_header=True, size=2, count=256, port=0x1F0),
            case(r, "out", busy_header=True, size=4, count=3, port=0xCFC),
            case(r, "in", busy_header=True, size=2, count=512, port=0x1F0),
            case(r, "out", busy_header=True, size=1, count=1, port=0x80),
            case(r, "mmio", busy_header=True, phys_addr=big + r.randrange(1 << 24) * 8, len=8, is_write=True),
            case(r, "mmio", busy_header=True, phys_addr=0xFE_0000_0000 + r.randrange(1 << 16) * 4, len=4,
                 is_write=False),
            case(r, "mmio", busy_header=True, phys_addr=0xFEBF0010, len=2, is_write=True)]
    return edge + [case(r) for _ in range(12)]
