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
    doc = json.loads(capsys.readouterr().out)
    return code, doc


def _why(doc):
    """What made the command fail: the engines' disagreement or an image problem, with the stage counts."""
    return {"agree": doc.get("agree"), "problems": [(r["path"], r["engine"], r["problems"]) for r in doc["runs"]],
            "stages": [(r["path"], r["engine"], paths.qemu_stages(r)) for r in doc["runs"]]}


def test_agreement_ignores_only_the_vcpu_loop():
    """A real vCPU kicked out of a halt re-enters kvm_cpu_exec: not a difference of the path. Any other
    function called a different number of times is."""
    def calls(exec_n=1, writes=2):
        return {"qemu-cpu": {"vcpu0": {"kvm_cpu_exec": exec_n}}, "qemu-ide": {"vcpu0": {"ide_sector_write": writes}}}
    emu = {"path": "ide", "exits": {"HLT": 1}, "calls": calls()}
    kicked = {"path": "ide", "exits": {"HLT": 1}, "calls": calls(exec_n=3)}
    assert paths.engines_agree([emu, kicked]) == {"ide": {"exits": True, "qemu_stages": True, "kvm_run_reentries": 2}}
    other = {"path": "ide", "exits": {"HLT": 1}, "calls": calls(writes=3)}
    assert paths.engines_agree([emu, other])["ide"]["qemu_stages"] is False
    assert paths.engines_agree([emu, {**kicked, "exits": {"HLT": 2}}])["ide"]["exits"] is False


def test_ide_json_schema_and_counts(capsys):
    code, doc = _json(capsys, "--path", "ide", "--op", "write", "--sectors", "2", "--lba", "5")
    assert code == 0
    assert doc["schema"] == paths.SCHEMA
    assert doc["workload"] == {"op": "write", "lba": 5, "sectors": 2, "seed": 0, "per_request": 0, "depth": 0,
                              "indirect": False}
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
    assert k["IO(pic) out port=0x20"] >= 1 and k["IO(pic) out port=0xa1"] >= 1
    assert any(key.startswith("HLT") for key in k)
    assert not any("port=0x1f7" in key or "port=0x1f2" in key for key in k)  # IDE always goes to QEMU
    assert r["kernel_exit_total"] == sum(k.values())
    # time per layer: every layer that ran was timed, and self times add up to no more than the wall time
    assert set(QEMU_LAYERS) <= set(r["time_ms"])
    assert 0 < sum(r["time_ms"].values()) <= r["wall_ms"] * 1.05
    # per thread: the pwrite's time is the worker's, the data port's the vCPU's; the threads add up to the layer
    by = r["time_ms_by_thread"]
    assert set(by["host"]) == {"worker-1"} and set(by["qemu-ide"]) >= {"vcpu0"}
    for layer, threads in by.items():
        assert sum(threads.values()) <= r["time_ms"][layer] + 0.01 * len(threads), layer


