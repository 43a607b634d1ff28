WRONG = [
    ("end function before the last word is stored", "end",
     [("    p = s.data_ptr\n    s.io_buffer[p:p + 2] = (val & 0xFFFF).to_bytes(2, \"little\")\n    p += 2\n"
       "    s.data_ptr = p\n    if p >= s.data_end:\n        s.end_transfer_func(s)\n",
       "    p = s.data_ptr\n    if p + 2 >= s.data_end:\n        s.data_ptr = p + 2\n        s.end_transfer_func(s)\n"
       "    s.io_buffer[p:p + 2] = (val & 0xFFFF).to_bytes(2, \"little\")\n    if p + 2 < s.data_end:\n"
       "        s.data_ptr = p + 2\n")]),
    ("data_ptr moved after the end function", "end",
     [("    s.data_ptr = p\n    if p >= s.data_end:\n        s.end_transfer_func(s)\n",
       "    if p >= s.data_end:\n        s.end_transfer_func(s)\n    s.data_ptr = p\n")]),
    ("no DRQ guard", "guard", [("if not (s.status & DRQ_STAT) or ide_is_pio_out(s):\n        return", "pass")]),
    ("no direction guard", "guard", [("if not (s.status & DRQ_STAT) or ide_is_pio_out(s):",
                                      "if not (s.status & DRQ_STAT):")]),
    ("big-endian word", "store", [('to_bytes(2, "little")', 'to_bytes(2, "big")')]),
    ("pointer moves one byte", "store", [("p += 2", "p += 1")]),
    ("end function one word late", "end", [("if p >= s.data_end:", "if p > s.data_end:")]),
    ("end function when the sector is full (512), not at data_end", "end", [("if p >= s.data_end:", "if p % 512 == 0:")]),
    ("always the master drive", "store", [("    if not (s.status & DRQ_STAT)", "    s = bus.ifs[0]\n    if not (s.status & DRQ_STAT)")]),
]
