"""Engine selection: "kvm" says clearly why it can't run; "auto" falls back to the emulated engine and says so."""
import pytest

import vmio_edu.kvm.device as device
from vmio_edu import Machine
from vmio_edu.cli import main
from vmio_edu.errors import EngineUnavailable


@pytest.fixture
def no_dev_kvm(monkeypatch):
    real_open = device.os.open

    def fake_open(path, *a, **kw):
        if path == "/dev/kvm":
            raise FileNotFoundError(2, "No such file or directory", path)
        return real_open(path, *a, **kw)

    monkeypatch.setattr(device.os, "open", fake_open)
    monkeypatch.setattr(device.os.path, "exists", lambda p, _e=device.os.path.exists: p != "/dev/kvm" and _e(p))


def test_kvm_engine_names_the_missing_device(no_dev_kvm):
    with pytest.raises(EngineUnavailable, match="/dev/kvm"):
        Machine(engine="kvm")


def test_auto_falls_back_and_says_so(no_dev_kvm):
    with Machine(engine="auto", op="write") as m:
        assert m.engine == "unicorn"
        assert "unavailable" in m.engine_note and "emulated" in m.engine_note
        m.run()
        assert m.image_changes() == [0]


def test_cli_reports_the_fallback(no_dev_kvm, capsys):
    assert main(["trace", "--engine", "auto", "--op", "write"]) == 0
    assert "using the emulated engine" in capsys.readouterr().err


def test_auto_uses_real_kvm_when_present(need_kvm):
    with Machine(engine="auto", op="write") as m:
        assert m.engine == "kvm" and m.engine_note == ""
