"""The Linux 6.12 model against the exit streams recorded on this project's real /dev/kvm (kvm_pvm, AMD,
6.18; tests/fixtures/kvm_streams.json). Runs everywhere, with or without /dev/kvm.

Every case agrees exit by exit on everything the recording has (reason, direction, size, port, count,
data, RCX, MMIO address and direction) and on RIP, except at a plain OUT, where the recording is exactly one
instruction further: the named difference `out_rip` (vmio_edu.kvm.differences). The mid-page
`rep ins` cases, where Linux 3.7 differs from the recording, agree with 6.12 batch for batch.
"""
from __future__ import annotations

import dataclasses

import pytest

import kvm_streams as S
from vmio_edu import Machine
from vmio_edu.cpu.decode import DecodeError, decode_io
from vmio_edu.kvm.host_facts import MODELS, host_facts
from vmio_edu.kvm.differences import BY_NAME
from vmio_edu.stacks import STACKS

DOC = S.load()
CASES = S.cases()
STACK = dataclasses.replace(STACKS["1.6.1"], kernel="vmio_edu.linux_6_12.virt.kvm.kvm_main:open_emulated_kvm")


def _run(case: dict) -> tuple[list[dict], list[int]]:
    """The case's exits on the 6.12 model, and per exit the length of the plain OUT at its RIP (0 if none)."""
    kw = {k: v for k, v in case.items() if k not in ("guest", "page_split")}
    g = case.get("guest")
    guest = g() if callable(g) else S._string_io(*g) if g else None
    with Machine(guest, engine="unicorn", stack=STACK, **kw) as m:
        m.run()
        exits = [x.to_json() for x in m.exits]
        lens = []
        for x in m.exits:
            n = 0
            if x.reason == "IO" and x.direction == "out":
                try:
                    io = decode_io(bytes(m.ram[x.rip:x.rip + 15]), m.mode)
                    n = 0 if io.string else io.length
                except DecodeError:
                    n = 0
            lens.append(n)
    return exits, lens


def test_the_6_12_model_has_6_12_facts_and_the_recording_host_differs_only_in_out_rip():
    assert dict(host_facts("unicorn", STACK)) == MODELS["10.2"]
    differ = {k for k in DOC["facts"] if DOC["facts"][k] != MODELS["10.2"][k]}
    assert differ == {"plain_out_rip"} and DOC["recorded"]["kvm_module"] == "kvm_pvm"
    assert BY_NAME["out_rip"].kvm_pvm_differs_from_6_12


@pytest.mark.parametrize("name", sorted(CASES))
def test_6_12_model_matches_the_recorded_kvm_pvm_stream_but_for_out_rip(name):
    emu, lens = _run(CASES[name])
    real = DOC["cases"][name]
    assert len(emu) == len(real), f"{name}: {len(emu)} exits on the 6.12 model, {len(real)} recorded"
    shifted = 0
    for i, (x, y, n) in enumerate(zip(emu, real, lens)):
        xs = {k: v for k, v in x.items() if k != "rip"}
        ys = {k: v for k, v in y.items() if k != "rip"}
        assert xs == ys, f"{name} exit {i}: {xs} (6.12 model) vs {ys} (recorded)"
        if x.get("rip") != y.get("rip"):
            assert n and y["rip"] == x["rip"] + n, f"{name} exit {i}: RIP {x.get('rip')} vs {y.get('rip')}"
            shifted += 1
    assert shifted == sum(1 for n in lens if n)  # every plain OUT, and nothing else
