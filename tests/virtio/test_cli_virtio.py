"""`vmio-edu trace/compare/exits --disk virtio --ioeventfd on|off`."""
import json

import pytest

from vmio_edu.cli import main


def _trace_json(capsys, *extra):
    rc = main(["trace", "--disk", "virtio", "--sectors", "4", "--format", "json", *extra])
    return rc, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("ioeventfd", ["on", "off"])
def test_trace_virtio(capsys, ioeventfd):
    rc, r = _trace_json(capsys, "--ioeventfd", ioeventfd, "--per-request", "2", "--depth", "2")
    assert rc == 0 and r["check"]["ok"] and r["disk"] == "virtio"
    assert r["guest"]["requests"] == 4 and r["guest"]["kicks"] == 2
    kicks_in_kernel = r["kernel_exits"].get("IO(ioeventfd)", 0)
    notify_exits = r["exits"].get("IO out port=0xc010", 0)
    assert (kicks_in_kernel, notify_exits) == ((2, 0) if ioeventfd == "on" else (0, 2))
    assert "qemu-virtio" in r["stages"] and "qemu-pci" in r["stages"]
    thread = "main" if ioeventfd == "on" else "vcpu0"
    assert "virtio_blk_handle_write" in r["functions"]["qemu-virtio"]
    assert thread in r["stages"]["qemu-virtio"]


def test_trace_virtio_indirect(capsys):
    rc, r = _trace_json(capsys, "--indirect", "--per-request", "1", "--depth", "4")
    assert rc == 0 and r["check"]["ok"] and r["guest"]["requests"] == 8


def test_virtio_options_need_the_virtio_disk(capsys):
    assert main(["trace", "--ioeventfd", "off"]) == 2
    assert "--disk virtio" in capsys.readouterr().err


def test_compare_virtio(capsys, need_kvm):
    assert main(["compare", "--disk", "virtio", "--ioeventfd", "off", "--sectors", "4", "--format", "json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["identical"] and r["exits"] > 40
