"""A student who wants marks without learning: every trick scores 0 for the parts it touches. Graded the
way an instructor grades (`vmio-edu grade`, the sandbox), never in-process."""
from __future__ import annotations

import os
import shutil

import pytest

from conftest import INSTRUCTOR, solution_code, variant
from sandbox_helpers import grade, parts, submit
from vmio_edu.grading import exercise, seed_for_user

EXIT_WRONG = variant("exit_qual", ('"size": (q & 7) + 1', '"size": q & 7'))


def all_zero(report: dict) -> bool:
    return report["total"] == 0 and all(p["points"] == 0 for p in report["parts"])


@pytest.mark.parametrize("code,phrase", [
    ("import vmio_edu.grading as g\ndecode_exit_qualification = g.reference('exit_qual')\n", "reference"),
    ("from vmio_edu.grading.exit_qual import oracle as decode_exit_qualification\n", "oracle"),
    ("import vmio_edu_instructor\ndecode_exit_qualification = vmio_edu_instructor.reference('exit_qual')\n",
     "vmio_edu_instructor"),
    ("import os, sys\nsys.path.insert(0, os.environ.get('VMIO_EDU_INSTRUCTOR', '/nowhere'))\n"
     "import vmio_edu_instructor\ndecode_exit_qualification = vmio_edu_instructor.reference('exit_qual')\n",
     "vmio_edu_instructor"),
])
def test_no_reference_or_oracle_can_be_imported(tmp_path, capsys, code, phrase):
    r = grade(submit(tmp_path, "exit_qual", code), capsys=capsys)
    assert all_zero(r), r["parts"]
    assert phrase in r["parts"][0]["feedback"] or phrase in " ".join(r["notes"])


@pytest.mark.parametrize("name,code,phrase", [
    ("ide_write", "from vmio_edu.qemu.hw.ide.core import ide_data_writew\n", "library's own ide_data_writew"),
    ("handle_io", "import vmio_edu.qemu.kvm_all as k\nkvm_handle_io = k.kvm_handle_io.__wrapped__\n",
     "library's own kvm_handle_io"),
    ("handle_io", "import vmio_edu.qemu.kvm_all as k\n_real = k.kvm_handle_io\n"
     "def kvm_handle_io(*a):\n    return _real(*a)\n", "library's own kvm_handle_io"),
    ("completion", "import vmio_edu.qemu.block as b\n_lib = b.bdrv_co_do_rw\n"
     "def bdrv_co_do_rw(acb):\n    return (yield from _lib(acb))\n", "library's own bdrv_co_do_rw"),
    ("completion", "import gc, types, vmio_edu.qemu.block as b\n"
     "_code = b.bdrv_co_do_rw.__wrapped__.__code__\n"
     "def bdrv_co_do_rw(acb):\n    f = types.FunctionType(_code, b.__dict__)\n    return (yield from f(acb))\n",
     "library's own bdrv_co_do_rw"),
    # a fresh copy of the library's module, executed from its own file: same file and name, new code objects
    ("ide_write", "import importlib.util, vmio_edu.qemu.hw.ide.core as c\n"
     "spec = importlib.util.spec_from_file_location('vmio_edu.qemu.hw.ide.core_copy', c.__file__)\n"
     "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
     "ide_data_writew = m.ide_data_writew.__wrapped__\n", "library's own ide_data_writew"),
    # a pure exercise answered by running the simulator inside the function
    ("pio_exits", "from vmio_edu.grading.pio_exits import simulate as predict_exits\n", "own code"),
    ("sectors", "from vmio_edu.grading.sectors import expected, registers\n"
     "def plan_write(regs):\n    lba = regs['sector'] | regs['lcyl'] << 8 | regs['hcyl'] << 16 | "
     "(regs['select'] & 15) << 24\n    return expected(lba, regs['nsector'])\n", "own code"),
])
def test_the_librarys_own_function_scores_zero(tmp_path, capsys, name, code, phrase, model):
    r = grade(submit(tmp_path, name, code), capsys=capsys)
    assert all_zero(r), r["parts"]
    assert all(phrase in p["feedback"] and "scored 0" in p["feedback"] for p in r["parts"]), r["parts"]


