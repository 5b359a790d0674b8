"""The decodelab app: wiring only. It makes the named parts, routes every key to the part that owns it (do), and
hands the workers' messages to the part they concern.

    workspace   tui/workspace.py      what a person built: panes' states, system prompt, reference, undo (typed)
    shelf       tui/models.py         the loaded models, loads and frees, chat mode, the model bar's words
    runs        tui/run_controller.py the engine run on its worker: events, stopping rows, cancelling
    runner      tui/running.py        starting (checked first), streaming onto the panes, the end of a run
    panes_part  tui/actions.py        the pane widgets, how they are drawn, A/B and sweeps from them
    tokens      tui/branching.py      walking tokens, the inspector, branching, versions
    talk        tui/conversation.py   conversations: system prompt, next turns, continuing, earlier turns
    files       tui/file_actions.py   presets, copying, a pane's whole config, sessions
    autosave    tui/autosave.py       the workspace kept between starts (restored; shift+f starts fresh)
    compare     tui/models.py         the reference pane and the agreement figures
The main screen (tui/screens/main.py) composes the widgets and owns the main keys; each dialog owns its own.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from decodelab.engine.config import DecodingConfig
from textual.actions import parse
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.content import Content
from textual.widgets import Static

from .actions import Panes
from .autosave import Autosave, fresh
from .branching import Tokens
from .conversation import Talk
from .file_actions import Files
from .keys import palette
from .messages import (AgreementReady, LoadFailed, LoadProgress, ModelLoaded, PaneModelFailed, PaneModelLoaded,
                       PaneModelProgress, RunFailed, RunFinished)
from .models import ModelShelf, Reference
from .run_controller import RunController
from .running import Runner
from .screens.main import MainScreen
from .state import PaneState
from .widgets.legend import Legend
from .widgets.pane import Pane
from .widgets.pane_strip import PaneStrip
from .workspace import Workspace

REPAINT_HZ = 30
PARTS = ("panes", "tokens", "talk", "files", "compare", "runner", "shelf", "autosave")
"""The parts a key's action may name (tui/keys.py): "panes.move(-1)" runs Panes.move."""


