"""A real browser: JupyterLab (headless, 127.0.0.1) with Debian's Chromium driven by Playwright.

It opens the tour, runs it, clicks Step several times on the panel, and checks that the backtrace pane
shows the frames the same commands reach when run here in Python; then Back, which replays. Screenshots go
to test-output/ (browser-panel.png: the panel; browser-failed.png: the page when a wait timed out).
"""
import contextlib
import io
import shutil
import tempfile
from pathlib import Path

import pytest

from .lab import CHROMIUM, CHROMIUM_ARGS, jupyter_lab, missing

REPO = Path(__file__).resolve().parents[2]
TOUR = REPO / "notebooks" / "00-tour.ipynb"
OUT = REPO / "test-output"
STEPS = 8
T = 180_000  # ms: generous, CI machines are slow


def expected_after_steps(n: int) -> list:
    """Run the tour's code cells here, then Step n times: the stops the browser must show."""
    import nbformat

    nb = nbformat.read(TOUR, as_version=4)
    ns: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        for cell in nb.cells:
            if cell.cell_type == "code":
                exec(compile(cell.source, "00-tour.ipynb", "exec"), ns)  # noqa: S102 - our own notebook
        panel = ns["panel"]
        stops = []
        for _ in range(n):
            s = panel.step()
            stops.append((s.index, s.function, [f.function for f in s.backtrace]))
        panel.close()
        ns["m"].close()
    return stops


@pytest.mark.slow
def test_tour_in_jupyterlab_step_updates_backtrace():
    why = missing()
    if why:
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    expected = expected_after_steps(STEPS)
    last_index, last_fn, last_frames = expected[-1]
    assert "ide_set_irq" in last_frames  # still inside the interrupt the tour stopped at

    OUT.mkdir(exist_ok=True)
    (OUT / "browser-failed.png").unlink(missing_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="vmio-lab-"))
    root = tmp / "root"
    root.mkdir()
    shutil.copy(TOUR, root / "00-tour.ipynb")
    try:
        with jupyter_lab(root, tmp / "lab.log") as (base, token), sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(T)
            page.goto(f"{base}/lab/tree/00-tour.ipynb?token={token}")
            wait_kernel_idle(page)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            # the last cell prints this once every check in it passed; an error output fails fast
            page.wait_for_function(
                """() => { const t = document.body.innerText;
                           return t.includes('tour reached bdrv_aio_writev')
                                  || !!document.querySelector('[data-mime-type="application/vnd.jupyter.error"]'); }""", timeout=T)
            body = page.inner_text("body")
            assert "tour reached bdrv_aio_writev" in body, body[-3000:]
            wait_kernel_idle(page)

            panel = page.locator(".vmio-panel").first
            panel.scroll_into_view_if_needed()
            page.wait_for_function(
                "() => document.querySelector('.vmio-panel .vmio-status').innerText.includes('ide_set_irq')")
            step = panel.locator(".vmio-btn-step")
            for index, fn, _ in expected:
                step.click()
                # the header shows the new position once the kernel has stepped and updated the widgets
                wait_status(page, index, fn)
            pane = panel.locator(".vmio-backtrace-pane")
            shown = pane.locator(".vmio-frame").evaluate_all("rows => rows.map(r => r.dataset.function)")
            assert shown == last_frames
            assert shown[0] == last_fn and "ide_set_irq" in shown
            # Back: time travel to the stop before (the kernel replays the run)
            prev_index, prev_fn, prev_frames = expected[-2]
            panel.locator(".vmio-btn-back").click()
            wait_status(page, prev_index, prev_fn)
            shown = pane.locator(".vmio-frame").evaluate_all("rows => rows.map(r => r.dataset.function)")
            assert shown == prev_frames
            assert page.locator(".vmio-panel .vmio-timeline svg").count() == 1
            page.set_viewport_size({"width": 1400, "height": 2200})  # the whole panel in one picture
            page.wait_for_timeout(1000)
            panel.scroll_into_view_if_needed()
            panel.screenshot(path=str(OUT / "browser-panel.png"))
            page.screenshot(path=str(OUT / "browser-lab.png"))
            browser.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def wait_status(page, index: int, fn: str) -> None:
    """Wait until the panel's header shows stop #index (the kernel has run the command and updated it)."""
    status = page.locator(".vmio-panel .vmio-status").first
    try:
        page.wait_for_function(
            "([i]) => document.querySelector('.vmio-panel .vmio-status').innerText.includes('#' + i + ' ')",
            arg=[index], timeout=T)
    except Exception:
        page.screenshot(path=str(OUT / "browser-failed.png"))
        raise AssertionError(f"expected #{index} {fn}; the panel shows {status.inner_text()!r}, errors "
                             f"{page.locator('.vmio-panel .vmio-error').all_inner_texts()}") from None
    assert fn in status.inner_text()


def wait_kernel_idle(page) -> None:
    page.wait_for_function(
        """() => { const app = window.jupyterapp; const w = app && app.shell.currentWidget;
                   const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
                   return k && k.status === 'idle'; }""", timeout=T)
