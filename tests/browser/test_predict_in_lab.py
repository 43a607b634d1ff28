"""A real browser: notebook 06 in JupyterLab (headless Chromium, Playwright), as a learner uses it.

It runs the notebook, answers the first predict-then-check question wrongly and then rightly by clicking, and
checks the feedback the kernel sends back (a click may arrive on an ipykernel 7 subshell thread: the check
must still update the widget). It also checks that the CI checks cell is folded (its source hidden) and that
the sequence diagram is drawn. Screenshots go to test-output/browser-predict*.png.
"""
import shutil
import tempfile
from pathlib import Path

import pytest

from .lab import CHROMIUM, CHROMIUM_ARGS, jupyter_lab, missing
from .test_panel_in_lab import wait_kernel_idle

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "06-completion.ipynb"
OUT = REPO / "test-output"
T = 180_000  # ms


@pytest.mark.slow
def test_predict_question_answers_in_jupyterlab():
    why = missing()
    if why:
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    OUT.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="vmio-lab-"))
    root = tmp / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    try:
        with jupyter_lab(root, tmp / "lab.log") as (base, token), sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.set_default_timeout(T)
            page.goto(f"{base}/lab/tree/{NOTEBOOK.name}?token={token}")
            wait_kernel_idle(page)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            # every code cell has run once each has an execution count (read from the notebook model: cells
            # scrolled out of view are not in the DOM); an error output fails fast
            try:
                page.wait_for_function(
                    """() => { const w = window.jupyterapp.shell.currentWidget; const cells = w.content.model.cells;
                               let done = true;
                               for (let i = 0; i < cells.length; i++) {
                                   const c = cells.get(i);
                                   if (c.type !== 'code') continue;
                                   if (c.outputs.toJSON().some(o => o.output_type === 'error')) return true;
                                   if (c.executionCount === null) done = false;
                               }
                               return done; }""")
            except Exception:
                page.screenshot(path=str(OUT / "browser-predict-failed.png"))
                raise
            errors = page.evaluate(
                """() => { const cells = window.jupyterapp.shell.currentWidget.content.model.cells; const out = [];
                           for (let i = 0; i < cells.length; i++)
                               if (cells.get(i).type === 'code')
                                   for (const o of cells.get(i).outputs.toJSON())
                                       if (o.output_type === 'error') out.push(o.ename + ': ' + o.evalue);
                           return out; }""")
            assert errors == [], errors
            wait_kernel_idle(page)

            q = page.locator(".vmio-predict").first
            q.scroll_into_view_if_needed()
            # the output area exists before the widget's view has rendered its children: wait for the text
            page.wait_for_function("() => { const q = document.querySelector('.vmio-predict');"
                                   " return q !== null && q.innerText.includes('Which thread raises IRQ 14'); }")
            assert "Which thread raises IRQ 14" in q.inner_text()
            q.get_by_text("vcpu0", exact=True).click()
            q.locator("button", has_text="Check").click()
            page.wait_for_function(
                "() => document.querySelector('.vmio-predict').innerText.includes('Not quite')")
            assert "the model says main" in q.inner_text()
            q.get_by_text("main", exact=True).click()
            q.locator("button", has_text="Check").click()
            page.wait_for_function("() => document.querySelector('.vmio-predict').innerText.includes('Right')")
            q.screenshot(path=str(OUT / "browser-predict.png"))

            # the sequence diagram is an image output; the CI checks are folded away
            assert page.locator('.jp-RenderedImage img').count() >= 1
            folded = page.evaluate(
                """async () => { const nb = window.jupyterapp.shell.currentWidget.content; const n = nb.widgets.length;
                                 nb.activeCellIndex = n - 1; await nb.scrollToItem(n - 1);
                                 const last = nb.widgets[n - 1], heading = nb.widgets[n - 2];
                                 return [last.inputHidden, !!last.node.querySelector('.jp-InputPlaceholder'),
                                         heading.model.sharedModel.getSource()]; }""")
            assert folded[0] is True and folded[1] is True, "the checks cell's source is not hidden"
            assert folded[2].startswith("## Checks for CI"), folded[2]
            page.screenshot(path=str(OUT / "browser-predict-lab.png"))
            browser.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