class DecodelabApp(App):
    """One prompt, many decoding configs, side by side."""

    CSS_PATH = str(resources.files("decodelab.themes") / "app.tcss")
    TITLE = "decodelab"
    BINDINGS = [Binding("f1", "help", "Help", key_display="? F1", priority=True),  # priority: in dialogs too
                Binding("question_mark", "help", "Help", show=False)]  # a text box takes ? as text: F1 there

    def __init__(self, spec: Any = None, configs: list[DecodingConfig] | None = None, prompt: str | None = None,
                 run_at_start: bool = False, loaded: Any = None, api_key: str | None = None,
                 system: str | None = None, trace_stages: bool = True, pane_models: list | None = None,
                 autosave: bool = False, restore: bool = False) -> None:
        super().__init__()
        from decodelab.engine.backends.loading import ModelSpec

        self.workspace = Workspace(order=lambda: [p.state for p in self.panes()], system_prompt=system or None)
        self.shelf = ModelShelf(self, spec or ModelSpec(), loaded, api_key)
        self.runs = RunController(self)
        self.runner = Runner(self)
        self.panes_part = Panes(self)
        self.tokens = Tokens(self)
        self.talk = Talk(self)
        self.files = Files(self)
        self.compare = Reference(self)
        self.autosave = Autosave(self, autosave, restore)
        self.initial_system = system or None
        """The command line's system prompt (shift+f starts fresh with it)."""
        self.trace_stages = trace_stages
        """Runs record what each sampler stage did (the inspector's chain view, the f dialog's dead settings)."""
        self.run_at_start = run_at_start
        """Run the command line's prompt once every model is in."""
        configs = list(configs or [])
        models = list(pane_models or []) + [None] * (len(configs) - len(pane_models or []))
        self.initial_states = [PaneState(config, model_spec=model) for config, model in zip(configs, models)]
        self.initial_prompt = prompt or ""

    def fresh_states(self) -> list[PaneState]:
        """The command line's panes, new (shift+f)."""
        return fresh(self.initial_states)

    def get_default_screen(self) -> MainScreen:
        return MainScreen(self.initial_states, self.initial_prompt)

    @property
    def main_screen(self) -> MainScreen:
        return self.screen_stack[0]  # type: ignore[return-value]

    def on_mount(self) -> None:
        from decodelab.themes.themes import THEMES

        for theme in THEMES:
            self.register_theme(theme)
        self.theme = "decodelab-dark"

    def main_mounted(self) -> None:
        """The main screen's widgets are in: show them, and start loading."""
        self.query_one("#prompt").border_title = "prompt · ctrl+r run · esc to panes · ctrl+p commands"
        self.query_one(Legend).show(self.workspace.measure)
        self.runner.show_cancel(False)
        self.set_interval(1 / REPAINT_HZ, self.runner.drain)
        self.call_after_refresh(self.layout_panes)
        if self.shelf.loaded is not None:
            self.post_message(ModelLoaded(self.shelf.loaded))
        else:
            self.load(self.shelf.spec)
        for spec in dict.fromkeys(s.model_spec for s in self.initial_states if s.model_spec is not None):
            self.shelf.load_pane_model(spec)  # -p PRESET@MODEL: beside the app's model
        panes = self.panes()
        if panes:
            self.panes_part.current = panes[0]
            if self.run_at_start:
                panes[0].focus()
        self.autosave.start()

    def do(self, action: str, pane: Pane | None = None) -> None:
        """Run a key's action (tui/keys.py): "part.method(args)", on the pane first for a pane key."""
        part, method, params = parse(action)
        if part not in PARTS:
            raise ValueError(f"no part {part!r} for the action {action!r}")
        target = getattr(self.panes_part if part == "panes" else getattr(self, part), method)
        target(*((pane,) if pane is not None else ()), *params)

    # -- what the parts share -------------------------------------------------------------------------------
    def panes(self) -> list[Pane]:
        return list(self.query(Pane))

    def pane(self) -> Pane | None:
        """The current pane (the last one focused), else the first."""
        return self.panes_part.the_pane()

    @property
    def running(self) -> bool:
        """A run is in progress."""
        return self.runs.running

    def layout_panes(self) -> None:
        """Whole panes side by side (the strip also does this whenever its own size changes)."""
        self.query_one(PaneStrip).layout_panes()
        self.tokens.refresh_inspector()  # a removed or renumbered pane's token never lingers there
        pane = self.pane()
        if pane is not None:
            self.call_after_refresh(self.query_one(PaneStrip).show_whole, pane)

    def update_model_bar(self) -> None:
        bar = self.query_one("#model-bar", Static)
        bar.remove_class("-loading")
        bar.update(Content(self.shelf.bar_text()))  # a path or system prompt may hold [brackets]

    def load(self, spec: Any) -> None:
        """Load the app's model (m, or the command line's)."""
        self.shelf.load(spec)

    def run_initial_prompt(self) -> None:
        """Every model is in: run the command line's prompt (--prompt) now, once."""
        if self.run_at_start and self.initial_prompt:
            self.run_at_start = False
            if len(self.screen_stack) > 1:  # a dialog is open: don't start behind it, say how to start
                self.notify("The model is loaded: close the dialog and press ctrl+r to run the prompt.")
            else:
                self.runner.run_all()

    # -- the workers' messages -----------------------------------------------------------------------------------
    def on_load_progress(self, message: LoadProgress) -> None:
        pct = f"{message.fraction * 100:.0f}% " if message.fraction is not None else ""
        bar = self.query_one("#model-bar", Static)
        bar.add_class("-loading")  # the whole phrase, on two lines if it must (80 columns cut it)
        bar.update(Content(f"loading {self.shelf.spec.path}: {pct}{message.stage}…"))  # text, never markup

    def on_model_loaded(self, message: ModelLoaded) -> None:
        self.shelf.loaded_now(message.loaded)
        self.update_model_bar()
        self.panes_part.update_legend()
        self.panes_part.refresh()  # a pane written by the previous model says so on its border
        if not self.shelf.loading_models:  # else once the panes' own models are in too
            self.compare.measure_if_missing()
            self.run_initial_prompt()

    def on_load_failed(self, message: LoadFailed) -> None:
        from .screens.ask import AskText

        failed = self.shelf.load_failed()
        if failed is not None:  # the working model stays until a new one has loaded
            self.update_model_bar()
            from .models import load_failure

            self.notify(f"{load_failure(failed, message.error)}\nStill using {self.shelf.loaded.describe()}.",
                        title="Model not loaded", severity="error", timeout=15)
            return
        bar = self.query_one("#model-bar", Static)
        bar.remove_class("-loading")
        bar.update("no model loaded — press m to load one")
        self.push_screen(AskText("The model could not be loaded. Try another (folder, cached hub id, or demo):",
                                 self.shelf.spec.path, detail=message.error),
                         lambda path: self.shelf.load_path(path) if path else None)

    def on_pane_model_progress(self, message: PaneModelProgress) -> None:
        from decodelab.engine.backends.pool import spec_label

        pct = f"{message.fraction * 100:.0f}% " if message.fraction is not None else ""
        bar = self.query_one("#model-bar", Static)
        bar.add_class("-loading")
        bar.update(Content(f"loading {spec_label(message.spec)} for a pane: {pct}{message.stage}…"))

    def on_pane_model_loaded(self, message: PaneModelLoaded) -> None:
        self.shelf.pane_model_loaded(message)

    def on_pane_model_failed(self, message: PaneModelFailed) -> None:
        self.shelf.pane_model_failed(message)

    def on_agreement_ready(self, message: AgreementReady) -> None:
        self.compare.ready(message)

    def on_run_finished(self, message: RunFinished) -> None:
        self.runner.finished(message)

    def on_run_failed(self, message: RunFailed) -> None:
        self.runner.failed(message)

    def notify(self, message: str, *, title: str = "", severity: Any = "information", timeout: float | None = None,
               markup: bool = False) -> None:
        """Every notification is shown as written, never as markup (a path, a model spec or an error may hold
        [brackets] that Textual would read as tags and fail on): the dialogs' own notify comes here too."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    # -- the App's own keys (ctrl+q, ctrl+p) -----------------------------------------------------------------------
    async def action_quit(self) -> None:
        """ctrl+q: cancel what is generating (the run, an A/B round, a sweep) so the process ends at once."""
        self.runs.cancel()
        self.autosave.save(force=True)  # what the panes hold now; a streaming run's partial output is not kept
        for screen in self.screen_stack:
            cancel = getattr(screen, "cancel_work", None)
            if cancel is not None:
                cancel()
        self.exit()

    def action_help(self) -> None:
        """? or F1: every key, the current screen's first (again: closes it)."""
        from .screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss(None)
            return
        self.push_screen(HelpScreen(self.screen))

    def get_system_commands(self, screen: Any) -> Any:
        yield from super().get_system_commands(screen)
        for title, help_text, callback in palette(self):  # the same table as the key bindings (tui/keys.py)
            yield SystemCommand(title, help_text, callback)


def run_app(spec: Any = None, configs: list[DecodingConfig] | None = None, prompt: str | None = None,
            run_at_start: bool = False, api_key: str | None = None, system: str | None = None,
            trace_stages: bool = True, pane_models: list | None = None, restore: bool = False) -> None:
    import os
    import sys

    app = DecodelabApp(spec=spec, configs=configs, prompt=prompt, run_at_start=run_at_start, api_key=api_key,
                       system=system, trace_stages=trace_stages, pane_models=pane_models, autosave=True,
                       restore=restore)
    app.run()
    # The terminal is restored and every file the app writes is written (atomically) when its dialog closes, so
    # leave now: a worker may still be inside a forward pass or a model load that cannot be interrupted, and
    # the interpreter's own teardown of torch took over a second. ctrl+q must give the shell back at once.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(app.return_code or 0)
