"""notebooks/00-tour.ipynb runs headless (nbclient) and its final cell's checks pass."""
import shutil
from pathlib import Path

import pytest

TOUR = Path(__file__).resolve().parents[2] / "notebooks" / "00-tour.ipynb"


@pytest.mark.slow
def test_tour_runs_headless_and_reaches_the_points(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    work = tmp_path / "00-tour.ipynb"
    shutil.copy(TOUR, work)
    nb = nbformat.read(work, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError with the failing cell if an assertion fails
    last = nb.cells[-1]
    text = "".join(o.get("text", "") for o in last.outputs if o.output_type == "stream")
    assert "tour reached bdrv_aio_writev -> sys_pwrite64 -> ide_set_irq -> kvm_set_irq" in text
    # the backtraces printed on the way are the real ones
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
                      if o.output_type == "stream")
    assert "#1  ide_sector_write" in outputs and "at hw/ide/core.c:798" in outputs
    assert "sys_pwrite64  layer=host  thread=worker" in outputs
    # the panel was displayed as a widget
    first = nb.cells[1].outputs
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in first)
