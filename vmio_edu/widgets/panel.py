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
import traceback
from typing import Any, Callable

import ipywidgets as W

from ..trace.tracepoint import REGISTRY
from . import render as R
from .anywidgets import HexWidget, TimelineWidget


def _load_all_tracepoints() -> None:
    """Import every modelled module so REGISTRY lists all real functions (the picker shows them all)."""
    import importlib
    import pkgutil

    import vmio_edu

    for mod in pkgutil.walk_packages(vmio_edu.__path__, "vmio_edu."):
        if mod.name.startswith(("vmio_edu.widgets", "vmio_edu.grading", "vmio_edu.cli")):
            continue
        try:
            importlib.import_module(mod.name)
        except Exception:  # noqa: BLE001 - an optional engine (e.g. no ctypes KVM) must not hide the rest
            pass


class DebuggerPanel(W.VBox):
    """A JupyterLab panel over a vmio-edu debugger. Display it as a cell's last expression."""

    def __init__(self, dbg: Any, *, window: int = 60) -> None:
        self.dbg = dbg
        self.window = window
        self._owner = threading.get_ident()  # the kernel thread: the only one allowed to update widgets
        try:  # its event loop (ipykernel runs cells inside it), to hand work over from subshell threads
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self.stop = getattr(dbg, "stop", None)
        self._timeline_len = -1

        # controls
        self.buttons: dict[str, W.Button] = {}
        for name, icon, tip in (("Step", "arrow-down", "the next trace point on any thread"),
                                ("Next", "arrow-right", "the next trace point in this function, not deeper"),
                                ("Finish", "arrow-up", "until this function returns"),
                                ("Continue", "play", "until a breakpoint or the guest halts"),
                                ("Back", "undo", "the previous trace point (time travel)")):
            b = W.Button(description=name, icon=icon, tooltip=tip, layout=W.Layout(width="auto"))
            b.add_class(f"vmio-btn-{name.lower()}")
            b.on_click(self._handler(getattr(self, "cont" if name == "Continue" else name.lower())))
            self.buttons[name.lower()] = b
        self.status = W.HTML(R.stop_header(self.stop))
        self.status.add_class("vmio-status")
        self.message = W.HTML("")

        # breakpoint picker: a layer, then a real function in it
        _load_all_tracepoints()
        self.choices = R.breakpoint_choices(REGISTRY)
        first = next(iter(self.choices))
        self.layer_pick = W.Dropdown(options=list(self.choices), value=first, description="layer",
                                     layout=W.Layout(width="260px"))
        self.function_pick = W.Select(options=self.choices[first], rows=8, layout=W.Layout(width="420px"))
        self.layer_pick.observe(lambda change: self._on_kernel_thread(lambda: self._on_layer(change)),
                                names="value")
        self.add_function_bp = W.Button(description="Break at function", icon="stop-circle",
                                        layout=W.Layout(width="auto"))
        self.add_function_bp.on_click(self._handler(lambda: self._guard(self._add_function_breakpoint)))
        self.add_layer_bp = W.Button(description="Break on layer", layout=W.Layout(width="auto"))
        self.add_layer_bp.on_click(self._handler(lambda: self._guard(self._add_layer_breakpoint)))
        self.bp_list = W.Select(options=[], rows=5, description="set", layout=W.Layout(width="320px"))
        self.del_bp = W.Button(description="Delete", icon="trash", layout=W.Layout(width="auto"))
        self.del_bp.on_click(self._handler(lambda: self._guard(self._delete_breakpoint)))
        picker = W.HBox([W.VBox([self.layer_pick, self.function_pick]),
                         W.VBox([self.add_function_bp, self.add_layer_bp]),
                         W.VBox([self.bp_list, self.del_bp])])
        picker.add_class("vmio-picker")

        self.backtrace = W.HTML(R.backtrace_html([]))
        self.backtrace.add_class("vmio-backtrace-pane")
        self.timeline = TimelineWidget(on_goto=lambda i: self._on_kernel_thread(lambda: self.goto(i)))
        self.kvm_run_hex = HexWidget()
        self.views = W.Tab()
        self.views.add_class("vmio-views")

        super().__init__([
            W.HBox(list(self.buttons.values())), self.status, self.message,
            W.Accordion([picker], titles=("Breakpoints",), selected_index=None),
            W.HTML("<b>Backtrace</b> (innermost first)"), self.backtrace,
            W.HTML("<b>Timeline</b>: layers × threads"), self.timeline,
            W.HTML("<b>Views</b>"), self.views,
        ])
        self.add_class("vmio-panel")
        self._show_breakpoints()
        self.refresh()

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
        self._check_thread()
        for b in self.buttons.values():
            b.disabled = True
        try:
            stop = call()  # blocks until the model has parked
        except Exception as e:  # noqa: BLE001 - show it in the panel, as gdb prints an error and stays
            self.message.value = f'<pre class="vmio-error" style="color:#b00">{R.esc(_brief(e))}</pre>'
            return None
        finally:
            for b in self.buttons.values():
                b.disabled = False
        self.message.value = ""
        if stop is not None:
            self.stop = stop
        self.refresh()
        return stop

    def _guard(self, fn: Callable[[], None]) -> None:
        self._check_thread()
        try:
            fn()
            self.message.value = ""
        except Exception as e:  # noqa: BLE001
            self.message.value = f'<pre class="vmio-error" style="color:#b00">{R.esc(_brief(e))}</pre>'
        self._show_breakpoints()

    # -- breakpoints ----------------------------------------------------------------------------------------
    def _on_layer(self, change: dict) -> None:
        self.function_pick.options = self.choices[change["new"]]

    def _add_function_breakpoint(self) -> None:
        name = self.function_pick.value
        if name is None:
            raise ValueError("pick a function first")
        self.dbg.break_at(name)

    def _add_layer_breakpoint(self) -> None:
        self.dbg.break_at(layer=self.layer_pick.value)

    def _delete_breakpoint(self) -> None:
        bp = self.bp_list.value
        if bp is None:
            raise ValueError("pick a breakpoint to delete")
        self.dbg.delete(bp)

    def _show_breakpoints(self) -> None:
        bps = list(getattr(self.dbg, "breakpoints", []) or [])
        self.bp_list.options = [(R.breakpoint_label(bp), bp) for bp in bps]

    # -- reading the parked state -------------------------------------------------------------------------
    def refresh(self) -> None:
        """Show the current stop. Only on the kernel thread, with the model parked."""
        self._check_thread()
        stop = self.stop
        self.status.value = R.stop_header(stop)
        self.backtrace.value = R.backtrace_html(getattr(stop, "backtrace", None) or [])
        self._refresh_timeline(getattr(stop, "index", None))
        self._refresh_views(getattr(stop, "views", None) or {})

    def _refresh_timeline(self, index: int | None) -> None:
        events = _events(self.dbg)
        if len(events) != self._timeline_len:
            self.timeline.data = R.timeline_data(events, REGISTRY, index)
            self._timeline_len = len(events)
        self.timeline.detail = R.timeline_detail(events, REGISTRY, index, self.timeline.data["lanes"],
                                                 self.window)
        self.timeline.index = -1 if index is None else int(index)

    def _refresh_views(self, views: dict) -> None:
        children, titles = [], []
        for name, view in views.items():
            body = W.HTML(R.view_html(name, view))
            if name == "kvm_run":
                self.kvm_run_hex.regions = R.kvm_run_regions(view)
                body = W.VBox([self.kvm_run_hex, body])
            children.append(body)
            titles.append(R.view_title(name))
        old = list(self.views.children)
        self.views.children = children
        self.views.titles = tuple(titles)
        for w in old:
            if w is not self.kvm_run_hex and w not in children:
                w.close()

    def _check_thread(self) -> None:
        if threading.get_ident() != self._owner:
            raise RuntimeError("DebuggerPanel is updated only on the kernel thread that created it "
                               "(widget updates from other threads are lost on ipykernel 7)")


def _events(dbg: Any) -> list:
    for path in (("events",), ("trace", "events"), ("recorder", "events"), ("machine", "trace", "events")):
        obj = dbg
        for p in path:
            obj = getattr(obj, p, None)
        if obj is not None:
            return obj
    return []


def _brief(e: BaseException) -> str:
    last = traceback.extract_tb(e.__traceback__)[-1:] if e.__traceback__ else []
    where = f"  ({last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno})" if last else ""
    return f"{type(e).__name__}: {e}{where}"
