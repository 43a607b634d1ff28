"""The debugger panel in a real browser, at a laptop's 1366x768, in JupyterLab and in Notebook 7.

Headless Debian Chromium driven by Playwright opens a notebook that displays the panel, then, as a learner
would: checks the panel fits the screen (no scrolling to reach the buttons, the backtrace, the source or
the views), opens Then and now (the stop beside QEMU 10.2), clicks the timeline and checks the stop moved there, drags the slider and checks the stop,
goes to the end (shown as success), clicks a byte of the written disk sector and follows its journey,
switches to the dark theme and checks the panel follows (computed colours), and restarts the kernel and
checks the panel says to re-run its cell. Screenshots of each go to test-output/panel-<ui>-*.png.
"""
from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest

from .lab import CHROMIUM, CHROMIUM_ARGS, jupyter_lab, missing

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "test-output"
T = 180_000  # ms: generous, CI machines are slow
W, H = 1366, 768

CELLS = [
    "from vmio_edu import Machine\n"
    "m = Machine(op='write', lba=4, sectors=1)\n"
    "dbg = m.debugger()\n"
    "dbg.break_at('ide_sector_write')\n"
    "dbg.cont()\n"
    "print('stopped at', dbg.stop.function)",
    "panel = dbg.panel()\npanel",
]


