"""What this host's KVM does where kernels differ on the I/O path, detected, never assumed.

The emulated engine follows Linux 3.7 (`MODEL`). A real /dev/kvm runs the host's kernel, which may differ
on two points userspace can see; each is found by running a tiny guest on the engine:

* `plain_out_rip`: at the exit of a plain `out dx, al`, RIP is "past" the instruction (3.7's handle_io
  skips it before kvm_fast_pio_out exits, vmx.c:4386-4410) or "at" it;
* `rep_ins_page_batch`: a `rep insw` of 256 words from page offset 0xf00 exits as 128 + 128 ("page-end":
  3.7 stops a batch at the page end, emulate.c:1286-1296) or as one exit of 256 ("bytes-as-elements":
  newer kernels count the room to the page end in bytes and use it as an element count).

`vmio-edu compare` names a difference found here as a property of the host, not of the model.
"""
from __future__ import annotations

from functools import lru_cache

MODEL = {"plain_out_rip": "past", "rep_ins_page_batch": "page-end"}  # Linux 3.7, as the emulated engine
# The emulated kernel of each stack (vmio_edu.stacks): Linux 3.7, or Linux 6.12 (vmio_edu.kvm.differences)
MODELS = {"1.6.1": MODEL, "10.2": {"plain_out_rip": "at", "rep_ins_page_batch": "bytes-as-elements"}}
WHAT = {
    ("plain_out_rip", "at"): "RIP is still at a plain OUT when it exits to userspace",
    ("plain_out_rip", "past"): "RIP is already past a plain OUT when it exits to userspace",
    ("rep_ins_page_batch", "page-end"): "a rep ins batch starting mid-page stops at the page end",
    ("rep_ins_page_batch", "bytes-as-elements"): "a rep ins batch starting mid-page runs past the page end "
                                                 "(the room to it counted in bytes, used as elements)",
}


@lru_cache(maxsize=None)
def host_facts(engine: str = "kvm", stack: str = "1.6.1") -> tuple[tuple[str, str], ...]:
    """The two facts on `engine` ("kvm": this host's kernel; "unicorn": the model of `stack`'s kernel), as
    sorted pairs."""
    from ..guest import assemble
    from ..machine import Machine
    pre = "mov dx, 0x1f0\nmov al, 0x5a"
    at = 0x1000 + len(assemble(pre, mode=16))
    with Machine(assemble(pre + "\nout dx, al\ncli\nhlt", mode=16), engine=engine, mode=16, stack=stack) as m:
        m.run()
        rip = next(x.rip for x in m.exits if x.reason == "IO" and x.port == 0x1F0)
    code = assemble("mov ax, 0x3000\nmov es, ax\ncld\nmov dx, 0x300\nmov cx, 256\nmov di, 0xf00\nrep insw\n"
                    "cli\nhlt", mode=16)
    with Machine(code, engine=engine, mode=16, stack=stack) as m:
        m.run()
        counts = tuple(x.count for x in m.exits if x.reason == "IO" and x.port == 0x300)
    return tuple(sorted({
        "plain_out_rip": "past" if rip == at + 1 else "at" if rip == at else f"rip {rip:#x}",
        "rep_ins_page_batch": {(128, 128): "page-end", (256,): "bytes-as-elements"}.get(counts, f"counts {counts}"),
    }.items()))


def host_properties(engine: str = "kvm", stack: str = "1.6.1") -> dict[str, str]:
    """The facts where `engine` differs from the model of `stack`'s kernel, each with a sentence saying what
    the host does."""
    model = MODELS["10.2" if str(stack) in ("10.2", "10.2.0", "10", "modern") else "1.6.1"]
    return {k: WHAT.get((k, v), f"{k} = {v}") for k, v in host_facts(engine) if model[k] != v}
