"""The Binder check: a fresh venv built from binder/requirements.txt alone (as repo2docker does: pip from
the repository root) can run every notebook, 00-tour included.

The repository is copied first (without .git and build leftovers), so the build writes nothing into the
working tree, as on Binder, which clones it. Skipped with the reason when pip cannot reach its index.
"""
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).resolve().parent / "_run_notebooks.py"
KERNEL = "vmio-binder-check"
IGNORE = shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "build", "dist", "test-output",
                                ".pytest_cache", ".ipynb_checkpoints", "exercises/student", ".hypothesis")
NETWORK_HINTS = ("Could not find a version", "No matching distribution", "Temporary failure in name resolution",
                 "Failed to establish a new connection", "Network is unreachable", "ConnectionError",
                 "Name or service not known", "Max retries exceeded")


def _run(cmd, cwd, timeout):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={k: v for k, v in os.environ.items()
                               if k not in ("PYTHONPATH", "VIRTUAL_ENV", "JUPYTER_PATH", "PYTHONHOME")})


@pytest.mark.slow
def test_binder_environment_runs_every_notebook(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(ROOT, repo, ignore=IGNORE)
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    py = env_dir / "bin" / "python"

    pip = _run([str(py), "-m", "pip", "install", "-r", "binder/requirements.txt"], cwd=repo, timeout=1500)
    if pip.returncode != 0:
        log = pip.stdout[-3000:] + pip.stderr[-3000:]
        if any(h in log for h in NETWORK_HINTS):
            pytest.skip(f"pip could not reach its package index: {log.strip().splitlines()[-1]}")
        pytest.fail(f"pip install -r binder/requirements.txt failed:\n{log}")

    # the package must come from the venv, not from this checkout or the dev venv
    where = _run([str(py), "-c", "import vmio_edu, sys; print(vmio_edu.__file__)"], cwd=tmp_path, timeout=120)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).resolve().is_relative_to(env_dir.resolve()), where.stdout

    # a kernelspec inside the venv that starts the venv's own Python
    ks = _run([str(py), "-m", "ipykernel", "install", "--prefix", str(env_dir), "--name", KERNEL],
              cwd=tmp_path, timeout=300)
    assert ks.returncode == 0, ks.stderr

    notebooks = sorted((repo / "notebooks").glob("*.ipynb"))
    assert any(p.name.startswith("00-") for p in notebooks) and len(notebooks) >= 10
    run = _run([str(py), str(RUNNER), "--kernel", KERNEL, "--expect-prefix", str(env_dir),
                *map(str, notebooks)], cwd=repo, timeout=3000)
    report = run.stdout + run.stderr[-3000:]
    assert run.returncode == 0, report
    assert sum(line.startswith("OK ") for line in run.stdout.splitlines()) == len(notebooks), report