def test_text_fits_100_columns(capsys):
    assert main(["paths", "--path", "ide", "--sectors", "1"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100
    for heading in ("Stages entered", "Exits to userspace", "Exits handled in the kernel", "Time (ms"):
        assert heading in out
    row = next(line for line in out.splitlines() if line.strip().startswith("IO out 0x1f0 ATA data"))
    assert row.split()[-1] == "256"
    assert "Image check: OK" in out


def test_read_counts_batches_not_words(capsys):
    code, doc = _json(capsys, "--path", "ide", "--op", "read", "--sectors", "2")
    (r,) = doc["runs"]
    assert code == 0 and r["image_ok"]
    assert 2 <= r["exits"]["IO in port=0x1f0"] <= 4  # rep insw: one batch per sector (two across a page)
    assert "IO out port=0x1f0" not in r["exits"]


def test_bad_input(capsys):
    assert main(["paths", "--path", "scsi"]) == 2
    assert "unknown path 'scsi'" in capsys.readouterr().err
    assert main(["paths", "--path", "ide", "--sectors", "300"]) == 2
    assert "1 to 256 sectors" in capsys.readouterr().err
    assert main(["paths", "--path", "ide", "--path", "virtio", "--path", "ide"]) == 2
    assert "--path ide is given twice" in capsys.readouterr().err
    assert main(["paths", "--path", "virtio", "--depth", "1000"]) == 2
    err = capsys.readouterr().err
    assert "depth must be 0..256, not 1000" in err and "virtio on unicorn" not in err  # refused before any run


@pytest.mark.kvm
def test_engines_agree_on_ide(capsys):
    require_kvm()
    code, doc = _json(capsys, "--path", "ide", "--engine", "both", "--sectors", "2")
    assert code == 0, _why(doc)
    emu, real = doc["runs"]
    assert (emu["engine"], real["engine"]) == ("unicorn", "kvm")
    assert emu["exits"] == real["exits"] and emu["exits"]["IO out port=0x1f0"] == 512
    assert paths.qemu_stages(emu)["qemu-ide"] == paths.qemu_stages(real)["qemu-ide"]
    assert doc["agree"]["ide"]["exits"] and doc["agree"]["ide"]["qemu_stages"]
    assert "vmx" in emu["stages"] and "vmx" not in real["stages"]  # the real kernel's stages are opaque
    assert "kvm (real)" in real["time_ms"]


def test_ide_against_virtio(capsys):
    """The learner's question: 256 exits per sector on IDE, a handful per request on virtio."""
    code, doc = _json(capsys, "--path", "ide", "--path", "virtio", "--sectors", "8", "--lba", "3")
    assert code == 0
    ide, vio = doc["runs"]
    assert (ide["path"], vio["path"], vio["disk"], vio["ioeventfd"]) == ("ide", "virtio", "virtio", False)
    assert ide["image_ok"] and vio["image_ok"]
    assert ide["request_exits_per_sector"] >= 256 and ide["requests"] == 1
    # one request: one notify (VIRTIO_PCI_QUEUE_NOTIFY, a KVM_EXIT_IO with ioeventfd off) and one ISR read
    base = int(next(p for p, n in vio["port_names"].items() if n == "HOST_FEATURES"), 16)
    assert vio["exits"][f"IO out port={base + 16:#x}"] == 1 and vio["exits"][f"IO in port={base + 19:#x}"] == 1
    assert vio["requests"] == 1 and vio["request_exits"] == 2
    # the probe's exits are there too (PCI config cycles), but they are not the request's
    assert vio["exits"]["IO out port=0xcf8"] > 0 and vio["exit_total"] > vio["request_exits"]
    assert "qemu-virtio" in vio["stages"] and "qemu-ide" not in vio["stages"]
    assert vio["stages"]["qemu-virtio"]["vcpu0"] > 0  # ioeventfd off: the queue is handled on the vCPU thread


def test_virtio_several_requests_count_per_request(capsys):
    code, doc = _json(capsys, "--path", "virtio", "--sectors", "4", "--per-request", "1", "--depth", "2")
    (r,) = doc["runs"]
    assert code == 0 and r["image_ok"] and r["requests"] == 4
    notify = next(p for p, n in r["port_names"].items() if n == "QUEUE_NOTIFY")
    assert r["exits"][f"IO out port={notify}"] == 2  # one kick per two requests published
    assert r["request_exits"] < 4 * 3 and r["request_exits_per_request"] < 3
    code, doc = _json(capsys, "--path", "virtio", "--sectors", "4", "--indirect")
    (ind,) = doc["runs"]
    assert code == 0 and ind["image_ok"] and doc["workload"]["indirect"] is True
    assert ind["request_exits"] == 2  # the table lives in guest RAM too: no exit more


@pytest.mark.kvm
def test_engines_agree_on_virtio(capsys):
    require_kvm()
    code, doc = _json(capsys, "--path", "virtio", "--engine", "both", "--sectors", "4")
    assert code == 0, _why(doc)
    assert doc["agree"]["virtio"]["exits"] and doc["agree"]["virtio"]["qemu_stages"]
    emu, real = doc["runs"]
    assert emu["exits"] == real["exits"] and emu["request_exits"] == real["request_exits"] == 2


def test_ioeventfd_takes_the_notify_off_the_exits(capsys):
    """The acceptance table: IDE ~256 exits per sector written, virtio a handful per request, and with
    ioeventfd on the notify is not among QEMU's exits but among the kernel's, and the queue runs on main."""
    code, doc = _json(capsys, "--sectors", "4", "--lba", "2")
    assert code == 0 and doc["paths"] == ["ide", "virtio", "virtio-ioeventfd"]
    ide, off, on = doc["runs"]
    assert all(r["image_ok"] for r in doc["runs"])
    assert 256 <= ide["request_exits_per_sector"] < 270
    assert off["request_exits_per_request"] <= 4 and on["request_exits_per_request"] <= 4
    notify = next(p for p, n in on["port_names"].items() if n == "QUEUE_NOTIFY")
    key = f"IO out port={notify}"
    assert off["exits"][key] == 1 and key not in on["exits"]
    assert on["kernel_exits"][f"IO(ioeventfd) out port={notify}"] == 1
    assert not any("ioeventfd" in k for k in off["kernel_exits"])
    assert on["exit_total"] == off["exit_total"] - 1
    # threads: the queue's work moved from the vCPU thread to the main loop
    assert on["stages"]["qemu-block"]["main"] > off["stages"]["qemu-block"]["main"]
    assert on["stages"]["qemu-block"].get("vcpu0", 0) < off["stages"]["qemu-block"]["vcpu0"]
    assert "virtio_queue_host_notifier_read" in on["functions"]["qemu-virtio"]
    assert "virtio_queue_host_notifier_read" not in off["functions"]["qemu-virtio"]


def test_the_request_itself_runs_where_ioeventfd_says():
    """bdrv_aio_multiwrite (the request's entry into the block layer) on vcpu0 without ioeventfd, on the
    main loop with it; the probe's block calls (the write-cache setting) stay on the vCPU thread."""
    for path, thread in (("virtio", "vcpu0"), ("virtio-ioeventfd", "main")):
        calls = paths.run_path(path, sectors=2)["calls"]["qemu-block"]
        where = {t for t, fns in calls.items() if "bdrv_aio_multiwrite" in fns}
        assert where == {thread}, (path, where)


@pytest.mark.kvm
def test_engines_agree_with_ioeventfd(capsys):
    require_kvm()
    code, doc = _json(capsys, "--path", "virtio-ioeventfd", "--engine", "both", "--sectors", "4")
    assert code == 0, _why(doc)
    emu, real = doc["runs"]
    assert emu["exits"] == real["exits"] and real["kernel_exits"] is None
    assert emu["kernel_exits"]  # the emulated kernel shows its own
    # on the real engine the notify shows by its effect: the main loop woke for it once
    assert main(["paths", "--path", "virtio-ioeventfd", "--engine", "kvm", "--sectors", "4"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "main loop woken by the ioeventfd" in line)
    assert row.split()[-1] == "1"


def test_write_and_read_back_count_both_directions(capsys):
    code, doc = _json(capsys, "--path", "ide", "--path", "virtio", "--op", "both", "--sectors", "2")
    ide, vio = doc["runs"]
    assert code == 0 and ide["image_ok"] and vio["image_ok"]
    assert ide["requests"] == 2 and vio["requests"] == 2  # a write command, then a read command
    assert ide["exits"]["IO out port=0x1f0"] == 512 and 2 <= ide["exits"]["IO in port=0x1f0"] <= 4
    assert ide["request_exits_per_sector"] == round(ide["request_exits"] / 4, 2)  # 4 sectors moved
    assert vio["request_exits"] == 4  # a notify and an ISR read per request


def test_past_the_end_each_path_gives_its_own_error(capsys):
    """A request running off the 2048-sector image: IDE writes up to the end and aborts, virtio-blk fails
    the whole request (VIRTIO_BLK_S_IOERR, nothing written); the command says so and exits 1."""
    assert main(["paths", "--path", "ide", "--path", "virtio", "--lba", "2046", "--sectors", "4"]) == 1
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100
    assert "past the end of the 2048-sector image" in out
    code, doc = _json(capsys, "--path", "ide", "--path", "virtio", "--lba", "2046", "--sectors", "4")
    ide, vio = doc["runs"]
    assert code == 1 and not ide["image_ok"] and not vio["image_ok"]
    assert not any("2046" in p or "2047" in p for p in ide["problems"])  # IDE wrote the sectors in range
    assert any("sector 2046 " in p for p in vio["problems"])  # virtio wrote nothing


def test_the_json_schema_is_stable(capsys):
    """Scripts read these keys: adding one is a new schema version, so the set is pinned here."""
    code, doc = _json(capsys, "--path", "virtio-ioeventfd", "--sectors", "1")
    assert code == 0 and set(doc) == {"schema", "workload", "engines", "paths", "runs"}
    assert set(doc["workload"]) == {"op", "lba", "sectors", "seed", "per_request", "depth", "indirect"}
    (r,) = doc["runs"]
    assert set(r) == {"engine", "path", "title", "disk", "ioeventfd", "stages", "functions", "calls", "exits",
                      "exit_total", "exits_per_sector", "requests", "request_exits", "request_exits_per_request",
                      "request_exits_per_sector", "port_names", "kernel_exits", "kernel_exit_total", "time_ms",
                      "time_ms_by_thread", "wall_ms", "image_ok", "problems"}
    assert r["calls"]["qemu-virtio"]["main"]["virtio_queue_host_notifier_read"] == 1
    assert json.loads(json.dumps(doc)) == doc  # plain data all the way down
