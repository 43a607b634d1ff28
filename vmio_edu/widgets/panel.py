"""The debugger panel: controls, breakpoint picker, backtrace, swimlane timeline and the views.

    from vmio_edu import Machine
    from vmio_edu.widgets import DebuggerPanel
    dbg = Machine().debugger()
    dbg.break_at("bdrv_aio_writev")
    DebuggerPanel(dbg)              # Continue runs to the breakpoint; Step, Next, Finish, Back move on

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
import threading
from typing import Any, Callable

import ipywidgets as W

from ..trace.tracepoint import REGISTRY
from ..trace.views import VIEW_NAMES
from . import render as R
from .anywidgets import HexWidget, TimelineWidget

BUTTONS = (("Step", "arrow-down", "the next trace point entry or exit, on any thread"),
           ("Next", "arrow-right", "the next entry or exit at this depth or shallower, not deeper"),
           ("Finish", "arrow-up", "until this function returns"),
           ("Continue", "play", "until a breakpoint is hit or the guest halts"),
           ("Back", "undo", "the previous entry or exit (time travel: replays the run)"))


class DebuggerPanel(W.VBox):
    """A JupyterLab panel over a `vmio_edu.trace.debugger.Debugger`. Display it as a cell's last expression.

    Each button has a method of the same name (`cont` for Continue); they return the new `Stop`.
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

        self.buttons: dict[str, W.Button] = {}
        for name, icon, tip in BUTTONS:
            b = W.Button(description=name, icon=icon, tooltip=tip, layout=W.Layout(width="auto"))
            b.add_class(f"vmio-btn-{name.lower()}")
            b.on_click(self._handler(getattr(self, "cont" if name == "Continue" else name.lower())))
            self.buttons[name.lower()] = b
        self.status = W.HTML()
        self.status.add_class("vmio-status")
        self.message = W.HTML()

        self.timeline = TimelineWidget(on_goto=lambda i: self._on_kernel_thread(lambda: self.goto(i)))
        self.backtrace = W.HTML()
        self.backtrace.add_class("vmio-backtrace-pane")
        self.kvm_run_hex = HexWidget()
        self.view_panes = {name: W.HTML() for name in VIEW_NAMES}
        # A row of toggle buttons (they wrap) over a Stack: twelve views fit where tabs would be cut short.
        # jslink switches the view in the browser alone, with no message to the kernel.
        self.view_pick = W.ToggleButtons(options=[R.view_title(n) for n in VIEW_NAMES],
                                         style={"button_width": "auto"})
        self.view_pick.add_class("vmio-view-pick")
        self.view_stack = W.Stack([W.VBox([self.kvm_run_hex, pane]) if name == "kvm_run" else pane
                                   for name, pane in self.view_panes.items()], selected_index=0)
        W.jslink((self.view_pick, "index"), (self.view_stack, "selected_index"))
        self.views = W.VBox([self.view_pick, self.view_stack],
                            layout=W.Layout(flex="1 1 50%", min_width="360px", overflow="auto"))
        self.views.add_class("vmio-views")
        left = W.VBox([W.HTML("<b>Backtrace</b> (innermost first)"), self.backtrace],
                      layout=W.Layout(flex="1 1 50%", min_width="420px", max_height="600px", overflow="auto"))

        super().__init__([
            W.HBox(list(self.buttons.values())), self.status, self.message,
            W.HTML("<b>Timeline</b>: the recorded trace, layers × threads (click to go there)"), self.timeline,
            W.HBox([left, self.views], layout=W.Layout(width="100%")),
            self._breakpoint_picker(),
        ])
        self.add_class("vmio-panel")
        self.refresh()

    def _breakpoint_picker(self) -> W.Widget:
        """A layer, then a real function in it (REGISTRY, every modelled module imported); the set ones."""
        self.choices = R.breakpoint_choices(R.all_tracepoints())
        first = next(iter(self.choices))
        self.layer_pick = W.Dropdown(options=list(self.choices), value=first, description="layer",
                                     layout=W.Layout(width="260px"))
        self.function_pick = W.Select(options=self.choices[first], rows=6, layout=W.Layout(width="400px"))
        self.layer_pick.observe(lambda change: self._on_kernel_thread(lambda: self._on_layer(change)),
                                names="value")
        self.add_function_bp = W.Button(description="Break at function", icon="stop-circle",
                                        layout=W.Layout(width="auto"))
        self.add_function_bp.on_click(self._handler(lambda: self._guard(self._add_function_breakpoint)))
        self.add_layer_bp = W.Button(description="Break on layer", layout=W.Layout(width="auto"))
        self.add_layer_bp.on_click(self._handler(lambda: self._guard(self._add_layer_breakpoint)))
        self.bp_list = W.Select(options=[], rows=4, layout=W.Layout(width="260px"))
        self.del_bp = W.Button(description="Delete", icon="trash", layout=W.Layout(width="auto"))
        self.del_bp.on_click(self._handler(lambda: self._guard(self._delete_breakpoint)))
        picker = W.HBox([W.HTML("<b>Breakpoints</b>"), W.VBox([self.layer_pick, self.function_pick]),
                         W.VBox([self.add_function_bp, self.add_layer_bp]), W.VBox([self.bp_list, self.del_bp])])
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
        self.message.value = f'<pre class="vmio-error" style="color:#b00">{R.esc(type(e).__name__)}: {R.esc(e)}</pre>'

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
        self.bp_list.options = [(str(bp), bp) for bp in self.dbg.breakpoints]

    # -- reading the parked state -------------------------------------------------------------------------
    def refresh(self) -> None:
        """Show the current stop. Only on the kernel thread, with the model parked."""
        self._check_thread()
        stop = self.stop
        self.status.value = R.stop_header(stop)
        self._show_breakpoints()
        self.backtrace.value = R.backtrace_html(stop.backtrace)
        self._refresh_timeline(stop.index)
        self._refresh_views(stop)

    def _refresh_timeline(self, index: int) -> None:
        events = self.dbg.events
        key = (len(events), events[-1] if events else None)
        if key != self._timeline_key:  # the trace grew (or a replay rewrote its end)
            self.timeline.data = R.timeline_data(events, REGISTRY, index)
            self._timeline_key = key
        self.timeline.detail = R.timeline_detail(events, REGISTRY, index, self.timeline.data["lanes"],
                                                 self.window)
        self.timeline.index = index

    def _refresh_views(self, stop: Any) -> None:
        for name, pane in self.view_panes.items():
            try:
                view = stop.views[name]
                pane.value = R.view_html(name, view)
                if name == "kvm_run":
                    self.kvm_run_hex.regions = R.kvm_run_regions(view)
            except Exception as e:  # noqa: BLE001 - one view failing must not hide the others
                pane.value = f'<pre class="vmio-error" style="color:#b00">{R.esc(type(e).__name__)}: {R.esc(e)}</pre>'

    def _check_thread(self) -> None:
        if threading.get_ident() != self._owner:
            raise RuntimeError("DebuggerPanel is updated only on the kernel thread that created it "
                               "(widget updates from other threads are lost on ipykernel 7)")