def test_monkeypatching_the_check_changes_nothing(tmp_path, capsys):
    code = ("import vmio_edu.grading as g, vmio_edu.grading.exit_qual as e\n"
            "from vmio_edu.grading.base import PartResult\n"
            "e.EXERCISE.check = lambda *a, **k: [PartResult(p.name, 99, p.points, 'ok') for p in e.PARTS]\n"
            "g.check = e.check = e.EXERCISE.check\n" + EXIT_WRONG)
    r = grade(submit(tmp_path, "exit_qual", code), capsys=capsys)
    assert parts(r)["size"]["points"] == 0 and r["total"] <= 3
    assert all_zero(r) and "was replaced" in r["parts"][0]["feedback"]  # and changing the grader costs it all


def test_grader_frames_hold_no_expected_values(tmp_path, capsys):
    code = ("import sys\n"
            "def decode_exit_qualification(q):\n"
            "    f = sys._getframe(1)\n"
            "    while f is not None:\n"
            "        for v in list(f.f_locals.values()):\n"
            "            if isinstance(v, dict) and 'size' in v and 'port' in v:\n"
            "                return v\n"
            "            if isinstance(v, list):\n"
            "                for c in v:\n"
            "                    if isinstance(c, dict) and c.get('q') == q:\n"
            "                        return c\n"
            "        f = f.f_back\n"
            "    return {}\n")
    r = grade(submit(tmp_path, "exit_qual", code), capsys=capsys)
    assert all_zero(r), r["parts"]


@pytest.mark.parametrize("forge", [
    # a result file and a clean exit, as the old grader's worker wrote it
    "import json, os\nfor fd in range(3, 64):\n    try:\n"
    "        os.write(fd, (json.dumps({'results': [{'name': 'size', 'points': 250, 'max_points': 1, 'feedback': 'ok'}]})"
    " + '\\n').encode())\n    except OSError:\n        pass\nos._exit(0)\n",
    # a forged reply on every descriptor, then carry on
    "import json, os\nfor fd in range(3, 64):\n    try:\n"
    "        os.write(fd, (json.dumps({'id': 1, 'ok': True, 'value': {'$dict': []}, 'points': 99}) + '\\n').encode())\n"
    "    except OSError:\n        pass\n",
])
def test_forged_results_and_points_are_worthless(tmp_path, capsys, forge):
    r = grade(submit(tmp_path, "exit_qual", EXIT_WRONG, extra=(forge,)), capsys=capsys)
    assert r["total"] <= 3 and r["max_total"] == 4
    assert all(0 <= p["points"] <= 1 for p in r["parts"])
    assert parts(r)["size"]["points"] == 0


def test_forged_results_from_inside_the_function(tmp_path, capsys):
    code = ("import json, os\n"
            "def decode_exit_qualification(q):\n"
            "    for fd in range(3, 64):\n"
            "        try:\n"
            "            os.write(fd, (json.dumps({'id': 0, 'ok': True, 'value': 1, 'points': 250}) + '\\n').encode())\n"
            "        except OSError:\n"
            "            pass\n"
            "    os._exit(0)\n")
    r = grade(submit(tmp_path, "exit_qual", code), capsys=capsys)
    assert all_zero(r)


def test_the_seed_in_the_notebook_is_ignored(tmp_path, capsys):
    path = submit(tmp_path, "exit_qual", solution_code("exit_qual"), student="zoe", seed=12345)
    r = grade(path, capsys=capsys)
    assert r["seed"] == seed_for_user("zoe") and r["student"] == "zoe" and r["total"] == 4


