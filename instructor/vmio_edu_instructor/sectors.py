"""sectors: the plan, and hidden register sets: both drives, count 0 (= 256), LBA 0 and the last 28-bit LBA,
every byte of the LBA non-zero, bits 7 and 5 of select clear and set."""
from vmio_edu.grading.sectors import SELECTS, new_case, random_case

BODY = '''    lba = regs["sector"] | regs["lcyl"] << 8 | regs["hcyl"] << 16 | (regs["select"] & 0x0F) << 24
    n = regs["nsector"] or 256
    requests = [(lba + i, 1) for i in range(n)]
    pwrites = [(sector_num * 512, nb * 512) for sector_num, nb in requests]
    return {"lba": lba, "requests": requests, "pwrites": pwrites}
'''


def hidden(r, params: dict) -> list:
    edge = [new_case(0, 1, 0xE0), new_case((1 << 28) - 1, 1, 0xF0), new_case(5, 0, 0xE0),
            new_case(0x0ABCDEF, 255, 0x50), new_case(0x1000000, 2, 0x40), new_case(0x0F0F0F0, 0, 0xF0),
            new_case(r.randrange(1 << 24, 1 << 28), r.randrange(2, 200), 0xF0),
            new_case(r.randrange(1 << 24, 1 << 28), r.randrange(2, 200), 0x50)]
    return edge + [random_case(r) for _ in range(16)] + [new_case(r.randrange(1 << 28), 0, r.choice(SELECTS))]
