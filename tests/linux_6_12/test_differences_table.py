"""`vmio_edu.kvm.differences` holds measured values, not prose: each entry's probe, run on the Linux 3.7 and
Linux 6.12 models, gives the table's value, and the table compares values. (The real host's column is
measured in test_kvm_pvm_vs_6_12.py, where /dev/kvm opens.)"""
from __future__ import annotations

import dataclasses

import pytest

from vmio_edu.errors import VmioError
from vmio_edu.kvm.differences import BY_NAME, DIFFERENCES, Fact, pio_page_at_in, rip_place
from vmio_edu.kvm.probe import Probe, ProbeExit, run_probe
from vmio_edu.linux.include.uapi.linux import kvm as K


@pytest.mark.parametrize("kernel", ("linux-3.7", "linux-6.12"))
@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_the_models_give_the_tables_value(name, kernel):
    d = BY_NAME[name]
    assert d.measure(kernel) == d.expected(kernel)


def test_the_3_7_and_6_12_models_differ_where_the_table_says():
    differ = {d.name for d in DIFFERENCES if d.measure("linux-3.7") != d.measure("linux-6.12")}
    assert differ == {d.name for d in DIFFERENCES if d.linux_3_7_differs_from_6_12}
    assert differ == {"out_rip", "rep_ins_page_batch", "in_pio_page", "rep_string_rf"}


def test_values_are_compared_not_words():
    d = BY_NAME["out_rip"]
    reworded = dataclasses.replace(d, why_6_12="said another way", what="the same fact, other words")
    assert reworded.kvm_pvm_differs_from_6_12 == d.kvm_pvm_differs_from_6_12 is True
    same = dataclasses.replace(d, kvm_pvm=d.linux_6_12)
    assert not same.kvm_pvm_differs_from_6_12
    batch = BY_NAME["rep_ins_page_batch"]
    assert not batch.kvm_pvm_differs_from_6_12
    assert dataclasses.replace(batch, kvm_pvm=(128, 128)).kvm_pvm_differs_from_6_12


def test_the_out_rip_probe_finds_the_out_it_looks_at():
    f = BY_NAME["out_rip"].fact
    exits = run_probe(f.probe, "linux-6.12")
    assert exits[0].port == 0x1F0 and exits[0].rip == f.at and f.length == 1  # `out dx, al` is one byte
    assert run_probe(f.probe, "linux-3.7")[0].rip == f.at + 1


def _ex(port, rip, out=True, pio=b""):
    return ProbeExit(K.KVM_EXIT_IO, K.KVM_EXIT_IO_OUT if out else K.KVM_EXIT_IO_IN, 1, port, 1, rip, 0, 2, pio)


def test_an_unexpected_value_is_shown_not_forced_into_a_word():
    f = Fact("mov al, 1;", "out 0x7e, al", "nop", lambda f, x: rip_place(f, x, 0x7E))
    assert rip_place(f, [_ex(0x7E, f.at)], 0x7E) == "at"
    assert rip_place(f, [_ex(0x7E, f.at + 2)], 0x7E) == "past"
    assert rip_place(f, [_ex(0x7E, 0x1234)], 0x7E) == "0x1234"
    out = _ex(0x300, 0, pio=bytes.fromhex("44332211"))
    assert pio_page_at_in(f, [out, _ex(0x300, 0, out=False, pio=bytes(4))]) == "zeroed"
    assert pio_page_at_in(f, [out, _ex(0x300, 0, out=False, pio=bytes.fromhex("44332211"))]) == "kept"
    assert pio_page_at_in(f, [out, _ex(0x300, 0, out=False, pio=b"\x01\x02\x03\x04")]) == "01020304"


def test_json_has_values():
    js = {d["name"]: d for d in (x.to_json() for x in DIFFERENCES)}
    assert js["rep_ins_page_batch"]["linux_3_7"] == [128, 128]
    assert js["out_rip"]["kvm_pvm_differs_from_6_12"] is True
    assert "complete_fast_pio_out" in js["out_rip"]["why_6_12"]


def test_bad_kernel_and_runaway_probe_are_named():
    with pytest.raises(VmioError, match="unknown kernel 'linux-9'"):
        run_probe(Probe("nop"), "linux-9")
    with pytest.raises(VmioError, match="no OUT to 0x501 in 3 exits"):
        run_probe(Probe("mov dx, 0x300; l: in al, dx; jmp l"), "linux-6.12", limit=3)
