"""The panel's Then and now page in a real browser: at a laptop's 1366 px it must fit the views column
(about 480 px, as test_virtqueue_fits checks for the Virtqueue view) without sideways scrolling, with
both stacks' stages of the stop's row, the row of this stop's chain marked, and the other stack's
backtrace."""
from __future__ import annotations

from pathlib import Path

import pytest

from vmio_edu import Machine
from vmio_edu.trace.thenandnow import then_and_now
from vmio_edu.widgets.thenandnow import then_and_now_html

from .lab import CHROMIUM, CHROMIUM_ARGS, missing

CSS = Path(__file__).resolve().parents[2] / "vmio_edu" / "widgets" / "panel.css"
COLUMN = 480  # px: under the views column's width at 1366x768


@pytest.mark.slow
@pytest.mark.parametrize("stack, function", [("10.2", "bdrv_aligned_pwritev"), ("1.6.1", "ide_data_writew")])
def test_then_and_now_fits_the_views_column(tmp_path, stack, function):
    why = missing()
    if why:
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with Machine(op="write", lba=2, sectors=1, stack=stack) as m:
        dbg = m.debugger()
        dbg.break_at(function)
        dbg.cont()
        d = then_and_now(dbg)
    html = then_and_now_html(d)
    page_html = (f"<html><head><style>{CSS.read_text()}</style></head><body><div class='vmio-panel'>"
                 f"<div class='vmio-views' style='width:{COLUMN}px'><div class='vmio-scroll' style='overflow:auto'>"
                 f"{html}</div></div></div></body></html>")
    (tmp_path / "tn.html").write_text(page_html)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.goto((tmp_path / "tn.html").as_uri())
            overflow = page.locator(".vmio-scroll").evaluate("el => el.scrollWidth - el.clientWidth")
            assert overflow <= 8, overflow  # no sideways scrolling
            assert page.locator(".vmio-then-now-row").count() == len(d["rows"]) >= 1
            assert page.locator(".vmio-then-now-row.vmio-here").count() == 1
            text = page.locator(".vmio-then-now").inner_text()
            assert f"{d['other_stack']} at {d['other_function']}" in " ".join(text.split())
            assert page.locator(".vmio-then-now .vmio-frame").count() == len(d["other_backtrace"]["frames"])
        finally:
            browser.close()
