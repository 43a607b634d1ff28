"""The debugger panel: one screen for a parked machine.

    from vmio_edu import Machine
    from vmio_edu.widgets import DebuggerPanel
    dbg = Machine().debugger()
    dbg.break_at("bdrv_aio_writev")
    DebuggerPanel(dbg)              # Continue runs to the breakpoint; Step, Next, Finish, Back move on

Top to bottom (it fits a 1366x768 laptop inside JupyterLab): the buttons (First, Back, Step, Next, Finish,
Continue, Stepi, Last) and a slider over the whole run; the stop line with a reference to share the moment;
the timeline (a lane per thread coloured by layer, the guest's own lane, click to go there); the backtrace,
the source (the modelled function's Python with the current line, a link to the real line in QEMU v1.6.1 or
Linux v3.7, or the guest's assembly) and the views side by side; the breakpoints in a folding bar. Each
view marks what changed since the previous stop; a byte clicked in the Disk, QEMUIOVector, IDE (io_buffer)
or kvm_run (PIO page) hex view shows its journey (Debugger.provenance), each hop a button to that moment.
The last page after the views, **Then and now**, sets the stop beside the other stack (QEMU 1.6.1 / Linux
3.7 on a 10.2 machine, and the other way round): the aligned row of `vmio-edu diff-paths` for the stop's
function and the other stack's backtrace at the matching call (vmio_edu.trace.thenandnow). It is filled
only while it is the page open, after each stop, on the kernel thread; the comparison runs in machines
of its own, so the machine being debugged is only read.
Colours come from JupyterLab's CSS variables (panel.css), so the light and dark themes both work.

Threading rule (ipykernel 7 loses widget updates sent from other threads): the panel is only updated on
the thread that created it, the kernel's main thread. JupyterLab 4.6 with ipykernel 7 sends widget comm
messages over a kernel *subshell* (setting `commsOverSubshells`, default "perCommTarget"), so a button
callback may arrive on a subshell thread; the panel then hands the work to the main thread's event loop
(`call_soon_threadsafe`). There the command calls the debugger, which blocks until the model has parked,
and only then the new `Stop` is read and the widgets updated. Commands from several clicks run one after
another. The model threads never touch a widget, and nothing here changes the model: the panel reads
stops, views and the recorded trace, and issues debugger commands.
"""
from __future__ import annotations

import asyncio
import inspect
import threading
from importlib import resources
from typing import Any, Callable

import ipywidgets as W

from ..trace.tracepoint import REGISTRY
from ..trace.views import VIEW_NAMES
from . import render as R
from . import source as S
from .anywidgets import HexWidget, TimelineWidget

BUTTONS = (("First", "fast-backward", "the start, before the first event (time travel)"),
           ("Back", "step-backward", "the previous entry or exit (time travel: replays the run)"),
           ("Step", "arrow-down", "the next trace point entry or exit, on any thread"),
           ("Next", "arrow-right", "the next entry or exit at this depth or shallower, not deeper"),
           ("Finish", "arrow-up", "until this function returns"),
           ("Continue", "play", "until a breakpoint is hit or the guest halts"),
           ("Stepi", "step-forward", "one guest instruction (across VM exits, like gdb's stepi in a VM)"),
           ("Last", "fast-forward", "the last moment recorded so far (the halt, once the run reached it)"))
_STYLE = resources.files(__package__).joinpath("panel.css").read_text()
THEN_NOW_TITLE = "Then and now"
THEN_NOW_HELP = "this stop beside the other stack (QEMU 1.6.1 / Linux 3.7 or QEMU 10.2 / Linux 6.12): the " \
                "aligned row of diff-paths and the other stack's backtrace at the matching stop"
THEN_NOW_IDLE = '<i>Stop in a function to see it beside the other stack.</i>'


