"""`vmio-edu paths`: the same request on IDE PIO and virtio-blk side by side (issue 14 item 4)."""
import json
import sys
from pathlib import Path

import pytest

from vmio_edu import paths
from vmio_edu.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kvm_policy import require_kvm  # noqa: E402

QEMU_LAYERS = ("qemu-cpu", "qemu-memory", "qemu-ide", "qemu-block", "qemu-threadpool", "qemu-event-loop")


def _json(capsys, *argv):
    code = main(["paths", *argv, "--format", "json"])
    return code, json.loads(capsys.readouterr().out)


def test_ide_json_schema_and_counts(capsys):
    code, doc = _json(capsys, "--path", "ide", "--op", "write", "--sectors", "2", "--lba", "5")
    assert code == 0
    assert doc["schema"] == paths.SCHEMA
    assert doc["workload"] == {"op": "write", "lba": 5, "sectors": 2, "seed": 0}
    assert doc["engines"] == ["unicorn"] and doc["paths"] == ["ide"]
    (r,) = doc["runs"]
    assert set(r) >= {"engine", "path", "disk", "stages", "exits", "exit_total", "exits_per_sector", "kernel_exits",
                      "kernel_exit_total", "time_ms", "wall_ms", "image_ok"}
    assert r["image_ok"] and r["path"] == "ide" and r["disk"] == "ide"
    # 256 word exits per sector on the data port, and the task-file writes around them
    assert r["exits"]["IO out port=0x1f0"] == 512
    assert r["exits"]["IO out port=0x1f7"] == 1  # one WRITE SECTORS command
    assert r["exit_total"] == sum(r["exits"].values())
    assert 256 <= r["exits_per_sector"] < 270
    # stages per layer and thread: the device work is on the vCPU thread, the pwrite on a pool worker
    assert r["stages"]["qemu-ide"]["vcpu0"] > 512
    assert r["stages"]["host"] == {"worker-1": 2}  # sys_pwrite64 twice: one request per sector
    assert "ide_sector_write" in r["functions"]["qemu-ide"]
    # the kernel model's own exits: the guest's PIC set-up and EOIs never reach QEMU, nor does its HLT
    k = r["kernel_exits"]
    assert k["IO out port=0x20 (picdev_write)"] >= 1 and k["IO out port=0xa1 (picdev_write)"] >= 1
    assert any(key.startswith("HLT") for key in k)
    assert not any("port=0x1f7" in key or "port=0x1f2" in key for key in k)  # IDE always goes to QEMU
    assert r["kernel_exit_total"] == sum(k.values())
    # time per layer: every layer that ran was timed, and self times add up to no more than the wall time
    assert set(QEMU_LAYERS) <= set(r["time_ms"])
    assert 0 < sum(r["time_ms"].values()) <= r["wall_ms"] * 1.05


def test_text_fits_100_columns(capsys):
    assert main(["paths", "--path", "ide", "--sectors", "1"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100
    for heading in ("Stages entered", "Exits to userspace", "Exits handled in the kernel", "Time (ms"):
        assert heading in out
    row = next(line for line in out.splitlines() if line.strip().startswith("IO out port=0x1f0"))
    assert row.split()[-1] == "256"
    assert "Image check: OK" in out


def test_read_counts_batches_not_words(capsys):
    code, doc = _json(capsys, "--path", "ide", "--op", "read", "--sectors", "2")
    (r,) = doc["runs"]
    assert code == 0 and r["image_ok"]
    assert 2 <= r["exits"]["IO in port=0x1f0"] <= 4  # rep insw: one batch per sector (two across a page)
    assert "IO out port=0x1f0" not in r["exits"]


def test_counter_names_kernel_exits():
    """A VM exit is the kernel's when no userspace exit claims it before the next one."""
    c = paths.KernelExitCounter()
    io_out_20 = 0x20 << 16
    c("kvm_exit", "vmx", {"reason": 30, "qualification": io_out_20}, None)
    c("kvm_exit", "vmx", {"reason": 30, "qualification": 0x1f0 << 16 | 1}, None)
    c("kvm_userspace_exit", "kvm", {"reason": 2}, None)
    c("kvm_userspace_exit", "kvm", {"reason": 2}, None)  # a second batch without a VM exit claims nothing
    c("kvm_exit", "vmx", {"reason": 12, "qualification": 0}, None)
    assert c.finish() == {"IO out port=0x20": 1, "HLT": 1}


def test_bad_input(capsys):
    assert main(["paths", "--path", "scsi"]) == 2
    assert "unknown path 'scsi'" in capsys.readouterr().err
    assert main(["paths", "--path", "ide", "--sectors", "300"]) == 2
    assert "1 to 256 sectors" in capsys.readouterr().err


def test_engines_agree_on_ide(capsys):
    require_kvm()
    code, doc = _json(capsys, "--path", "ide", "--engine", "both", "--sectors", "2")
    assert code == 0
    emu, real = doc["runs"]
    assert (emu["engine"], real["engine"]) == ("unicorn", "kvm")
    assert emu["exits"] == real["exits"] and emu["exits"]["IO out port=0x1f0"] == 512
    assert paths.qemu_stages(emu) == paths.qemu_stages(real)
    assert doc["agree"] == {"ide": {"exits": True, "qemu_stages": True}}
    assert "vmx" in emu["stages"] and "vmx" not in real["stages"]  # the real kernel's stages are opaque
    assert "kvm (real)" in real["time_ms"]
