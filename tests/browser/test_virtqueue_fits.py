"""The Virtqueue view in a real browser: at a laptop's 1366 px the panel's views column is about 40% of
the width; the view's table must fit it without sideways scrolling (as test_panel_one_screen checks for the
other views), with changes since the previous stop marked."""
from __future__ import annotations

from pathlib import Path

import pytest

from vmio_edu import Machine
from vmio_edu.widgets.render import view_html

from .lab import CHROMIUM, CHROMIUM_ARGS, missing

CSS = Path(__file__).resolve().parents[2] / "vmio_edu" / "widgets" / "panel.css"
COLUMN = 480  # px: under the views column's width at 1366x768 (40% of the panel, minus its padding)


@pytest.mark.slow
def test_virtqueue_view_fits_the_views_column(tmp_path):
    why = missing()
    if why:
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with Machine(disk="virtio", ioeventfd=False, op="both", lba=8, sectors=2, per_request=1, depth=2) as m:
        dbg = m.debugger()
        dbg.break_at("virtqueue_push")
        before = dbg.cont().views["virtqueue"]
        after = dbg.finish().views["virtqueue"]
    html = view_html("virtqueue", after, before)
    page_html = (f"<html><head><style>{CSS.read_text()}</style></head><body><div class='vmio-panel'>"
                 f"<div class='vmio-views' style='width:{COLUMN}px'><div class='vmio-scroll' style='overflow:auto'>"
                 f"{html}</div></div></div></body></html>")
    (tmp_path / "vq.html").write_text(page_html)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.goto((tmp_path / "vq.html").as_uri())
            overflow = page.locator(".vmio-scroll").evaluate("el => el.scrollWidth - el.clientWidth")
            assert overflow <= 8, overflow  # no sideways scrolling to find a value
            assert page.locator("table.vmio-table tr").count() == 1 + 6  # a header and two 3-part chains
            assert page.locator(".vmio-changed").count() >= 2  # used.idx and the chain's owner moved
            assert "VIRTIO_BLK_T_OUT" in page.locator(".vmio-virtqueue").inner_text()
        finally:
            browser.close()
