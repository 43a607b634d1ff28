"""Execute notebooks with nbclient, the way CI and Binder do: one kernel per notebook, cwd = the notebook's
folder, 300 s per cell. Runs as a script too, so the Binder test can run it with the fresh venv's Python:

    python _run_notebooks.py [--kernel NAME] [--expect-prefix DIR] NOTEBOOK...

It prints one line per notebook (OK/FAIL) and exits 1 if any failed.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

CELL_TIMEOUT = 300


def run_notebook(path: str | os.PathLike, kernel: str = "python3", expect_prefix: str | None = None) -> None:
    """Execute every cell of `path` in a fresh kernel; raise (nbclient's CellExecutionError) on the first
    failing cell. With `expect_prefix`, also check the kernel's Python lives under that directory."""
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name=kernel,
                            resources={"metadata": {"path": str(path.parent)}})
    if expect_prefix is not None:
        probe = nbformat.v4.new_code_cell("import sys; print(sys.prefix)")
        nb.cells.insert(0, probe)
    client.execute()
    if expect_prefix is not None:
        out = "".join(o.get("text", "") for o in nb.cells[0].outputs).strip()
        if Path(out).resolve() != Path(expect_prefix).resolve():
            raise RuntimeError(f"{path.name} ran in a kernel of {out!r}, not of the venv {expect_prefix!r}")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernel", default="python3")
    ap.add_argument("--expect-prefix")
    ap.add_argument("notebooks", nargs="+")
    a = ap.parse_args(argv)
    failed = 0
    for nb in a.notebooks:
        try:
            run_notebook(nb, a.kernel, a.expect_prefix)
            print("OK", Path(nb).name, flush=True)
        except Exception as e:  # report every notebook, not only the first failure
            failed += 1
            print("FAIL", Path(nb).name, str(e)[-3000:], flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
