"""The decodelab app: compose, model loading, and the batched engine run on a worker thread."""

from __future__ import annotations

import dataclasses
from importlib import resources

from decodelab.engine.config import DecodingConfig
from decodelab.engine.decoding.token_bytes import TokenBytes
from textual import work
from textual.app import App, ComposeResult
from textual.containers import Horizontal
from textual.widgets import Footer, Static, TextArea

from .actions import PaneActions
from .branching import BranchActions
from .conversation import ConversationActions
from .file_actions import FileActions
from .keys import bindings
from .messages import LoadFailed, LoadProgress, ModelLoaded, RunFailed, RunFinished
from .models import ModelActions
from .preflight import run_error
from .run_controller import RunController, prompt_groups
from .state import PaneState
from .widgets.inspector import Inspector
from .widgets.legend import Legend
from .widgets.pane import Pane
from .widgets.pane_strip import PaneStrip

REPAINT_HZ = 30


class DecodelabApp(ModelActions, ConversationActions, BranchActions, PaneActions, FileActions, App):
    """One prompt, many decoding configs, side by side."""

    CSS_PATH = str(resources.files("decodelab.themes") / "app.tcss")
    TITLE = "decodelab"
    BINDINGS = bindings("app")  # every key lives in tui/keys.py; a pane's own keys are bound on the Pane

    def __init__(self, spec=None, configs: list[DecodingConfig] | None = None, prompt: str | None = None,
                 run_at_start: bool = False, loaded=None, api_key: str | None = None,
                 system: str | None = None, trace_stages: bool = True, pane_models: list | None = None) -> None:
        super().__init__()
        self.initial_models = list(pane_models or [])
        """Each initial pane's own model (a ModelSpec) or None, from -p PRESET@MODEL."""
        from decodelab.engine.backends.loading import ModelSpec

        self.spec = spec or ModelSpec()
        self.api_key = api_key  # remote servers only; never written to a session
        self.loaded = loaded
        self.initial_configs = list(configs or [])
        self.initial_prompt = prompt or ""
        self.run_at_start = run_at_start
        self.trace_stages = trace_stages
        """Runs record what each sampler stage did (the inspector's chain view, the f dialog's dead settings)."""
        self.measure = "prob"
        self.diff_mode = "off"
        self.loading = False
        """A model load is under way (ctrl+r says so instead of 'no model')."""
        self.switched_model = False
        """The model being loaded was picked with m (not given on the command line)."""
        self.runs = RunController(self)
        """The engine run: its worker, its events, stopping rows and cancelling (tui/run_controller.py)."""
        self.undo_stack: list[tuple] = []
        """What u undoes, newest last: ("remove", index, state) for x, ("set", [(state, old config)], text) for =."""
        self.last_session: str | None = None
        """The session file saved or opened last: ctrl+s and ctrl+o offer it."""
        self.current_pane: Pane | None = None
        """The pane the palette's pane commands and the inspector act on (the last one focused)."""
        self.token_bytes = None
        """token id -> bytes for the loaded tokenizer (shows tokens that hold part of a character)."""
        self.system_prompt: str | None = system or None
        """The system prompt every pane's next run starts with (P sets it); None for none."""
        self.draft: str | None = None
        """The prompt box's text while { shows an earlier turn's message there (} at the newest puts it back)."""
        from decodelab.engine.backends.pool import ModelPool
        from decodelab.engine.session import Session

        self.pool = ModelPool()
        """The panes' own models (shift+m), each loaded once; the app's model (m) is self.loaded."""
        self.session = Session(self.pool)
        """The one way into the engine: every run and every pane model's load goes through it."""
        self.loading_models: set = set()
        """The load keys of pane models being loaded."""
        self.models_loaded: list[str] = []
        """Pane models loaded while others still load (said in one note when the last is in)."""
        self.reference: PaneState | None = None
        """The pane the others are measured against (shift+r), or None."""
        self.chat_views: dict = {}
        """(id of a pane model, chat mode) -> that model in that mode: one object, so its panes share a batch."""
        self.pane_token_bytes: dict = {}
        """id of a pane model's tokenizer -> its TokenBytes (the app's model uses self.token_bytes)."""

    def compose(self) -> ComposeResult:
        yield Static("loading…", id="model-bar")
        yield TextArea(self.initial_prompt, id="prompt", soft_wrap=True, show_line_numbers=False)
        with Horizontal(id="workspace"):
            with PaneStrip(id="panes"):
                models = self.initial_models + [None] * (len(self.initial_configs) - len(self.initial_models))
                for config, spec in zip(self.initial_configs, models):
                    yield Pane(PaneState(config, model_spec=spec))
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
        self.show_cancel(False)
        self.set_interval(1 / REPAINT_HZ, self.drain_events)
        self.on_resize()
        if self.loaded is not None:
            self.post_message(ModelLoaded(self.loaded))
        else:
            self.load(self.spec)
        for spec in dict.fromkeys(m for m in self.initial_models if m is not None):
            self.load_pane_model(spec)  # -p PRESET@MODEL: beside the app's model
        panes = self.panes()
        if panes:
            self.current_pane = panes[0]
            if self.run_at_start:
                panes[0].focus()

    @property
    def running(self) -> bool:
        """A run is in progress."""
        return self.runs.running

    @property
    def pending(self):
        """Steps the engine handed over that are not on screen yet."""
        return self.runs.pending

    @property
    def engine_threads(self) -> set[str]:
        return self.runs.engine_threads

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
            self.call_after_refresh(self.query_one(PaneStrip).show_whole, pane)

    # -- model loading ---------------------------------------------------------------------------------
    def load(self, spec) -> None:
        self.loading = True
        self._load_worker(spec)

    @work(thread=True, exclusive=True, group="load")
    def _load_worker(self, spec) -> None:
        from decodelab.engine.backends.loading import ModelLoadError, load_model

        try:
            from decodelab.engine.backends.pool import check_fits

            check_fits(spec, rows=max(1, len(self.initial_configs)))  # refused, with the numbers, if it cannot fit
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
        bar = self.query_one("#model-bar", Static)
        bar.add_class("-loading")  # the whole phrase, on two lines if it must (80 columns cut it)
        bar.update(f"loading {self.spec.path}: {pct}{message.stage}…")

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
        self.refresh_panes()  # a pane written by the previous model says so on its border
        if not self.loading_models:  # else once the panes' own models are in too
            self.on_model_loaded_run()

    def on_model_loaded_run(self) -> None:
        """Every model is in: run the command line's prompt (--prompt) now, once."""
        if self.run_at_start and self.initial_prompt:
            self.run_at_start = False
            if len(self.screen_stack) > 1:  # a dialog is open: don't start behind it, say how to start
                self.notify("The model is loaded: close the dialog and press ctrl+r to run the prompt.")
            else:
                self.action_run()

    def update_model_bar(self) -> None:
        import torch

        self.query_one("#model-bar", Static).remove_class("-loading")
        chat = " · chat" if self.loaded.spec.chat else ""
        if self.system_prompt:
            system = " ".join(self.system_prompt.split())
            chat += f" · system: {system[:40]}{'…' if len(system) > 40 else ''}"
        device = getattr(self.loaded, "device", None)
        count = torch.get_num_threads()
        threads = f" · {count} thread{'s' if count > 1 else ''}" if getattr(device, "type", "") == "cpu" else ""
        others = list(dict.fromkeys(self.model_label(b) for b in self.pool.models.values()))
        also = f" · panes also on {', '.join(others)}" if others else ""
        self.query_one("#model-bar", Static).update(f"{self.loaded.describe()}{threads}{chat}{also}")

    def on_load_failed(self, message: LoadFailed) -> None:
        from .screens.ask import AskText

        self.loading = False
        if self.loaded is not None:  # the working model stays until a new one has loaded
            failed, self.spec = self.spec.path, self.loaded.spec
            self.update_model_bar()
            self.notify(f"Could not load {failed}: {message.error}\nStill using {self.loaded.describe()}.",
                        title="Model not loaded", severity="error", timeout=15)
            return
        self.query_one("#model-bar", Static).remove_class("-loading")
        self.query_one("#model-bar", Static).update("no model loaded — press m to load one")

        def retry(path: str | None) -> None:
            if path:
                self.load_path(path)

        self.push_screen(AskText("The model could not be loaded. Try another (folder, cached hub id, or demo):",
                                 self.spec.path, detail=message.error), retry)

    def load_path(self, path: str) -> None:
        from decodelab.engine.config import ConfigError

        try:
            # chat follows the model: on for SmolLM2 (as on the command line), and off once it is in if the
            # new model has no chat template (chat_for_new_model)
            self.spec = dataclasses.replace(self.spec, path=path, chat=self.spec.chat or path == "smollm2")
        except ConfigError as exc:
            self.notify(str(exc), severity="error")
            return
        self.switched_model = True  # chat mode follows the new model's template once it is in
        self.load(self.spec)  # self.loaded keeps working until the new model is in

    # -- running -------------------------------------------------------------------------------------
    def panes(self) -> list[Pane]:
        return list(self.query(Pane))

    def start_run(self, panes: list[Pane], keep_seeds: bool = False, prefix: list[int] | None = None,
                  prefix_steps: list | None = None, prompt=None, advance: bool = False,
                  configs: list[DecodingConfig] | None = None) -> bool:
        """Run the panes (True when the run started). Each runs its live turn: the prompt box's text after its
        own earlier turns, or `prompt` as given (a branch replays its output's own prompt). advance: each pane
        with a reply first makes it an earlier turn, so the prompt box's text is the next user message."""
        if len(self.screen_stack) > 1:
            return False  # a dialog is open: finish it first
        if self.loaded is None:
            if self.loading:
                self.notify("The model is still loading (see the bar at the top): press ctrl+r once it is in.",
                            severity="warning")
            else:
                self.notify("No model is loaded yet (press m to load one).", severity="warning")
            return False
        if self.running:
            self.notify("A run is in progress: Esc cancels it.", severity="warning")
            return False
        if not panes:
            self.notify("No panes to run: press a to add one.", severity="warning")
            return False
        missing = self.missing_models(panes)
        if missing:
            self.notify(missing, severity="warning")
            return False
        backends = [self.backend_for(p.state) for p in panes]
        configs = list(configs or [p.state.config for p in panes])
        for i, pane in enumerate(panes):
            if keep_seeds and configs[i].seed is None and pane.state.seed is not None:
                configs[i] = configs[i].replace(seed=pane.state.seed)
        advanced = [p for p in panes if advance and p.state.can_advance()]
        for pane in advanced:
            pane.state.push_turn()
        user = self.query_one("#prompt", TextArea).text
        prompts = [prompt if prompt is not None else p.state.prompt_for(self.turn_message(p.state, user),
                                                                       self.system_prompt) for p in panes]
        problem = self.run_problem(prompts, configs, backends)
        if problem:  # refused before anything is touched: every pane keeps its text
            for pane in advanced:
                pane.state.pop_turn()
            self.notify(problem, title="Not run", severity="error", timeout=15)
            return False
        self.runs.start(backends, [p.state for p in panes], configs, prompts, prefix, prefix_steps)
        self.show_cancel(True)
        for pane in panes:
            pane.diverge_at = None
            pane.refresh_view()
        self.refresh_inspector()
        return True

    def turn_message(self, state: PaneState, typed: str) -> str:
        """The user message a pane's live turn runs: what is typed, or, in a conversation after ctrl+n emptied the
        box, the turn's own message (ctrl+r then makes a new version of the latest reply); a pane added since
        answers the conversation's latest message (never an empty one)."""
        if typed.strip():
            return typed
        if state.turns and state.user is not None:
            return state.user
        latest = next((p.state.user for p in self.panes() if p.state.turns and p.state.user), None)
        return latest if latest is not None else typed

    def run_problem(self, prompts: list, configs: list[DecodingConfig], backends: list) -> str | None:
        """Why the run would fail before producing anything, checked once per distinct model and prompt."""
        for rows in prompt_groups(prompts, backends):
            problem = run_error(backends[rows[0]], prompts[rows[0]], [configs[row] for row in rows])
            if problem:
                several = len({id(b) for b in backends}) > 1
                return f"{self.model_label(backends[rows[0]])}: {problem}" if several else problem
        return None

    def drain_events(self) -> None:
        """Apply every step that arrived since the last repaint, then repaint each changed pane once."""
        changed = self.runs.drain()
        if changed:
            for pane in self.panes():
                if id(pane.state) in changed:
                    pane.refresh_view(scroll=True)
            current = self.pane()
            if current is not None and id(current.state) in changed:
                self.refresh_inspector()  # its copy of the status line follows the pane

    def show_cancel(self, shown: bool) -> None:
        """The footer offers "esc Cancel" only while a run is going (Esc still leaves the prompt when idle)."""
        keys = self._bindings.key_to_bindings
        keys["escape"] = [dataclasses.replace(b, show=shown) if b.action == "cancel" else b
                          for b in keys.get("escape", [])]
        self.refresh_bindings()

    def on_run_finished(self, message: RunFinished) -> None:
        if self.runs.finished(message):
            self.show_cancel(False)
            self.refresh_panes()
            failed = sorted(set(message.errors.values()))
            if failed:  # one model failed while the others' panes finished
                self.notify("\n".join(failed), title="Some panes failed", severity="error", timeout=10)
            if self.reference is not None:
                self.measure_agreement()
            if self.runs.cancel_event.is_set():
                self.notify("Run cancelled: partial outputs kept.")

    def on_run_failed(self, message: RunFailed) -> None:
        if self.runs.failed(message):
            self.show_cancel(False)
            self.refresh_panes()
            self.notify(message.error, title="Run failed", severity="error", timeout=10)

    def action_run(self) -> None:
        """ctrl+r: run every pane; from the prompt, focus moves to the panes (digits pick one, Esc cancels)."""
        self.start_run(self.panes())
        if self.running and self.focused is self.query_one("#prompt", TextArea) and self.pane() is not None:
            self.screen.set_focus(self.pane(), scroll_visible=False)  # show_whole scrolls

    def action_rerun_same(self) -> None:
        self.start_run(self.panes(), keep_seeds=True)

    def stop_pane(self, pane: Pane) -> None:
        """k: stop this pane's run while the other panes go on."""
        backend = self.backend_for(pane.state)
        stops, message = self.runs.stop(pane.state, backend is not None and backend.can("stop_rows"))
        self.notify(message, severity="information" if stops else "warning")

    def action_focus_prompt(self) -> None:
        """p: back to the prompt from a pane or the inspector (Esc leaves it again); a message already run is
        selected, so typing the next one replaces it."""
        box = self.query_one("#prompt", TextArea)
        self.screen.set_focus(box)  # at once (focus() waits a refresh): the next keys are text, not commands
        if box.text.strip() and any(p.state.user == box.text for p in self.panes()):
            box.select_all()  # a message already run: typing replaces it (the next turn); → keeps it to edit
        else:
            box.move_cursor(box.document.end)  # typing goes on from the end of what is there

    async def action_quit(self) -> None:
        """ctrl+q: cancel what is generating (the run, an A/B round, a sweep) so the process ends at once."""
        self.runs.cancel()
        for screen in self.screen_stack:
            cancel = getattr(screen, "cancel_work", None)
            if cancel is not None:
                cancel()
        self.exit()

    def action_cancel(self) -> None:
        """Esc: from the prompt, to the panes; else cancel a run; else close the inspector."""
        in_prompt = self.focused is self.query_one("#prompt", TextArea)
        if in_prompt:  # as its border says: to the panes (a run goes on; Esc there cancels it)
            pane = self.pane()
            if pane is not None:
                self.screen.set_focus(pane, scroll_visible=False)  # show_whole scrolls
            else:  # no pane to go to: leave the box all the same, so a (add a pane) is a key, not a letter
                self.screen.set_focus(None)
                self.notify("No panes yet: a adds one from the presets.", severity="warning")
        elif self.running:
            self.runs.cancel()
        elif self.query_one("#inspector").has_class("-visible"):
            self.action_inspector()


def run_app(spec=None, configs=None, prompt=None, run_at_start=False, api_key=None, system=None,
            trace_stages=True, pane_models=None) -> None:
    import os
    import sys

    app = DecodelabApp(spec=spec, configs=configs, prompt=prompt, run_at_start=run_at_start, api_key=api_key,
                       system=system, trace_stages=trace_stages, pane_models=pane_models)
    app.run()
    # The terminal is restored and every file the app writes is written (atomically) when its dialog closes, so
    # leave now: a worker may still be inside a forward pass or a model load that cannot be interrupted, and
    # the interpreter's own teardown of torch took over a second. ctrl+q must give the shell back at once.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(app.return_code or 0)