def test_the_public_check_has_no_hidden_cases():
    import vmio_edu.grading as g
    with pytest.raises(TypeError):
        g.check("exit_qual", lambda q: {}, 1, hidden=True)
    assert not hasattr(g, "reference")
    for name in ("exit_qual", "pio_exits", "sectors", "kvm_run", "handle_io", "ide_write"):
        mod = __import__(f"vmio_edu.grading.{name}", fromlist=["x"])
        assert not hasattr(mod, "hidden_cases") and not hasattr(mod, "oracle") and not hasattr(mod, "SOLUTION")
    from vmio_edu.grading import threads
    assert not hasattr(threads, "POOL")  # the answer key of `threads` is instructor material


def test_hidden_cases_depend_on_the_course_secret():
    import random

    import vmio_edu_instructor as material
    from vmio_edu.grading.course import hidden_seed
    params = exercise("pio_exits").make(7)
    a = material.hidden_cases("pio_exits", random.Random(hidden_seed(b"secret-one-0123456789", "pio_exits", "al")), params)
    b = material.hidden_cases("pio_exits", random.Random(hidden_seed(b"secret-two-0123456789", "pio_exits", "al")), params)
    c = material.hidden_cases("pio_exits", random.Random(hidden_seed(b"secret-one-0123456789", "pio_exits", "bo")), params)
    assert a != b and a != c


def test_grading_needs_the_instructor_material_and_a_secret(tmp_path, capsys, monkeypatch):
    path = submit(tmp_path, "exit_qual", solution_code("exit_qual"))
    from vmio_edu.cli import main
    monkeypatch.delenv("VMIO_EDU_INSTRUCTOR")
    assert main(["grade", str(path)]) == 2 and "VMIO_EDU_INSTRUCTOR" in capsys.readouterr().err
    monkeypatch.setenv("VMIO_EDU_INSTRUCTOR", str(INSTRUCTOR))
    monkeypatch.delenv("VMIO_EDU_COURSE_SECRET")
    copy = tmp_path / "instr"
    shutil.copytree(INSTRUCTOR / "vmio_edu_instructor", copy / "vmio_edu_instructor")
    assert main(["grade", str(path), "--instructor", str(copy)]) == 2
    assert "course-secret" in capsys.readouterr().err
    assert main(["course-secret", "--instructor", str(copy)]) == 0
    assert os.stat(copy / "course_secret").st_mode & 0o077 == 0
    capsys.readouterr()
    r = grade(path, "--instructor", str(copy), capsys=capsys)
    assert r["total"] == 4


def _can_drop() -> bool:
    from vmio_edu.grading import runner
    ids = runner._unprivileged()
    return ids is not None and runner._can_drop(ids)


@pytest.mark.skipif(not _can_drop(), reason="the sandbox cannot run as another user here (not root, or this "
                                            "Python is not readable by nobody)")
def test_the_sandbox_cannot_read_the_instructor_material_or_the_graders_environment(tmp_path, capsys, monkeypatch):
    copy = tmp_path / "instr"
    shutil.copytree(INSTRUCTOR / "vmio_edu_instructor", copy / "vmio_edu_instructor")
    (copy / "course_secret").write_text("a-secret-of-this-course-0123456789\n")
    os.chmod(copy, 0o700)
    monkeypatch.setenv("VMIO_EDU_INSTRUCTOR", str(copy))
    spy = ("import os\nfound = []\n"
           f"for p in ({str(copy / 'course_secret')!r}, {str(copy / 'vmio_edu_instructor' / 'exit_qual.py')!r},\n"
           "          f'/proc/{os.getppid()}/environ'):\n"
           "    try:\n        found.append(open(p, 'rb').read())\n    except OSError:\n        pass\n"
           "LEAK = b''.join(found)\n"
           "def decode_exit_qualification(q):\n"
           "    return {'size': len(LEAK), 'direction': 'out', 'string': False, 'rep': False, 'operand': 'dx', 'port': 0}\n")
    r = grade(submit(tmp_path, "exit_qual", spy), "--part", "size", capsys=capsys)
    assert "size should be" in r["parts"][0]["feedback"]
    assert "you returned 0x0" in r["parts"][0]["feedback"], r["parts"][0]["feedback"]  # nothing was readable


