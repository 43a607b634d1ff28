WRONG = [
    ("counts the notify exit with ioeventfd on", "notify", [('notify_exits = 0 if batch["ioeventfd"] else kicks',
                                                            "notify_exits = kicks")]),
    ("one notify exit per sector instead of per kick", "notify", [(
        'notify_exits = 0 if batch["ioeventfd"] else kicks',
        'notify_exits = 0 if batch["ioeventfd"] else kicks * batch["sectors"]')]),
    ("256 exits per sector, as IDE PIO", "exits", [('"exits": notify_exits + isr_exits}',
                                                    '"exits": 256 * batch["sectors"] * n}')]),
    ("one kick per request in a batch", "notify", [('kicks = 1 if batch["submit"] == "batch" else n', "kicks = n")]),
    ("forgets the ISR read", "interrupts", [("isr_exits = interrupts", "isr_exits = 0")]),
    ("ISR read and clear counted as two exits", "interrupts", [("isr_exits = interrupts", "isr_exits = 2 * interrupts")]),
    ("total without the ISR reads", "exits", [('"exits": notify_exits + isr_exits}', '"exits": notify_exits}')]),
    ("one interrupt per request even when they complete together", "interrupts", [(
        '    elif batch["completion"] == "together":\n        interrupts = 1\n', "")]),
    ("interrupts while polling", "interrupts", [('    if batch["mode"] == "poll":\n        interrupts = 0\n    elif',
                                                 "    if")]),
    ("used idx does not wrap at 65536", "indices", [('idx = (batch["idx"] + n) % 65536', 'idx = batch["idx"] + n')]),
    ("idx counts from 0, not from the ring's index", "indices", [('idx = (batch["idx"] + n) % 65536',
                                                                  "idx = n % 65536")]),
    ("idx counts descriptors, not requests", "indices", [('idx = (batch["idx"] + n) % 65536',
                                                          'idx = (batch["idx"] + 3 * n) % 65536')]),
]