class DebuggerPanel(W.VBox):
    """A JupyterLab panel over a `vmio_edu.trace.debugger.Debugger`. Display it as a cell's last expression.

    Each button has a method of the same name (`cont` for Continue); they return the new `Stop`.
    The panel fits one laptop screen: the controls and the stop line on top, a compact timeline with a
    slider, then the backtrace, the source and the views side by side; breakpoints in a folding bar.
    """

    def __init__(self, dbg: Any, *, window: int = 60) -> None:
        self.dbg = dbg
        self.window = window  # events either side of the position in the timeline's zoom strip
        self._owner = threading.get_ident()  # the kernel thread: the only one allowed to update widgets
        try:  # its event loop (ipykernel runs cells inside it), to hand work over from subshell threads
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self.stop = dbg.stop
        self._timeline_key: tuple | None = None
        self._shown: dict[str, Any] = {}  # view name -> its data at the stop on screen
        self._prev: dict[str, Any] = {}  # ... and at the stop before it (what changed)
        self._shown_index: int | None = None
        self._halt_index: int | None = None
        self._quiet_slider = False

        self.buttons: dict[str, W.Button] = {}
        for name, icon, tip in BUTTONS:
            if name == "Stepi" and not hasattr(dbg, "stepi"):
                continue
            b = W.Button(description=name, icon=icon, tooltip=tip, layout=W.Layout(width="auto"))
            b.add_class(f"vmio-btn-{name.lower()}")
            method = {"Continue": "cont"}.get(name, name.lower())
            b.on_click(self._handler(getattr(self, method)))
            self.buttons[name.lower()] = b
        self.slider = W.IntSlider(value=-1, min=-1, max=0, continuous_update=False, readout=True,
                                  description="", layout=W.Layout(flex="1 1 auto", min_width="160px"))
        self.slider.add_class("vmio-slider")
        self.slider.observe(lambda ch: self._on_kernel_thread(lambda: self._on_slider(ch)), names="value")
        toolbar = W.HBox(list(self.buttons.values()) + [self.slider])
        toolbar.add_class("vmio-toolbar")
        self.status = W.HTML()
        self.status.add_class("vmio-status")
        self.message = W.HTML()
        self.message.add_class("vmio-message")

        self.timeline = TimelineWidget(on_goto=lambda i: self._on_kernel_thread(lambda: self.goto(i)))
        self.timeline.add_class("vmio-timeline-wrap")
        self.backtrace = W.HTML()
        self.backtrace.add_class("vmio-backtrace-pane")
        self.backtrace.add_class("vmio-scroll")
        self.source_frame = W.Dropdown(options=[("#0", 0)], value=0, layout=W.Layout(width="auto", max_width="100%"))
        self.source_frame.add_class("vmio-source-frame")
        self.source_frame.observe(lambda ch: self._on_kernel_thread(self._show_source), names="value")
        self.source = W.HTML()
        self.source.add_class("vmio-source-pane")
        self.source.add_class("vmio-scroll")
        on_byte = lambda src, off: self._on_kernel_thread(lambda: self.provenance(src, off))  # noqa: E731
        self.kvm_run_hex = HexWidget(on_byte=on_byte)
        self.byte_hex = {"disk": HexWidget(on_byte=on_byte), "qiov": HexWidget(on_byte=on_byte),
                         "ide": HexWidget(on_byte=on_byte)}
        self.hops_title = W.HTML()
        self.hops = W.VBox([])
        self.hops.add_class("vmio-hops")
        self.hops_close = W.Button(description="close", icon="times", tooltip="hide the byte's journey",
                                   layout=W.Layout(width="auto", display="none"))
        self.hops_close.add_class("vmio-hops-close")
        self.hops_close.on_click(self._handler(self._close_hops))
        self.hops_box = W.VBox([W.HBox([self.hops_title, self.hops_close]), self.hops])
        self.hops_box.add_class("vmio-hops-box")
        self.view_panes = {name: W.HTML() for name in VIEW_NAMES}
        # After the views, "Then and now": this stop beside the other stack (computed when it is open)
        self.then_now = W.HTML(THEN_NOW_IDLE)
        self.then_now.add_class("vmio-then-now-pane")
        self._then_now_at: int | None = None  # the stop index the page shows
        self.then_now_data: dict | None = None
        # A row of toggle buttons (they wrap) over a Stack: twelve views fit where tabs would be cut short.
        # jslink switches the view in the browser alone; the kernel hears of it only to fill Then and now.
        self.view_pick = W.ToggleButtons(options=[R.view_title(n) for n in VIEW_NAMES] + [THEN_NOW_TITLE],
                                         tooltips=[R.VIEW_HELP.get(n, "") for n in VIEW_NAMES] + [THEN_NOW_HELP],
                                         style={"button_width": "auto"})
        self.view_pick.add_class("vmio-view-pick")
        pages = []
        for name, pane in self.view_panes.items():
            if name == "kvm_run":
                pages.append(W.VBox([self.kvm_run_hex, pane]))
            elif name in ("ide", "qiov"):
                pages.append(W.VBox([pane, self.byte_hex[name]]))
            elif name == "disk":
                pages.append(W.VBox([self.byte_hex["disk"], pane]))
            else:
                pages.append(pane)
        pages.append(self.then_now)
        self.view_stack = W.Stack(pages, selected_index=0)
        self.view_stack.add_class("vmio-scroll")
        W.jslink((self.view_pick, "index"), (self.view_stack, "selected_index"))
        self.view_pick.observe(lambda ch: self._on_kernel_thread(self._show_then_now), names="index")
        self.views = W.VBox([self.view_pick, self.hops_box, self.view_stack],
                            layout=W.Layout(flex="1 1 40%", min_width="0"))
        self.views.add_class("vmio-views")
        self.views.add_class("vmio-pane")
        left = W.VBox([W.HTML('<span class="vmio-pane-title">Backtrace</span> <span class="vmio-dim">'
                              '(innermost first)</span>'), self.backtrace],
                      layout=W.Layout(flex="1 1 27%", min_width="0"))
        left.add_class("vmio-pane")
        middle = W.VBox([W.HBox([W.HTML('<span class="vmio-pane-title">Source</span>'), self.source_frame]),
                         self.source], layout=W.Layout(flex="1 1 33%", min_width="0"))
        middle.add_class("vmio-pane")
        main = W.HBox([left, middle, self.views], layout=W.Layout(width="100%"))
        main.add_class("vmio-main")
        self.bp_bar = W.Accordion([self._breakpoint_picker()], selected_index=None)
        self.bp_bar.set_title(0, "Breakpoints")
        self.bp_bar.add_class("vmio-bp-bar")

        super().__init__([W.HTML(f"<style>{_STYLE}</style>"), toolbar, self.status, self.message,
                          self.timeline, main, self.bp_bar])
        self.add_class("vmio-panel")
        self.refresh()

    def _breakpoint_picker(self) -> W.Widget:
        """A layer, then a real function in it (REGISTRY, every modelled module imported); the set ones."""
        self.choices = R.breakpoint_choices(R.all_tracepoints())
        first = next(iter(self.choices))
        self.layer_pick = W.Dropdown(options=list(self.choices), value=first, description="layer",
                                     layout=W.Layout(width="260px"))
        self.function_pick = W.Select(options=self.choices[first], rows=4, layout=W.Layout(width="400px"))
        self.layer_pick.observe(lambda change: self._on_kernel_thread(lambda: self._on_layer(change)),
                                names="value")
        self.add_function_bp = W.Button(description="Break at function", icon="stop-circle",
                                        layout=W.Layout(width="auto"))
        self.add_function_bp.on_click(self._handler(lambda: self._guard(self._add_function_breakpoint)))
        self.add_layer_bp = W.Button(description="Break on layer", layout=W.Layout(width="auto"))
        self.add_layer_bp.on_click(self._handler(lambda: self._guard(self._add_layer_breakpoint)))
        self.bp_list = W.Select(options=[], rows=3, layout=W.Layout(width="260px"))
        self.del_bp = W.Button(description="Delete", icon="trash", layout=W.Layout(width="auto"))
        self.del_bp.on_click(self._handler(lambda: self._guard(self._delete_breakpoint)))
        extra = []
        program = getattr(getattr(self.dbg, "machine", None), "program", None)
        if program is not None and "guest_label" in inspect.signature(self.dbg.break_at).parameters:
            try:
                from ..guest.symbols import symbols
                labels = sorted(symbols(program).labels.items(), key=lambda kv: kv[1])
            except Exception:  # noqa: BLE001 - no labels: no guest picker
                labels = []
            if labels:
                self.guest_pick = W.Dropdown(options=[(f"{n}  {a:#x}", n) for n, a in labels
                                                      if not n.startswith("_")],
                                             description="guest", layout=W.Layout(width="260px"))
                self.guest_pick.add_class("vmio-guest-pick")
                self.add_guest_bp = W.Button(description="Break at guest label", icon="stop-circle",
                                             layout=W.Layout(width="auto"))
                self.add_guest_bp.add_class("vmio-add-guest-bp")
                self.add_guest_bp.on_click(self._handler(lambda: self._guard(
                    lambda: self.dbg.break_at(guest_label=self.guest_pick.value))))
                extra = [W.VBox([self.guest_pick, self.add_guest_bp])]
        picker = W.HBox([W.VBox([self.layer_pick, self.function_pick]),
                         W.VBox([self.add_function_bp, self.add_layer_bp])] + extra
                        + [W.VBox([self.bp_list, self.del_bp])])
        picker.add_class("vmio-picker")
        return picker

    # -- commands (kernel thread) -------------------------------------------------------------------------
    def step(self) -> Any:
        return self._command(self.dbg.step)

    def next(self) -> Any:
        return self._command(self.dbg.next)

    def finish(self) -> Any:
        return self._command(self.dbg.finish)

    def cont(self) -> Any:
        return self._command(self.dbg.cont)

    def back(self) -> Any:
        return self._command(self.dbg.back)

    def goto(self, index: int) -> Any:
        return self._command(lambda: self.dbg.goto(index))

    def stepi(self) -> Any:
        """One guest instruction."""
        return self._command(self.dbg.stepi)

    def first(self) -> Any:
        """The start: the machine before its first event."""
        return self._command(lambda: self.dbg.goto(-1))

    def last(self) -> Any:
        """The end of the run: the guest's halt (run on to it, past the breakpoints, if not there yet)."""
        return self._command(self._run_to_end)

    def _run_to_end(self) -> Any:
        n = len(self.dbg.events)
        if self._halt_index == n:
            return self.dbg.goto(n)
        saved = [(b, b.enabled) for b in self.dbg.breakpoints]
        try:
            for b, _ in saved:
                b.enabled = False  # Breakpoint.matches skips a disabled breakpoint
            return self.dbg.cont()
        finally:
            for b, on in saved:
                b.enabled = on

    def provenance(self, source: str, offset: int) -> list:
        """Show the journey of one byte clicked in a hex view (`source`: disk, qiov, ide, pio, or guest for a
        virtio buffer; `offset`: its position there), from `Debugger.provenance`. Each hop becomes a button that goes there."""
        self._check_thread()
        self.hops_close.layout.display = ""
        try:
            query = self._provenance_query(source, offset)
            if not hasattr(self.dbg, "provenance"):
                raise RuntimeError("this debugger has no provenance() yet: the byte's journey needs it")
            hops = list(self.dbg.provenance(**query))
        except Exception as e:  # noqa: BLE001 - shown in the panel, as gdb prints an error
            self.hops_title.value = f'<div class="vmio-error">byte journey: {R.esc(type(e).__name__)}: {R.esc(e)}</div>'
            self.hops.children = []
            if self._halt_index is None and hasattr(self.dbg, "provenance"):
                # The journey is read from the recorded trace: a byte still on its way has no end there yet.
                more = W.Button(description="Record the rest of the run, then show this byte's journey "
                                            "(and come back here)", layout=W.Layout(width="100%"))
                more.add_class("vmio-hop-more")
                more.on_click(self._handler(lambda: self._provenance_after_end(source, offset)))
                self.hops.children = [more]
            return []
        what = ", ".join(f"{k}={v:#x}" for k, v in query.items())
        self.hops_title.value = (f'<div class="vmio-hops-title"><b>The journey of the byte at {R.esc(what)}</b> '
                                 f'<span class="vmio-dim">({len(hops)} hops; click one to go to that moment)</span></div>')
        buttons = []
        for h in hops:
            where = " ".join(f"{k} {h[k]:#x}" for k in ("addr", "offset") if isinstance(h.get(k), int))
            b = W.Button(description=f"#{h.get('index')} {h.get('layer')}: {h.get('what')} {where}".strip(),
                         tooltip=f"go to trace index {h.get('index')}", layout=W.Layout(width="100%"))
            b.add_class("vmio-hop")
            if isinstance(h.get("index"), int):
                b.on_click(self._handler(lambda i=h["index"]: self.goto(i)))
            else:
                b.disabled = True
            buttons.append(b)
        self.hops.children = buttons
        return hops

    def _provenance_after_end(self, source: str, offset: int) -> list:
        here = self.stop.index
        query = self._provenance_query(source, offset)  # at this moment (the IDE sector, the PIO page)
        self.last()
        self.goto(here)
        if self.stop.index != here:
            return []
        self._pending_query = query
        try:
            return self.provenance(source, offset)
        finally:
            self._pending_query = None

    def _provenance_query(self, source: str, offset: int) -> dict:
        if getattr(self, "_pending_query", None):
            return self._pending_query
        """Where a clicked byte is, as Debugger.provenance takes it: an image offset (disk, io_buffer, iovec,
        the PIO page of a transfer into the drive's current sector)."""
        if source == "disk":
            return {"image_offset": offset}
        if source == "guest":  # a virtio request's buffer in the QEMUIOVector view: offsets are guest addresses
            return {"guest_addr": offset}
        ide = self._shown.get("ide") or {}
        sector = (ide.get("drive") or {}).get("sector_num")
        if not isinstance(sector, int):
            raise ValueError("no sector in the IDE drive at this stop: click a byte in the Disk view instead")
        if source in ("qiov", "ide"):
            return {"image_offset": sector * 512 + offset}
        if source == "pio":
            pio = (self._shown.get("kvm_run") or {}).get("pio") or {}
            size = pio.get("size") or 1
            rel = offset - pio.get("data_offset", 0)
            pos = self._pio_buffer_offset(rel // size, ide)
            if pos is None or not 0 <= pos + rel % size < 512:
                raise ValueError("this PIO page's bytes are not data for the drive's sector (not the data port)")
            return {"image_offset": sector * 512 + pos + rel % size}
        raise ValueError(f"no byte journey for {source!r}")

    def _close_hops(self) -> None:
        self._check_thread()
        self.hops_title.value = ""
        self.hops.children = []
        self.hops_close.layout.display = "none"

    def _pio_buffer_offset(self, element: int, ide: dict) -> int | None:
        """Where element `element` of the PIO page of the current exit goes in (or comes from) io_buffer:
        the `ide_pio_data` event QEMU's data-port access emitted for it in this exit, or, before that
        access, the drive's data_ptr now plus the elements before it."""
        events, i = self.dbg.events, min(self.stop.index, len(self.dbg.events) - 1)
        start = i
        while start >= 0 and start > i - 2000:  # back to this exit's return to userspace
            e = events[start]
            if e[0] == 2 and e[1] == "kvm_run_exit":
                break
            start -= 1
        else:
            return None
        seen = []
        for k in range(start, i + 1):
            e = events[k]
            if e[0] == 2 and e[1] == "ide_pio_data":
                seen.append(dict(e[4] or ()).get("io_buffer_offset"))
        if element < len(seen):
            return seen[element]
        ptr = (ide.get("io_buffer") or {}).get("data_ptr")
        size = ((self._shown.get("kvm_run") or {}).get("pio") or {}).get("size") or 1
        return None if ptr is None else ptr + (element - len(seen)) * size

    def _on_slider(self, change: dict) -> None:
        if self._quiet_slider or change["new"] == self.stop.index:
            return
        self.goto(int(change["new"]))

    def _handler(self, work: Callable[[], Any]) -> Callable:
        """A widget callback that runs `work` on the kernel thread."""
        return lambda *_ignored: self._on_kernel_thread(work)

    def _on_kernel_thread(self, work: Callable[[], Any]) -> None:
        """Run `work` now if we are on the kernel thread, else queue it on the kernel thread's event loop
        (a comm message that arrived on an ipykernel 7 subshell thread)."""
        if threading.get_ident() == self._owner:
            work()
        elif self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(work)
        else:
            self._check_thread()  # raises with the reason

    def _command(self, call: Callable[[], Any]) -> Any:
        """Run one debugger command (it blocks until the model has parked), then show the new stop.
        An error is shown in the panel, as gdb prints one and stays at the prompt."""
        self._check_thread()
        before = self.stop
        for b in self.buttons.values():
            b.disabled = True
        try:
            self.stop = call()
        except Exception as e:  # noqa: BLE001
            self._error(e)
            self.stop = self.dbg.stop
            self.refresh()
            return None
        finally:
            for b in self.buttons.values():
                b.disabled = False
        if getattr(self.stop, "reason", None) == "end":  # a command after the halt: the debugger says so
            self.message.value = (f'<div class="vmio-info">{R.esc(self.stop.message)}. (In the panel: Back, First, '
                                  'the slider or the timeline.)</div>')
            self.stop = self.dbg.stop
        elif before is not None and self.stop.reason == "halted" and before.reason == "halted":
            self.message.value = ('<div class="vmio-info">Already at the end: the guest halted, there is nothing '
                                  'after this. Use Back, First, the slider or the timeline to look at earlier '
                                  'moments.</div>')
        else:
            self.message.value = ""
        self.refresh()
        return self.stop

    def _guard(self, fn: Callable[[], None]) -> None:
        self._check_thread()
        try:
            fn()
            self.message.value = ""
        except Exception as e:  # noqa: BLE001
            self._error(e)
        self._show_breakpoints()

    def _error(self, e: BaseException) -> None:
        self.message.value = f'<pre class="vmio-error">{R.esc(type(e).__name__)}: {R.esc(e)}</pre>'

    # -- breakpoints ----------------------------------------------------------------------------------------
    def _on_layer(self, change: dict) -> None:
        self.function_pick.options = self.choices[change["new"]]

    def _add_function_breakpoint(self) -> None:
        if self.function_pick.value is None:
            raise ValueError("pick a function first")
        self.dbg.break_at(self.function_pick.value, layer=self.layer_pick.value)

    def _add_layer_breakpoint(self) -> None:
        self.dbg.break_at(layer=self.layer_pick.value)

    def _delete_breakpoint(self) -> None:
        if self.bp_list.value is None:
            raise ValueError("pick a breakpoint to delete")
        self.dbg.delete(self.bp_list.value)

    def _show_breakpoints(self) -> None:
        bps = self.dbg.breakpoints
        self.bp_list.options = [(str(bp), bp) for bp in bps]
        if hasattr(self, "bp_bar"):
            self.bp_bar.set_title(0, f"Breakpoints ({len(bps)} set)" if bps else "Breakpoints (none set: open to add one)")

    # -- reading the parked state -------------------------------------------------------------------------
    def refresh(self) -> None:
        """Show the current stop. Only on the kernel thread, with the model parked."""
        self._check_thread()
        stop = self.stop
        if stop.reason == "halted":
            self._halt_index = stop.index
        if stop.index != self._shown_index:  # a new moment: what was on screen becomes "the previous stop"
            self._prev = self._shown
            self._shown = {}
            self._shown_index = stop.index
        self.status.value = R.stop_header(stop) + self._reference(stop)
        self._show_breakpoints()
        self.backtrace.value = R.backtrace_html(stop.backtrace) if stop.backtrace or stop.reason != "halted" else (
            '<div class="vmio-backtrace"><i>the run is over: no thread is inside a modelled function any more '
            '(the Threads view shows where each one waits)</i></div>')
        frames = stop.backtrace
        opts = [(f"#{f.level} {f.function}", f.level) for f in frames if f.layer != "guest"]
        opts.insert(0 if stop.kind == "guest" or not opts else len(opts), ("guest code (assembly)", -1))
        if list(self.source_frame.options) != opts:
            self.source_frame.options = opts
        self.source_frame.value = opts[0][1]
        self._show_source()
        self._refresh_timeline(stop.index)
        self._refresh_views(stop)
        self._show_then_now()

    def _reference(self, stop: Any) -> str:
        """The short reference to this moment (`stop.reference` once the debugger gives one)."""
        ref = getattr(stop, "reference", None)
        if not ref:
            cfg = getattr(self.dbg, "_config", {}) or {}
            params = ", ".join(f"{k}={cfg[k]!r}" for k in ("op", "lba", "sectors", "seed") if k in cfg)
            ref = f"Machine({params}).debugger().goto({stop.index})"
        return f'<div class="vmio-dim vmio-reference">to share this moment: <code>{R.esc(ref)}</code></div>'

    def _show_source(self, *_: Any) -> None:
        self._check_thread()
        stop, level = self.stop, self.source_frame.value
        if level == -1 or level is None:
            self.source.value = self._guest_source()
        else:
            self.source.value = S.frame_source_html(stop.backtrace, level, stop.kind)

    def _guest_source(self) -> str:
        m = self.dbg.machine
        program = getattr(m, "program", None)
        if program is None:
            return '<i>this guest was given as raw bytes: no assembly source to show (see the CPU view)</i>'
        guest = getattr(self.stop, "guest", None)  # a guest stop: the live RIP
        rip = guest.get("rip") if isinstance(guest, dict) else None
        if rip is None:
            try:
                rip = self.stop.views["registers"]["regs"]["rip"]
            except Exception:  # noqa: BLE001
                rip = None
        return S.guest_listing_html(program, program.code, rip)

    def _refresh_timeline(self, index: int) -> None:
        events = self.dbg.events
        key = (len(events), events[-1] if events else None)
        if key != self._timeline_key:  # the trace grew (or a replay rewrote its end)
            self.timeline.data = R.timeline_data(events, REGISTRY, index)
            self._timeline_key = key
        self.timeline.detail = R.timeline_detail(events, REGISTRY, index, self.timeline.data["lanes"],
                                                 self.window)
        self.timeline.index = index
        self._quiet_slider = True
        try:
            top = len(events) if self._halt_index == len(events) else max(len(events) - 1, 0)
            self.slider.max = max(top, index, 0)
            self.slider.value = index
        finally:
            self._quiet_slider = False

    def _refresh_views(self, stop: Any) -> None:
        for name, pane in self.view_panes.items():
            try:
                view = stop.views[name]
                prev = self._prev.get(name)
                self._shown[name] = view
                pane.value = R.view_html(name, view, prev)
                if name == "kvm_run":
                    self.kvm_run_hex.regions = R.kvm_run_regions(view, prev)
                elif name == "disk":
                    self.byte_hex["disk"].regions = R.disk_regions(view, prev)
                elif name == "qiov":
                    self.byte_hex["qiov"].regions = R.qiov_regions(view, prev)
                elif name == "ide":
                    self.byte_hex["ide"].regions = R.io_buffer_region(view, prev)
            except Exception as e:  # noqa: BLE001 - one view failing must not hide the others
                pane.value = f'<pre class="vmio-error">{R.esc(type(e).__name__)}: {R.esc(e)}</pre>'

    def _show_then_now(self) -> None:
        """Fill the Then and now page for the current stop, if it is the page open (it runs the default
        guest on both stacks in machines of its own, once per configuration: vmio_edu.trace.thenandnow)."""
        self._check_thread()
        if self.view_pick.index != len(VIEW_NAMES) or self._then_now_at == self.stop.index:
            return
        from ..trace.thenandnow import then_and_now
        from .thenandnow import then_and_now_html
        self._then_now_at = self.stop.index
        try:
            self.then_now_data = then_and_now(self.dbg, self.stop)
            self.then_now.value = then_and_now_html(self.then_now_data)
        except Exception as e:  # noqa: BLE001 - shown in the page, as a view's error is
            self.then_now_data = {"error": f"{type(e).__name__}: {e}"}
            self.then_now.value = f'<pre class="vmio-error">{R.esc(type(e).__name__)}: {R.esc(e)}</pre>'

    def _check_thread(self) -> None:
        if threading.get_ident() != self._owner:
            raise RuntimeError("DebuggerPanel is updated only on the kernel thread that created it "
                               "(widget updates from other threads are lost on ipykernel 7)")