def test_tampering_with_the_sandboxs_watch_is_caught(tmp_path, capsys, model):
    code = ("import gc, vmio_edu.qemu.kvm_all as k\n"
            "W = [o for o in gc.get_objects() if type(o).__name__ == 'Watch'][0]\n"
            "_real = W.real['kvm_handle_io']\n"
            "def kvm_handle_io(*a):\n"
            "    W.active -= 1\n"
            "    try:\n"
            "        return _real(*a)\n"
            "    finally:\n"
            "        W.active += 1\n")
    r = grade(submit(tmp_path, "handle_io", code), "--part", "out", "--part", "model_write", capsys=capsys)
    assert all_zero(r), r["parts"]
    assert all("library's own kvm_handle_io" in p["feedback"] for p in r["parts"]), r["parts"]


@pytest.mark.parametrize("name,patch", [
    # fabricate the record of every IDE window from its inputs, instead of writing the handler
    ("ide_write", "import vmio_edu.grading.ide_write as iw\n"
     "def fake(student, w):\n"
     "    words = [[w['start'] + 2 * i, w['start'] + 2 * i + 2 if i < len(w['words']) - 1 else 0,\n"
     "              v.to_bytes(2, 'little'), 0 if i < len(w['words']) - 1 else 1] for i, v in enumerate(w['words'])]\n"
     "    full = b''.join(v.to_bytes(2, 'little') for v in w['words'])\n"
     "    return {'words': words, 'ends': [{'data_ptr': w['start'] + w['size'], 'data_end': w['start'] + w['size'],\n"
     "            'window': full}], 'extra_changed': False, 'ends_after_extra': 1, 'outside': None,\n"
     "            'other_drive_changed': False}\n"
     "iw.EXERCISE.captures['window'] = fake\niw.capture_window = fake\n"),
    # a machine run that reports the image the grader expects
    ("handle_io", "import vmio_edu.grading.model as m\n_s = m.summarize\n"
     "def summarize(run):\n    d = _s(run)\n    d['ok'] = True\n    return d\nm.summarize = summarize\n"),
    ("exit_qual", "import json\n_d = json.dumps\njson.dumps = lambda *a, **k: _d(*a, **k)\n"),
])
def test_monkeypatching_the_graders_code_in_the_sandbox_scores_zero(tmp_path, capsys, name, patch, model):
    code = f"def {exercise(name).answer}(*a):\n    raise NotImplementedError()\n" if name != "exit_qual" \
        else solution_code("exit_qual")
    r = grade(submit(tmp_path, name, code, extra=(patch,)), capsys=capsys)
    assert all_zero(r), r["parts"]
    assert all("was replaced" in p["feedback"] for p in r["parts"]), r["parts"]


# A reply the student's function writes itself, for the case in progress, with the right value (from the
# grader's simulator) and an empty list of what the profiler saw: the sandbox's own reports must not be
# forgeable by sending them first, or by silencing the real ones after.
FORGE_REPLY = (
    "import os, sys\n"
    "from vmio_edu.grading.pio_exits import simulate as _sim\n"
    "from vmio_edu.grading import wire as _wire\n"
    "def predict_exits(insn, rcx, rdi):\n"
    "    v = _sim(insn, rcx, rdi)\n"
    "    f = sys._getframe(1)\n"
    "    while 'req' not in f.f_locals:\n"
    "        f = f.f_back\n"
    "    msg = {'id': f.f_locals['req']['id'], 'ok': True, 'value': _wire.encode(v), 'forbidden': []}\n"
    "    os.write(int(sys.argv[2]), _wire.dumps(msg).encode())\n"
    "    %s\n"
    "    return v\n")


