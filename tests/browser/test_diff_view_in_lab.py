"""The diff-paths view in a real JupyterLab at 1366x768: it fits the screen, its tabs switch in the browser,
its row kinds are coloured, the backtraces sit side by side, and it follows the dark theme. Screenshots go
to test-output/diff-view-*.png."""
from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest

from .lab import CHROMIUM, CHROMIUM_ARGS, jupyter_lab, missing

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "test-output"
T = 180_000
W, H = 1366, 768
CELLS = [
    "from vmio_edu.trace.diffreport import diff_paths\n"
    "from vmio_edu.widgets import diff_view\n"
    "result = diff_paths(op='write', host=False)\n"
    "print('rows', len(result.rows))",
    "diff_view(result)",
]


def _notebook(path: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def _rgb(css: str) -> tuple[int, int, int]:
    return tuple(int(x) for x in re.findall(r"\d+", css)[:3])  # type: ignore[return-value]


def _luminance(css: str) -> float:
    r, g, b = _rgb(css)
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


@pytest.mark.slow
def test_diff_view_fits_switches_tabs_and_follows_the_theme():
    why = missing()
    if why:
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    OUT.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="vmio-browser-"))
    root = tmp / "root"
    root.mkdir()
    _notebook(root / "diff.ipynb")
    shot = lambda page, name: page.screenshot(path=str(OUT / f"diff-view-{name}.png"))  # noqa: E731
    try:
        with jupyter_lab(root, tmp / "lab.log") as (base, token), sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": W, "height": H})
            page.set_default_timeout(T)
            page.goto(f"{base}/lab/tree/diff.ipynb?token={token}")
            try:
                _run(page, shot)
            except Exception:
                shot(page, "failed")
                raise
            finally:
                browser.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(page, shot) -> None:
    _wait_idle(page)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_selector(".vmio-diff-view .vmio-row-RENAMED", timeout=T)
    view = page.locator(".vmio-diff-view").first
    view.evaluate("el => el.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(500)
    box = view.bounding_box()
    assert box["height"] <= H - 100 and box["x"] >= 0 and box["x"] + box["width"] <= W, box  # one screen
    # the kinds are coloured from the theme: RENAMED blue-ish, REMOVED red-ish, ADDED green-ish
    colour = {k: _rgb(view.locator(f".vmio-row-{k} .vmio-kind").first.evaluate(
        "el => getComputedStyle(el).backgroundColor")) for k in ("RENAMED", "REMOVED", "ADDED")}
    assert colour["RENAMED"][2] > colour["RENAMED"][0], colour
    assert colour["REMOVED"][0] > colour["REMOVED"][2], colour
    assert colour["ADDED"][1] > colour["ADDED"][0], colour
    bg = view.locator(".vmio-diff").first.evaluate("el => getComputedStyle(el).backgroundColor")
    assert _luminance(bg) > 0.8, bg
    shot(page, "1-changes")

    # tabs switch in the browser (no kernel round trip): the backtraces, side by side
    view.locator(".lm-TabBar-tab", has_text="Backtraces").click()
    cols = view.locator(".vmio-bt > div")
    cols.first.wait_for(state="visible")
    a, b = cols.nth(0).bounding_box(), cols.nth(1).bounding_box()
    assert b["x"] > a["x"] + 300 and abs(a["y"] - b["y"]) < 5, (a, b)
    assert "blk_aio_pwritev" in cols.nth(1).inner_text() and "bdrv_aio_writev" in cols.nth(0).inner_text()
    assert "block/block-backend.c" in cols.nth(1).inner_text()
    shot(page, "2-backtraces")
    view.locator(".lm-TabBar-tab", has_text="Ladder").click()
    svg = view.locator(".vmio-ladder svg").first
    svg.wait_for(state="visible")
    sb = svg.bounding_box()
    assert sb["width"] > 300 and sb["x"] + sb["width"] <= W, sb
    shot(page, "2b-ladder")
    view.locator(".lm-TabBar-tab", has_text="Exits").click()
    page.wait_for_function("() => [...document.querySelectorAll('.vmio-diff-view td')]"
                           ".some(td => td.innerText.includes('port=0x1f0'))", timeout=T)
    shot(page, "3-exits")

    # the dark theme: the view follows JupyterLab's variables
    page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})")
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'", timeout=60_000)
    page.wait_for_timeout(1000)
    view.locator(".lm-TabBar-tab", has_text="Aligned path").click()
    page.wait_for_timeout(300)
    diff = view.locator(".vmio-diff").first
    bg = diff.evaluate("el => getComputedStyle(el).backgroundColor")
    fg = diff.evaluate("el => getComputedStyle(el).color")
    name = view.locator(".vmio-row-SAME code").first.evaluate("el => getComputedStyle(el).color")
    assert _luminance(bg) < 0.3 and _luminance(fg) > 0.6 and _luminance(name) > 0.4, (bg, fg, name)
    shot(page, "4-dark")
    view.locator(".lm-TabBar-tab", has_text="Ladder").click()
    page.wait_for_timeout(300)
    text = view.locator(".vmio-ladder svg text").first.evaluate("el => getComputedStyle(el).fill")
    assert _luminance(text) > 0.6, text  # the names follow the dark theme
    shot(page, "5-dark-ladder")


def _wait_idle(page) -> None:
    page.wait_for_function(
        """() => { const app = window.jupyterapp; const w = app && app.shell.currentWidget;
                   const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
                   return k && k.status === 'idle'; }""", timeout=T)
