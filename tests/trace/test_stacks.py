"""The two stacks: trace points know their stack, modern lines come from the modern map, and code shared
between versions is shared visibly."""
from __future__ import annotations

import pytest

from vmio_edu import Machine
from vmio_edu.errors import VmioError
from vmio_edu.qemu import kvm_all
from vmio_edu.stacks import get_stack
from vmio_edu.trace.sources import call_site, lookup
from vmio_edu.trace.stacks import UNCHANGED, unchanged
from vmio_edu.trace.tracepoint import REGISTRY, by_name, stack_of_module


def test_modern_lines_come_from_the_modern_map():
    ref = lookup("qemu", "blk_aio_pwritev", stack="10.2")
    assert (ref.file, ref.line, ref.tag) == ("block/block-backend.c", 1716, "v10.2.0")
    io = lookup("linux", "handle_io", stack="10.2")
    assert (io.file, io.tag) == ("arch/x86/kvm/vmx/vmx.c", "v6.12")
    # the 1.6.1 name is not a 10.2 function, and the 10.2 name is not a 1.6.1 one
    assert lookup("qemu", "bdrv_aio_writev", stack="10.2") is None
    assert lookup("qemu", "blk_aio_pwritev") is None
    assert lookup("qemu", "bdrv_aio_writev").tag == "v1.6.1"


def test_stack_follows_the_tree():
    assert stack_of_module("vmio_edu.qemu_10_2.hw.ide.core") == "10.2"
    assert stack_of_module("vmio_edu.linux_6_12.arch.x86.kvm.x86") == "10.2"
    assert stack_of_module("vmio_edu.qemu.hw.ide.core") == "1.6.1"
    assert {tp.stack for tp in by_name("kvm_handle_io", stack="1.6.1")} == {"1.6.1"}


def test_unchanged_reuses_the_body_under_the_modern_name_and_line():
    g = {"__name__": "vmio_edu.qemu_10_2.accel.kvm.kvm_all_test", "cpu_outw": object()}
    before = len(REGISTRY)
    fn = unchanged(kvm_all.kvm_handle_io, g)
    try:
        tp = fn.tracepoint
        assert tp.stack == "10.2" and tp.name == "kvm_handle_io"
        assert (tp.source.file, tp.source.line) == ("accel/kvm/kvm-all.c", 2844)
        body = fn.__wrapped__
        assert body.__code__ is kvm_all.kvm_handle_io.__wrapped__.__code__
        assert body.__globals__ is g  # its callees are the modern module's
        assert tp.argnames == kvm_all.kvm_handle_io.tracepoint.argnames
        assert UNCHANGED["vmio_edu.qemu_10_2.accel.kvm.kvm_all_test.kvm_handle_io"] == \
            "vmio_edu.qemu.kvm_all.kvm_handle_io"
        # the 1.6.1 trace point is untouched
        assert kvm_all.kvm_handle_io.tracepoint.stack == "1.6.1"
    finally:  # leave the registry as the package made it
        del REGISTRY[before:]
        UNCHANGED.pop("vmio_edu.qemu_10_2.accel.kvm.kvm_all_test.kvm_handle_io", None)


def test_unchanged_needs_a_traced_function_or_a_layer():
    def plain(x):
        return x
    with pytest.raises(TypeError, match="not a traced function"):
        unchanged(plain, {"__name__": "vmio_edu.qemu_10_2.x"})


def test_modern_call_lines_take_callee_names(monkeypatch):
    from vmio_edu.trace import sources
    sources._modern_table.cache_clear()
    call_site.cache_clear()
    real = sources.resources.files

    class Pkg:
        def __init__(self, inner):
            self.inner = inner

        def joinpath(self, name):
            if name != "sources_modern.json":
                return self.inner.joinpath(name)

            class T:
                @staticmethod
                def read_text():
                    return '{"qemu:blk_aio_prwv": {"file": "block/block-backend.c", "line": 1600, ' \
                           '"calls_at": [[1620, "blk_aio_write_entry"]]}}'
            return T
    monkeypatch.setattr(sources.resources, "files", lambda pkg: Pkg(real(pkg)))
    try:
        assert call_site("qemu", "blk_aio_prwv", "blk_aio_write_entry", "10.2") == 1620
        assert lookup("qemu", "blk_aio_prwv", "10.2").tag == "v10.2.0"
    finally:
        monkeypatch.undo()
        sources._modern_table.cache_clear()
        call_site.cache_clear()


def test_unknown_stack_is_a_clear_error():
    with pytest.raises(VmioError, match="unknown stack '2.0'"):
        Machine(stack="2.0")
    assert get_stack("modern").name == "10.2" and get_stack("1.6.1").qemu == "QEMU v1.6.1"


def test_default_machine_records_its_stack():
    with Machine(op="write", sectors=1) as m:
        m.run()
        assert m.stack.name == "1.6.1" and m.state.stack is m.stack
        assert m.image_bytes(0) == m.expected_sectors()[0]