def _notebook(path: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def _luminance(css: str) -> float:
    r, g, b = (int(x) for x in re.findall(r"\d+", css)[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


@pytest.mark.slow
@pytest.mark.parametrize("ui", ["lab", "notebook"])
def test_panel_fits_one_screen_and_every_control_works(ui):
    why = missing()
    if why:
        pytest.skip(why)
    if ui == "notebook":
        pytest.importorskip("notebook", minversion="7", reason="Notebook 7 (pip install -e '.[test]')")
    from playwright.sync_api import sync_playwright

    OUT.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="vmio-browser-"))
    root = tmp / "root"
    root.mkdir()
    _notebook(root / "panel.ipynb")
    shot = lambda page, name: page.screenshot(path=str(OUT / f"panel-{ui}-{name}.png"))  # noqa: E731
    try:
        with jupyter_lab(root, tmp / "lab.log") as (base, token), sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": W, "height": H})
            page.set_default_timeout(T)
            url = "lab/tree" if ui == "lab" else "notebooks"
            page.goto(f"{base}/{url}/panel.ipynb?token={token}")
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
    wait_kernel_idle(page)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_function(
        "() => { const s = document.querySelector('.vmio-panel .vmio-status');"
        "        return s && s.innerText.includes('ide_sector_write'); }", timeout=T)
    wait_kernel_idle(page)
    panel = page.locator(".vmio-panel").first
    panel.evaluate("el => el.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(500)

    # -- one screen: the whole panel is inside the window and inside the notebook's visible area
    box = panel.bounding_box()
    scroller = panel.evaluate(
        """el => { let p = el.parentElement;
                   while (p && !(p.scrollHeight > p.clientHeight + 4 && getComputedStyle(p).overflowY !== 'visible'))
                       p = p.parentElement;
                   p = p || document.scrollingElement; const r = p.getBoundingClientRect();
                   return {top: r.top, bottom: r.bottom, left: r.left, right: r.right,
                           pageScroll: document.scrollingElement.scrollHeight > window.innerHeight + 1}; }""")
    assert box["height"] <= scroller["bottom"] - scroller["top"], (box, scroller)
    assert box["y"] >= scroller["top"] - 1 and box["y"] + box["height"] <= min(H, scroller["bottom"]) + 1, (box, scroller)
    assert box["x"] >= 0 and box["x"] + box["width"] <= W, box
    for part in (".vmio-toolbar", ".vmio-status", ".vmio-timeline svg", ".vmio-backtrace-pane",
                 ".vmio-source-pane", ".vmio-views", ".vmio-bp-bar"):
        b = panel.locator(part).first.bounding_box()
        assert b is not None and b["y"] >= box["y"] - 1 and b["y"] + min(b["height"], 30) <= box["y"] + box["height"] + 1, (part, b, box)
    # backtrace, source and views side by side
    xs = [panel.locator(p).first.bounding_box()["x"] for p in (".vmio-backtrace-pane", ".vmio-source-pane", ".vmio-views")]
    assert xs == sorted(xs) and xs[2] - xs[0] > 400, xs
    bg = panel.evaluate("el => getComputedStyle(el).backgroundColor")
    assert _luminance(bg) > 0.8, bg  # the light theme
    assert "def ide_sector_write" in panel.locator(".vmio-source-pane").inner_text()
    assert "github.com/qemu/qemu/blob/v1.6.1/hw/ide/core.c#L" in panel.locator(".vmio-source-pane a").first.get_attribute("href")
    shot(page, "1-start")

    # -- the timeline: click a box in the zoom strip, then a segment of the overview
    start = status_index(page)
    target = panel.locator(".vmio-timeline-box").nth(3)
    ti = int(target.get_attribute("data-index"))
    assert ti != start
    target.locator("rect").click()
    wait_index(page, ti)
    seg = panel.locator(".vmio-seg[data-layer='host']").first  # the pwrite on the worker thread
    si = int(seg.get_attribute("data-index"))
    seg.click(force=True)
    wait_index(page, si)
    shot(page, "2-timeline-click")
    # at the pwrite: the Threads view as cards, the request's QEMUIOVector bytes in the hex view
    panel.locator(".vmio-view-pick button", has_text="Threads").click()
    cards = panel.locator(".vmio-view-threads .vmio-card")
    assert cards.count() == 3, cards.count()  # vcpu0, main, worker-1
    worker = panel.locator(".vmio-view-threads .vmio-card[data-thread='worker-1']")
    assert "running" in worker.inner_text() and "sys_pwrite64" in worker.inner_text()
    for c in range(cards.count()):  # each card inside the views column: no 1,500 px tables any more
        cb = cards.nth(c).bounding_box()
        vb = panel.locator(".vmio-views").bounding_box()
        assert cb["x"] >= vb["x"] - 1 and cb["x"] + cb["width"] <= vb["x"] + vb["width"] + 1, (cb, vb)
    shot(page, "2b-threads")
    panel.locator(".vmio-view-pick button", has_text="QEMUIOVector").click()
    region = panel.locator(".vmio-hex-region[data-source='qiov']").first
    region.wait_for()
    rb, vb = region.bounding_box(), panel.locator(".vmio-views").bounding_box()
    assert rb["x"] + min(rb["width"], 300) <= vb["x"] + vb["width"], (rb, vb)
    assert region.locator(".vmio-byte").count() >= 256
    shot(page, "2c-qiov")
    widths = {}
    for name in ("CPU", "VMCS", "kvm_run", "IDE", "Coroutines", "Thread pool", "AioContext", "Disk", "Block", "Exits"):
        panel.locator(".vmio-view-pick button", has_text=name).first.click()
        page.wait_for_timeout(150)
        widths[name] = panel.locator(".vmio-views .vmio-scroll").first.evaluate("el => el.scrollWidth - el.clientWidth")
    # every view fits its column: no sideways scrolling to find a value
    assert all(w <= 8 for w in widths.values()), widths

    # -- Then and now: the stop's function beside QEMU 10.2, filled by the kernel once the page is open
    panel.locator(".vmio-view-pick button", has_text="Then and now").click()
    page.wait_for_function("() => document.querySelector('.vmio-panel .vmio-then-now-row.vmio-here') !== null"
                           "      || document.querySelector('.vmio-panel .vmio-then-now-pane .vmio-error') !== null",
                           timeout=T)
    tn = " ".join(panel.locator(".vmio-then-now").inner_text().split())
    here = re.match(r"(\w+) on QEMU 1\.6\.1 beside QEMU 10\.2", tn)  # the function the panel is stopped in
    assert here and here.group(1) in panel.locator(".vmio-status").inner_text(), tn
    assert re.search(r"QEMU 10\.2 at \w+ thread \S+ #0 \w+", tn), tn  # 10.2's backtrace at the matching call
    assert panel.locator(".vmio-views .vmio-scroll").first.evaluate("el => el.scrollWidth - el.clientWidth") <= 8
    shot(page, "2d-then-and-now")
    panel.locator(".vmio-view-pick button", has_text="CPU").first.click()

    # -- the slider: drag the handle to the left, the stop follows the value it shows
    handle = panel.locator(".vmio-slider .noUi-handle").first
    hb = handle.bounding_box()
    page.mouse.move(hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2)
    page.mouse.down()
    page.mouse.move(hb["x"] - 150, hb["y"] + hb["height"] / 2, steps=8)
    page.mouse.up()
    page.wait_for_function(
        """() => { const r = document.querySelector('.vmio-panel .vmio-slider .widget-readout');
                   const s = document.querySelector('.vmio-panel .vmio-status');
                   return r && s && s.innerText.includes('#' + r.innerText.trim() + ' '); }""", timeout=T)
    dragged = status_index(page)
    assert dragged < si, (dragged, si)
    page.wait_for_function(  # the timeline follows: its zoom strip is around the new stop
        "([i]) => document.querySelector('.vmio-panel .vmio-timeline').textContent.includes('zoom around #' + i + ':')",
        arg=[dragged], timeout=T)
    shot(page, "3-slider")

    # -- the end: Last runs on to the halt (past the breakpoint), shown as a success; Step past it says so
    panel.locator(".vmio-btn-last").click()
    page.wait_for_function("() => document.querySelector('.vmio-panel .vmio-halted') !== null", timeout=T)
    halted = panel.locator(".vmio-halted")
    assert "halted normally" in halted.inner_text() and "wrote 1 sector" in halted.inner_text()
    colour = halted.evaluate("el => getComputedStyle(el).borderLeftColor")
    r, g, b = (int(x) for x in re.findall(r"\d+", colour)[:3])
    assert g > r, colour  # green, not red
    panel.locator(".vmio-btn-step").click()
    page.wait_for_function("() => document.querySelector('.vmio-panel .vmio-message').innerText.includes('the run is over')")
    shot(page, "4-halted")

    # -- a byte of the written sector: its journey, each hop a button that goes there
    panel.locator(".vmio-view-pick button", has_text="Disk").click()
    byte = panel.locator(".vmio-hex-region[data-source='disk'] .vmio-byte").nth(10)
    byte.click()
    page.wait_for_function(  # the hops (after the title), or the panel's error
        "() => document.querySelector('.vmio-panel .vmio-hop') !== null"
        "      || document.querySelector('.vmio-panel .vmio-views .vmio-error') !== null", timeout=T)
    page.wait_for_timeout(300)
    hops = panel.locator(".vmio-hop")
    if hops.count():
        assert "image_offset=0x80a" in panel.locator(".vmio-hops-title").inner_text()
        texts = hops.all_inner_texts()
        assert any("guest" in t for t in texts), texts
        guest = hops.filter(has_text="guest").first
        gi = int(re.match(r"#(\d+)", guest.inner_text()).group(1))
        shot(page, "5-provenance")
        guest.click()
        wait_index(page, gi)
    else:  # the debugger in this tree has no provenance() yet: the panel says so
        assert "provenance" in panel.locator(".vmio-views").inner_text()
        shot(page, "5-provenance")

    # -- a guest breakpoint from the folding bar: the driver's rep outsw, its assembly in the source pane
    panel.locator(".vmio-bp-bar .jupyter-widget-Collapse-header, .vmio-bp-bar .p-Collapse-header").first.click()
    pick = panel.locator(".vmio-guest-pick select")
    at = pick.evaluate(r"s => [...s.options].findIndex(o => /^ata_pio_outsw\s/.test(o.text))")  # nbsp counts
    assert at >= 0
    pick.select_option(index=at)
    panel.locator(".vmio-add-guest-bp").click()
    page.wait_for_function("() => document.querySelector('.vmio-panel .vmio-bp-bar').innerText.includes('2 set')")
    box2 = panel.bounding_box()
    assert box2["height"] <= box["height"] + 1, (box2, box)  # the open bar stays inside the panel
    shot(page, "5b-breakpoints")
    panel.locator(".vmio-bp-bar .jupyter-widget-Collapse-header, .vmio-bp-bar .p-Collapse-header").first.click()
    panel.locator(".vmio-btn-first").click()
    page.wait_for_function(
        "() => document.querySelector('.vmio-panel .vmio-status').innerText.includes('not started')", timeout=T)
    panel.locator(".vmio-btn-continue").click()
    page.wait_for_function(
        "() => document.querySelector('.vmio-panel .vmio-status').innerText.includes('ata_pio_outsw')", timeout=T)
    page.wait_for_function(
        "() => { const c = document.querySelector('.vmio-panel .vmio-source-pane .vmio-current');"
        "        return c && c.innerText.includes('rep outsw'); }", timeout=T)
    shot(page, "5c-guest-stop")

    # -- the dark theme: the panel follows JupyterLab's CSS variables
    page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})")
    page.wait_for_function(
        "() => document.body.dataset.jpThemeLight === 'false'", timeout=60_000)
    page.wait_for_timeout(1000)
    bg = panel.evaluate("el => getComputedStyle(el).backgroundColor")
    fg = panel.evaluate("el => getComputedStyle(el).color")
    src = panel.locator(".vmio-source-pane .vmio-src").first.evaluate("el => getComputedStyle(el).color")
    assert _luminance(bg) < 0.3 and _luminance(fg) > 0.6 and _luminance(src) > 0.5, (bg, fg, src)
    lane = panel.locator(".vmio-timeline svg text").first.evaluate("el => getComputedStyle(el).fill")
    assert _luminance(lane) > 0.5, lane
    shot(page, "6-dark")

    # -- a restarted kernel: the panel says to re-run its cell
    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.restart()")
    page.wait_for_function("() => document.querySelector('.vmio-panel .vmio-stale') !== null", timeout=T)
    assert "re-run this cell" in panel.locator(".vmio-stale").inner_text()
    shot(page, "7-restarted")


def status_index(page) -> int:
    text = page.locator(".vmio-panel .vmio-status").first.inner_text()
    return int(re.search(r"#(-?\d+)", text).group(1))


def wait_index(page, index: int) -> None:
    try:
        page.wait_for_function(
            "([i]) => document.querySelector('.vmio-panel .vmio-status').innerText.includes('#' + i + ' ')",
            arg=[index], timeout=T)
    except Exception:
        raise AssertionError(f"expected #{index}; the panel shows "
                             f"{page.locator('.vmio-panel .vmio-status').first.inner_text()!r}, errors "
                             f"{page.locator('.vmio-panel .vmio-error').all_inner_texts()}") from None


def wait_kernel_idle(page) -> None:
    page.wait_for_function(
        """() => { const app = window.jupyterapp; const w = app && app.shell.currentWidget;
                   const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
                   return k && k.status === 'idle'; }""", timeout=T)