@pytest.mark.parametrize("after", [
    "pass",  # the real reply follows the forged one
    "os.dup2(os.open(os.devnull, os.O_WRONLY), int(sys.argv[2]))",  # the real replies are silenced
    "os._exit(0)",  # no real reply at all
])
def test_a_forged_reply_cannot_hide_what_the_profiler_saw(tmp_path, capsys, after):
    r = grade(submit(tmp_path, "pio_exits", FORGE_REPLY % after), capsys=capsys)
    assert all_zero(r), r["parts"]
    if after == "pass":
        assert "did not ask for" in r["parts"][0]["feedback"], r["parts"]


# Copies of the library's (or the grader's) function compiled from its source under another name and file:
# neither the code object nor (file, name) is the original's, the bytecode is.
COPY_FROM_SOURCE = (
    "import ast, importlib\n"
    "_m = importlib.import_module(%r)\n"
    "_fn = next(n for n in ast.parse(open(_m.__file__).read()).body\n"
    "           if isinstance(n, ast.FunctionDef) and n.name == %r)\n"
    "_fn.decorator_list = []\n"
    "_fn.name = 'my_own_work'\n"
    "_ns = dict(vars(_m))\n"
    "exec(compile(ast.Module([_fn], []), '<my notes>', 'exec'), _ns)\n"
    "%s = _ns['my_own_work']\n")


def test_a_copy_of_the_graders_simulator_from_its_source_scores_zero(tmp_path, capsys):
    code = COPY_FROM_SOURCE % ("vmio_edu.grading.pio_exits", "simulate", "predict_exits")
    r = grade(submit(tmp_path, "pio_exits", code), capsys=capsys)
    assert all_zero(r), r["parts"]
    assert all("simulate" in p["feedback"] for p in r["parts"]), r["parts"]


def test_a_copy_of_the_librarys_function_from_its_source_scores_zero(tmp_path, capsys, model):
    code = COPY_FROM_SOURCE % ("vmio_edu.qemu.hw.ide.core", "ide_data_writew", "ide_data_writew")
    r = grade(submit(tmp_path, "ide_write", code), capsys=capsys)
    assert all_zero(r), r["parts"]
    assert all("library's own ide_data_writew" in p["feedback"] for p in r["parts"]), r["parts"]


def _running(token: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if token.encode() in f.read():
                    found.append(int(name))
        except (OSError, ValueError):
            pass
    return found


def test_a_daemon_started_by_the_notebook_does_not_outlive_its_part(tmp_path, capsys):
    # fork, setsid, fork: the daemon leaves the sandbox's process group, so killing the group misses it. Left
    # running, it could write into the next sandbox's channel (or another student's) as the same user.
    token = f"vmio-edu-daemon-{os.getpid()}"
    cell = ("import os\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    if os.fork() == 0:\n"
            f"        os.execv('/bin/sh', ['/bin/sh', '-c', 'sleep 600', {token!r}])\n"
            "    os._exit(0)\n")
    try:
        r = grade(submit(tmp_path, "exit_qual", solution_code("exit_qual"), extra=(cell,)), capsys=capsys)
        assert not _running(token), "a process the notebook daemonized outlived the grading"
        assert r["total"] == r["max_total"], r["parts"]  # the answer itself is right: the daemon costs nothing
        assert any("process(es) running" in n for n in r["notes"]), r["notes"]
    finally:
        for pid in _running(token):
            os.kill(pid, 9)


@pytest.mark.parametrize("erase", [
    "sys.getprofile().__self__.hits.clear()",  # the profiler's record of this call, emptied before the reply
    "w = sys.getprofile().__self__; del w.hits[:]; w.hits.extend(['x'] * 0)",
])
def test_erasing_the_profilers_record_does_not_hide_a_forbidden_call(tmp_path, capsys, erase):
    code = ("import sys\n"
            "from vmio_edu.grading.pio_exits import simulate as _sim\n"
            "def predict_exits(insn, rcx, rdi):\n"
            "    v = _sim(insn, rcx, rdi)\n"
            f"    {erase}\n"
            "    return v\n")
    r = grade(submit(tmp_path, "pio_exits", code), capsys=capsys)
    assert all_zero(r), r["parts"]
    assert all("simulate" in p["feedback"] for p in r["parts"]), r["parts"]
