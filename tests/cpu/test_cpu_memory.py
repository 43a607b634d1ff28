"""One emulated machine fits in a modest address space: Unicorn's translation buffer is capped
(vmio_edu.cpu.ucapi.TCG_BUFFER_SIZE; Unicorn's default reserves 1 GiB per engine)."""
import subprocess
import sys

SCRIPT = """
import resource, sys
import vmio_edu.cpu.ucapi as ucapi
if len(sys.argv) > 1:
    ucapi.TCG_BUFFER_SIZE = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (768 << 20, 768 << 20))
from vmio_edu import Machine
with Machine(op="write") as m:
    m.run()
    assert m.image_changes() == [0]
print("ok")
"""


def _run(*args):
    return subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, timeout=120)


def test_machine_runs_under_a_768_mib_address_space_limit():
    r = _run()
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_unicorns_default_buffer_would_not_fit():
    r = _run(str(1 << 30))
    assert r.returncode != 0  # the limit really constrains: with 1 GiB the engine cannot be created
