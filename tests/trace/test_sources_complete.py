"""Every trace point knows its real file:line, so no backtrace frame shows `?`."""
from __future__ import annotations

import importlib
import json
import pkgutil
from importlib import resources

import vmio_edu
from vmio_edu.trace import sources
from vmio_edu.trace.sources import call_site, lookup
from vmio_edu.trace.tracepoint import REGISTRY

# Trace points that may have no real source, each with the reason. Keep it tiny.
NO_REAL_SOURCE = {
    # The teaching MMIO device (vmio_edu/qemu/hw/misc/vmio_echo.py) is ours: QEMU 1.6.1 has no such file.
    ("qemu", "vmio_echo_read"),
    ("qemu", "vmio_echo_write"),
}


def _registry() -> list:
    """Import every module so every @tracepoint has registered."""
    for m in pkgutil.walk_packages(vmio_edu.__path__, "vmio_edu."):
        importlib.import_module(m.name)
    return REGISTRY


def test_every_trace_point_has_a_source():
    missing = sorted({(tp.side, tp.name) for tp in _registry() if tp.source is None} - NO_REAL_SOURCE)
    assert missing == [], f"trace points without a real file:line (add them to sources_extra.json): {missing}"


def test_allow_list_is_not_stale():
    # An allowed name must still be a registered trace point that lacks a source.
    by_key = {(tp.side, tp.name): tp for tp in _registry()}
    for key in sorted(NO_REAL_SOURCE):
        assert key in by_key, f"{key} is no longer a trace point: drop it from NO_REAL_SOURCE"
        assert by_key[key].source is None, f"{key} now has a source: drop it from NO_REAL_SOURCE"


def test_extra_entries_are_not_shadowed():
    # sources.py adds whole extra entries only for keys the reference map lacks (one it has would be
    # dead); for a key it has, an extra entry may only add call lines.
    pkg = resources.files(sources.__package__)
    base = json.loads(pkg.joinpath("sources.json").read_text())
    extra = json.loads(pkg.joinpath("sources_extra.json").read_text())
    assert sorted(k for k, e in extra.items()
                  if not k.startswith("_") and k in base and set(e) != {"calls_at"}) == []


def test_extra_call_lines_merge_into_the_reference_map():
    # kvm-all.c:1673, the KVM_EXIT_MMIO case of kvm_cpu_exec (v1.6.1), and the map's own call lines stay
    assert call_site("qemu", "kvm_cpu_exec", "cpu_physical_memory_rw") == 1673
    assert call_site("qemu", "kvm_cpu_exec", "kvm_handle_io") is not None


def test_spot_check_lines_read_from_qemu_1_6_1_and_linux_3_7():
    notify = lookup("qemu", "aio_notify")
    assert (notify.file, notify.line, notify.tag) == ("async.c", 231, "v1.6.1")
    rw = lookup("qemu", "cpu_physical_memory_rw")
    assert (rw.file, rw.line) == ("exec.c", 2044)
    # The model's raw_open opens the image file: the "file" protocol's raw_open, not block/raw.c's.
    ro = lookup("qemu", "raw_open")
    assert (ro.file, ro.line) == ("block/raw-posix.c", 338)
    pw = lookup("linux", "sys_pwritev")
    assert (str(pw), pw.tag) == ("fs/read_write.c:841", "v3.7")


def test_new_entries_give_call_lines_for_backtraces():
    assert call_site("qemu", "spawn_thread_bh_fn", "do_spawn_thread") == 150
    assert call_site("qemu", "aio_notify", "event_notifier_set") == 233
    assert call_site("qemu", "cpu_physical_memory_rw", "address_space_rw") == 2047
