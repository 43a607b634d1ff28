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
    assert main(["trace", "--ioeventfd", "on"]) == 2  # "on" is the default, but IDE has no notify to move
    assert "--disk virtio" in capsys.readouterr().err


def test_compare_virtio(capsys, need_kvm):
    assert main(["compare", "--disk", "virtio", "--ioeventfd", "off", "--sectors", "4", "--format", "json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["identical"] and r["exits"] > 40


def test_a_request_past_the_end_is_named_in_the_image_check(capsys):
    # 1 MiB image = 2048 sectors: sectors 2046..2049 run past its end; the device answers IOERR
    rc, r = _trace_json(capsys, "--lba", "2046", "--op", "write")
    problems = r["check"]["problems"]
    assert rc == 1 and not r["check"]["ok"]
    assert "sector 2048 is past the end of the image (2048 sectors)" in problems
    # merged request: all refused, so the sectors inside the image are untouched, not lost
    assert "sector 2046 was not written: the guest's request failed" in problems
    assert not any("does not hold" in p for p in problems)
    assert any(p.startswith("the guest saw an error: status=0x1") and "VIRTIO_BLK_S_IOERR" in p for p in problems)


def test_the_text_report_writes_sector_runs_as_ranges(capsys):
    # 256 sectors were a 1,800-character line of numbers; a run is first..last
    assert main(["trace", "--disk", "virtio", "--sectors", "0", "--op", "write"]) == 0
    out = capsys.readouterr().out
    assert "Sectors written: 0..255 (256); sectors changed in the image: 0..255 (256)" in out


def test_trace_reads_a_read_only_image_with_readonly(tmp_path, capsys):
    # The open error tells a CLI user how to read a read-only image; --readonly is how (readonly=True)
    img = tmp_path / "ro.img"
    img.write_bytes(b"\x5a" * (1 << 20))
    img.chmod(0o444)
    assert main(["trace", "--disk", "virtio", "--image", str(img), "--op", "write"]) == 2
    assert "--readonly" in capsys.readouterr().err
    rc, r = _trace_json(capsys, "--image", str(img), "--op", "read", "--readonly")
    assert rc == 0 and r["check"]["ok"]  # the guest read back what the image holds
    rc, r = _trace_json(capsys, "--image", str(img), "--op", "write", "--readonly")
    # the device offers VIRTIO_BLK_F_RO and the guest obeys (test_virtio_readonly.py: the device's own IOERR)
    assert rc == 1 and any("VIRTIO_BLK_F_RO" in p for p in r["check"]["problems"])
    assert r["guest"]["requests"] == 0
    assert img.read_bytes() == b"\x5a" * (1 << 20)


def test_an_ide_breakpoint_on_the_virtio_board_says_why_it_is_never_hit(capsys):
    # the board still has the PIIX IDE controller, so the breakpoint is legal; it is just never reached
    assert main(["trace", "--disk", "virtio", "--break", "ide_sector_write"]) == 2
    err = capsys.readouterr().err
    assert "ide_sector_write was not reached" in err
    assert "hw/ide/core.c" in err and "virtio-blk" in err and "--disk ide" in err
    assert main(["trace", "--op", "write", "--break", "ide_sector_read"]) == 2  # IDE board: no virtio hint
    assert "virtio" not in capsys.readouterr().err


def test_the_text_report_names_each_exit_port(capsys):
    # as `vmio-edu paths` does: a learner reads 'port=0xc010' as QUEUE_NOTIFY without looking it up
    assert main(["trace", "--disk", "virtio", "--ioeventfd", "off", "--op", "write"]) == 0
    out = capsys.readouterr().out
    assert "IO out port=0xc010  (QUEUE_NOTIFY)" in out and "IO in port=0xc013  (ISR)" in out
    assert "IO out port=0xcf8  (PCI CONFIG_ADDRESS)" in out
    assert main(["trace", "--op", "write", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["port_names"]["0x1f0"] == "ATA data"
