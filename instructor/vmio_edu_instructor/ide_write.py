"""ide_write: the handler, and hidden windows: one word, odd offsets, both drives, full sectors."""
from vmio_edu.grading.ide_write import random_window

BODY = '''    if not (s.status & DRQ_STAT) or ide_is_pio_out(s):
        return
    p = s.data_ptr
    s.io_buffer[p:p + 2] = (val & 0xFFFF).to_bytes(2, "little")
    p += 2
    s.data_ptr = p
    if p >= s.data_end:
        s.end_transfer_func(s)
'''


def hidden(r, params: dict) -> list:
    one = dict(random_window(r), start=0, size=2, words=[0xBEEF ^ r.getrandbits(8)], unit=1)
    full = dict(random_window(r), start=0, size=512, unit=1)
    full["words"] = [r.getrandbits(16) for _ in range(256)]
    small = dict(random_window(r), start=2 * r.randrange(1, 200), size=6, unit=0)
    small["words"] = [r.getrandbits(16) for _ in range(3)]
    rest = [dict(random_window(r), unit=r.randrange(2)) for _ in range(3)]
    for w in rest:
        if len(w["words"]) < 2:
            w.update(size=4, words=[r.getrandbits(16) for _ in range(2)])
    return [one, full, small] + rest
