"""The CLI contract other tools script against."""
import json
import subprocess
import sys

from vmio_edu.cli import main
from vmio_edu.guest import assemble


def test_trace_text(capsys):
    assert main(["trace", "--op", "write", "--lba", "3", "--sectors", "1"]) == 0
    out = capsys.readouterr().out
    assert "Image check: OK" in out
    for layer in ("qemu-cpu", "qemu-memory", "qemu-ide", "qemu-block", "qemu-threadpool", "qemu-event-loop"):
        assert layer in out
    assert "IO out port=0x1f0" in out


def test_trace_json(capsys):
    assert main(["trace", "--op", "both", "--lba", "2", "--sectors", "2", "--format", "json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["check"]["ok"] and r["check"]["sectors_written"] == [2, 3]
    assert r["exits"]["IO out port=0x1f0"] == 512
    assert set(r["stages"]["qemu-threadpool"]) >= {"main", "worker-1"}
    # the main loop's own functions (main_loop_wait, aio_poll, glib_pollfds_fill) are the event loop's
    assert r["stages"]["qemu-event-loop"] == ["main"] or set(r["stages"]["qemu-event-loop"]) >= {"main"}
    assert {"main_loop_wait", "aio_poll", "glib_pollfds_fill"} <= set(r["functions"]["qemu-event-loop"])


def test_break_json(capsys):
    assert main(["trace", "--op", "write", "--break", "bdrv_aio_writev", "--format", "json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["stop"]["function"] == "bdrv_aio_writev" and r["stop"]["thread"] == "vcpu0"
    bt = r["backtrace"]
    assert [f["level"] for f in bt] == list(range(len(bt)))
    assert bt[0]["function"] == "bdrv_aio_writev" and bt[1]["function"] == "ide_sector_write"
    assert set(bt[0]) == {"level", "function", "args", "file", "line", "layer", "thread", "stack"}
    assert {f["stack"] for f in bt} == {"1.6.1"}


def test_break_unknown_function(capsys):
    assert main(["trace", "--break", "no_such_fn"]) == 2
    assert "no modelled function" in capsys.readouterr().err


def test_exits_json_lines(tmp_path, capsys):
    code = assemble("mov dx, 0x1f7\nin al, dx\nmov al, 0x42\nout 0x80, al\ncli\nhlt", mode=16)
    g = tmp_path / "g.bin"
    g.write_bytes(code)
    assert main(["exits", str(g), "--mode", "16"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["reason"] for x in lines] == ["IO", "IO", "HLT"]
    assert lines[0]["direction"] == "in" and lines[0]["port"] == 0x1F7 and lines[0]["rip"] == 0x1003
    assert lines[1] == {**lines[1], "direction": "out", "port": 0x80, "size": 1, "count": 1, "data": "42"}
    assert lines[1]["rip"] == 0x1008  # a plain OUT exits with RIP already past it


def test_errors_have_no_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "vmio_edu.cli", "trace", "--image", str(tmp_path / "x.img")],
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr


def test_a_function_of_the_other_stack_is_named_as_such(capsys):
    # a 10.2 name on the 1.6.1 stack, and 1.6.1's virtio-blk on the 10.2 stack (which has none): say where
    # it lives instead of only 'no modelled function'; the examples to try are that stack's own names
    assert main(["trace", "--break", "blk_aio_pwritev"]) == 2
    err = capsys.readouterr().err
    assert "it is modelled on the 10.2 stack (block/block-backend.c:1716" in err and "--stack 10.2" in err
    assert main(["trace", "--stack", "10.2", "--break", "virtio_blk_handle_write"]) == 2
    err = capsys.readouterr().err
    assert "it is modelled on the 1.6.1 stack (hw/block/virtio-blk.c:284)" in err and "1.6.1 stack only" in err
    assert main(["trace", "--stack", "10.2", "--break", "no_such_function_zz"]) == 2
    err = capsys.readouterr().err
    assert "try e.g. blk_aio_pwritev" in err and "paio_submit" not in err and "it is modelled on" not in err


def test_a_closed_pipe_is_no_traceback():
    # `vmio-edu trace ... | head`: the reader is gone before the backtrace is printed
    p = subprocess.Popen([sys.executable, "-c", "import sys; from vmio_edu.cli import main; sys.exit(main())",
                          "trace", "--break", "bdrv_aio_writev"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_a_number_option_that_is_not_a_number_is_named(capsys):
    # argparse printed "invalid _int value: 'abc'" (the name of a private helper)
    import pytest
    with pytest.raises(SystemExit) as e:
        main(["paths", "--sectors", "abc"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "argument --sectors: 'abc' is not a whole number" in err and "_int" not in err
