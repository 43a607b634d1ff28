"""handle_io: the loop, and hidden exits: 4-byte OUT, a 256-word IN (rep insw), count 0, odd sizes."""
from vmio_edu.grading.handle_io import random_unit_case

BODY = '''    ptr = data_offset
    for _ in range(count):
        if direction == KVM_EXIT_IO_IN:
            value = {1: cpu_inb, 2: cpu_inw, 4: cpu_inl}[size](port)
            cpu.kvm_run_mem[ptr:ptr + size] = value.to_bytes(size, "little")
        else:
            value = int.from_bytes(cpu.kvm_run_mem[ptr:ptr + size], "little")
            {1: cpu_outb, 2: cpu_outw, 4: cpu_outl}[size](port, value)
        ptr += size
'''


def hidden(r, params: dict) -> list:
    edge = [{"direction": "out", "size": 4, "count": 1, "port": 0xCFC, "data": r.randbytes(4).hex()},
            {"direction": "in", "size": 2, "count": 256, "port": 0x1F0,
             "answers": [r.getrandbits(16) for _ in range(256)]},
            {"direction": "out", "size": 1, "count": 0, "port": 0x80, "data": ""},
            {"direction": "out", "size": 2, "count": 7, "port": 0x1F0, "data": r.randbytes(14).hex()},
            {"direction": "in", "size": 4, "count": 3, "port": 0xCFC, "answers": [r.getrandbits(32) for _ in range(3)]},
            {"direction": "in", "size": 1, "count": 5, "port": 0x3F8, "answers": [r.getrandbits(8) for _ in range(5)]}]
    return edge + [random_unit_case(r) for _ in range(10)]
