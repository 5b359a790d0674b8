"""The decodelab app: compose, model loading, and the batched engine run on a worker thread."""

from __future__ import annotations

import collections
import dataclasses
import threading
from importlib import resources

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Footer, Static, TextArea

from decodelab.engine.config import DecodingConfig
from .actions import PaneActions
from .branching import BranchActions
from .file_actions import FileActions
from .messages import LoadFailed, LoadProgress, ModelLoaded, RunFailed, RunFinished
from .preflight import run_error
from .state import PaneState
from .token_bytes import TokenBytes
from .widgets.inspector import Inspector
from .widgets.legend import Legend
from .widgets.pane import Pane
from .widgets.pane_strip import PaneStrip

REPAINT_HZ = 30


class DecodelabApp(BranchActions, PaneActions, FileActions, App):
    """One prompt, many decoding configs, side by side."""

    CSS_PATH = str(resources.files("decodelab.themes") / "app.tcss")
    TITLE = "decodelab"
    BINDINGS = [
        Binding("ctrl+r", "run", "Run"),
        Binding("escape", "cancel", "Cancel"),
        Binding("a", "add_pane", "Add"),
        Binding("e", "edit", "Edit"),
        Binding("h", "heatmap", "Heatmap"),
        Binding("i", "inspector", "Inspect"),
        Binding("s", "save_preset", "Save"),
        Binding("ctrl+g", "rerun_same", "Rerun same seeds", show=False),
        Binding("full_stop", "rerun_pane", "Rerun pane", show=False),
        Binding("d", "duplicate", "Duplicate", show=False),
        Binding("x,delete", "remove", "Remove", show=False),
        Binding("u", "undo_remove", "Undo remove", show=False),
        Binding("k", "stop_pane", "Stop pane", show=False),
        Binding("less_than_sign", "move(-1)", "Move left", show=False),
        Binding("greater_than_sign", "move(1)", "Move right", show=False),
        Binding("b", "branch", "Branch", show=False),
        Binding("v", "diff", "Diff", show=False),
        Binding("c", "copy_text", "Copy text", show=False),
        Binding("y", "copy_config", "Copy config", show=False),
        Binding("ctrl+s", "save_session", "Save session", show=False),
        Binding("ctrl+o", "open_session", "Open session", show=False),
        Binding("ctrl+t", "toggle_chat", "Chat template", show=False),
        Binding("m", "change_model", "Model", show=False),
        Binding("p", "focus_prompt", "Prompt", show=False),
        Binding("t", "toggle_theme", "Theme", show=False),
        Binding("A", "arena", "Blind A/B", show=False),
        Binding("S", "sweep", "Sweep", show=False),
    ] + [Binding(str(n), f"focus_pane({n - 1})", f"Pane {n}", show=False) for n in range(1, 10)]

    def __init__(self, spec=None, configs: list[DecodingConfig] | None = None, prompt: str | None = None,
                 run_at_start: bool = False, loaded=None, api_key: str | None = None) -> None:
        super().__init__()
        from decodelab.engine.backends.loading import ModelSpec

        self.spec = spec or ModelSpec()
        self.api_key = api_key  # remote servers only; never written to a session
        self.loaded = loaded
        self.initial_configs = list(configs or [])
        self.initial_prompt = prompt or ""
        self.run_at_start = run_at_start
        self.measure = "prob"
        self.diff_mode = "off"
        self.running = False
        self.loading = False
        """A model load is under way (ctrl+r says so instead of 'no model')."""
        self.switched_model = False
        """The model being loaded was picked with m (not given on the command line)."""
        self.run_id = 0
        self.cancel_event = threading.Event()
        self.stop_rows: set[int] = set()  # rows of the current run stopped one by one (k)
        self.run_states: list[PaneState] = []  # the current run's panes, by row
        self.before_run: dict[int, PaneState] = {}  # each running pane's previous output, kept until it succeeds
        self.removed: list[tuple[int, PaneState]] = []  # removed panes (index, state), for u to undo
        self.pending: collections.deque = collections.deque()
        self.engine_threads: set[str] = set()
        self.current_pane: Pane | None = None
        self.token_bytes = None
        """token id -> bytes for the loaded tokenizer (shows tokens that hold part of a character)."""

    def compose(self) -> ComposeResult:
        yield Static("loading…", id="model-bar")
        yield TextArea(self.initial_prompt, id="prompt", soft_wrap=True, show_line_numbers=False)
        with Horizontal(id="workspace"):
            with PaneStrip(id="panes"):
                for config in self.initial_configs:
                    yield Pane(PaneState(config))
            yield Inspector(id="inspector")
        yield Legend(id="legend")
        yield Footer()

    def on_mount(self) -> None:
        from decodelab.themes.themes import THEMES

        for theme in THEMES:
            self.register_theme(theme)
        self.theme = "decodelab-dark"
        self.query_one("#prompt", TextArea).border_title = "prompt · ctrl+r run · esc to panes · ctrl+p commands"
        self.query_one(Legend).show(self.measure)
        self.set_interval(1 / REPAINT_HZ, self.drain_events)
        self.on_resize()
        if self.loaded is not None:
            self.post_message(ModelLoaded(self.loaded))
        else:
            self.load(self.spec)
        panes = self.panes()
        if panes:
            self.current_pane = panes[0]
            if self.run_at_start:
                panes[0].focus()

    def check_action(self, action: str, parameters) -> bool | None:
        """The main screen's actions are hidden and off while another screen (A/B, sweep, a dialog) is up."""
        if len(self.screen_stack) > 1 and any(b.action.split("(")[0] == action for b in self.BINDINGS):
            return None
        return True

    def on_resize(self, event=None) -> None:
        width = event.size.width if event is not None else self.size.width  # self.size may lag a resize
        self.screen.set_class(width < 110, "-narrow")
        self.screen.set_class(width < 76, "-stacked")
        self.call_after_refresh(self.layout_panes)

    def layout_panes(self) -> None:
        """Whole panes side by side (the strip also does this whenever its own size changes)."""
        self.query_one(PaneStrip).layout_panes()
        self.refresh_inspector()  # a removed or renumbered pane's token never lingers there
        pane = self.pane()
        if pane is not None:
            self.call_after_refresh(pane.scroll_visible, animate=False)

    # -- model loading ---------------------------------------------------------------------------------
    def load(self, spec) -> None:
        self.loading = True
        self._load_worker(spec)

    @work(thread=True, exclusive=True, group="load")
    def _load_worker(self, spec) -> None:
        from decodelab.engine.backends.loading import ModelLoadError, load_model

        try:
            loaded = load_model(spec, lambda stage, f: self.post_message(LoadProgress(stage, f)), api_key=self.api_key)
        except ModelLoadError as exc:
            self.post_message(LoadFailed(str(exc)))
            return
        except Exception as exc:  # noqa: BLE001 - the app must survive any load failure
            self.post_message(LoadFailed(f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(ModelLoaded(loaded))

    def on_load_progress(self, message: LoadProgress) -> None:
        pct = f"{message.fraction * 100:.0f}% " if message.fraction is not None else ""
        self.query_one("#model-bar", Static).update(f"loading {self.spec.path}: {pct}{message.stage}…")

    def on_model_loaded(self, message: ModelLoaded) -> None:
        self.loading = False
        self.loaded = message.loaded
        if self.switched_model:
            self.switched_model = False
            self.chat_for_new_model()
        self.spec = self.loaded.spec
        tokenizer = getattr(self.loaded, "tokenizer", None)
        self.token_bytes = TokenBytes(tokenizer) if tokenizer is not None else None
        self.update_model_bar()
        self.update_legend()
        if self.run_at_start and self.initial_prompt:
            self.run_at_start = False
            if len(self.screen_stack) > 1:  # a dialog is open: don't start behind it, say how to start
                self.notify("The model is loaded: close the dialog and press ctrl+r to run the prompt.")
            else:
                self.action_run()

    def update_model_bar(self) -> None:
        chat = " · chat" if self.loaded.spec.chat else ""
        self.query_one("#model-bar", Static).update(f"{self.loaded.describe()}{chat}")

    def on_load_failed(self, message: LoadFailed) -> None:
        from .screens.ask import AskText

        self.loading = False
        if self.loaded is not None:  # the working model stays until a new one has loaded
            failed, self.spec = self.spec.path, self.loaded.spec
            self.update_model_bar()
            self.notify(f"Could not load {failed}: {message.error}\nStill using {self.loaded.describe()}.",
                        title="Model not loaded", severity="error", timeout=15)
            return
        self.query_one("#model-bar", Static).update("no model loaded — press m to load one")

        def retry(path: str | None) -> None:
            if path:
                self.load_path(path)

        self.push_screen(AskText("The model could not be loaded. Try another (folder, cached hub id, or demo):",
                                 self.spec.path, detail=message.error), retry)

    def load_path(self, path: str) -> None:
        from decodelab.engine.config import ConfigError

        try:
            self.spec = dataclasses.replace(self.spec, path=path)
        except ConfigError as exc:
            self.notify(str(exc), severity="error")
            return
        self.switched_model = True  # chat mode follows the new model's template once it is in
        self.load(self.spec)  # self.loaded keeps working until the new model is in

    # -- running -------------------------------------------------------------------------------------
    def panes(self) -> list[Pane]:
        return list(self.query(Pane))

    def start_run(self, panes: list[Pane], keep_seeds: bool = False, prefix: list[int] | None = None,
                  prefix_steps: list | None = None, prompt: str | None = None) -> None:
        if len(self.screen_stack) > 1:
            return  # a dialog is open: finish it first
        if self.loaded is None:
            if self.loading:
                self.notify("The model is still loading (see the bar at the top): press ctrl+r once it is in.",
                            severity="warning")
            else:
                self.notify("No model is loaded yet (press m to load one).", severity="warning")
            return
        if self.running:
            self.notify("A run is in progress: Esc cancels it.", severity="warning")
            return
        if not panes:
            self.notify("No panes to run: press a to add one.", severity="warning")
            return
        if prompt is None:
            prompt = self.query_one("#prompt", TextArea).text
        configs = []
        for pane in panes:
            config = pane.state.config
            if keep_seeds and config.seed is None and pane.state.seed is not None:
                config = config.replace(seed=pane.state.seed)
            configs.append(config)
        problem = run_error(self.loaded, prompt, configs)
        if problem:  # refused before anything is touched: every pane keeps its text
            self.notify(problem, title="Not run", severity="error", timeout=15)
            return
        self.before_run = {id(p.state): dataclasses.replace(p.state) for p in panes}
        for pane in panes:
            pane.state.begin(prefix_steps, len(prefix) - 1 if prefix else None, prompt)
            pane.diverge_at = None
            pane.refresh_view()
        self.refresh_inspector()
        self.running = True
        self.run_id += 1
        self.cancel_event, self.stop_rows = threading.Event(), set()
        self.run_states = [p.state for p in panes]
        self.run_engine(self.run_id, self.run_states, configs, prompt, prefix or [])

    @work(thread=True, exclusive=True, group="engine")
    def run_engine(self, run_id: int, states: list[PaneState], configs, prompt: str, prefix: list[int]) -> None:
        from decodelab.engine.backends.base import generate_many
        from decodelab.engine.results import GenerationError

        def on_step(event) -> None:  # worker thread: only hand the event over
            self.engine_threads.add(threading.current_thread().name)
            self.pending.append((run_id, states, event))

        try:
            completions = generate_many(self.loaded, prompt, configs, on_step=on_step, cancel=self.cancel_event,
                                        prefix_ids=prefix, stop_rows=self.stop_rows)
        except GenerationError as exc:
            self.post_message(RunFailed(run_id, states, str(exc)))
            return
        except Exception as exc:  # noqa: BLE001 - never let a run take the app down
            self.post_message(RunFailed(run_id, states, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(RunFinished(run_id, states, completions))

    def drain_events(self) -> None:
        """Apply every step that arrived since the last repaint, then repaint each changed pane once."""
        changed: set[int] = set()
        while self.pending:
            run_id, states, event = self.pending.popleft()
            if run_id != self.run_id:
                continue
            for row, steps in event.tokens.items():
                states[row].steps.extend(steps)
                states[row].text = event.texts.get(row, states[row].text)
                changed.add(id(states[row]))
            for row, reason in event.finished.items():
                states[row].stop_reason = reason
                changed.add(id(states[row]))
        if changed:
            for pane in self.panes():
                if id(pane.state) in changed:
                    pane.refresh_view(scroll=True)

    def on_run_finished(self, message: RunFinished) -> None:
        self.drain_events()
        self.running = False
        for state, completion in zip(message.panes, message.completions):
            state.finish(completion)
        self.refresh_panes()
        if self.cancel_event.is_set():
            self.notify("Run cancelled: partial outputs kept.")

    def on_run_failed(self, message: RunFailed) -> None:
        """The run produced nothing usable: each pane gets its previous output back, with the error beside it."""
        self.drain_events()
        self.running = False
        for state in message.panes:
            before = self.before_run.get(id(state))
            if before is not None and not state.steps:
                for f in dataclasses.fields(before):
                    setattr(state, f.name, getattr(before, f.name))
            state.running = False
            state.error = message.error
        self.refresh_panes()
        self.notify(message.error, title="Run failed", severity="error", timeout=10)

    def action_run(self) -> None:
        self.start_run(self.panes())

    def action_rerun_same(self) -> None:
        self.start_run(self.panes(), keep_seeds=True)

    def action_stop_pane(self) -> None:
        """k: stop the focused pane's run while the other panes go on."""
        pane = self.pane()
        rows = [i for i, state in enumerate(self.run_states) if state is pane.state] if pane is not None else []
        if not self.running or not rows or not pane.state.running:
            self.notify("This pane is not running (Esc cancels a whole run).", severity="warning")
            return
        if not self.loaded.can("stop_rows") or pane.state.config.num_beams > 1:
            self.notify("Only a local non-beam pane can be stopped alone: Esc cancels the whole run.",
                        severity="warning")
            return
        self.stop_rows.add(rows[0])
        others = any(state.running and state is not pane.state for state in self.run_states)
        self.notify(f"Stopping {pane.state.config.name}" + ("; the other panes go on." if others else "."))

    def action_focus_prompt(self) -> None:
        """p: back to the prompt from a pane or the inspector (Esc leaves it again)."""
        self.query_one("#prompt", TextArea).focus()

    async def action_quit(self) -> None:
        """ctrl+q: cancel what is generating (the run, an A/B round, a sweep) so the process ends at once."""
        self.cancel_event.set()
        for screen in self.screen_stack:
            cancel = getattr(screen, "cancel_work", None)
            if cancel is not None:
                cancel()
        self.exit()

    def action_cancel(self) -> None:
        """Esc: cancel a run (and leave the prompt); else leave the prompt for the panes; else close the inspector."""
        in_prompt = self.focused is self.query_one("#prompt", TextArea)
        if self.running:
            self.cancel_event.set()
            if in_prompt and self.pane() is not None:
                self.pane().focus()
        elif in_prompt:
            pane = self.pane()
            if pane is not None:
                pane.focus()
        elif self.query_one("#inspector").has_class("-visible"):
            self.action_inspector()


def run_app(spec=None, configs=None, prompt=None, run_at_start=False, api_key=None) -> None:
    DecodelabApp(spec=spec, configs=configs, prompt=prompt, run_at_start=run_at_start, api_key=api_key).run()
    busy = [t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive() and not t.daemon]
    if busy:
        # A worker is still inside a forward pass (it was cancelled and stops at its next step) or a model
        # load that cannot be interrupted. The terminal is restored and nothing is left to save, so leave now
        # instead of waiting for it: ctrl+q must quit at once.
        import os
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
