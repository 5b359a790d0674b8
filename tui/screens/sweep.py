"""Sweeps in the TUI: describe the search, watch progress, read the table and grid, keep the best point."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from decodelab.engine.config import ConfigError
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, ProgressBar, Static

FIELDS = [("grid", "grid", "temperature=0.3,0.7,1.1; top_p=0.8,0.95"),
          ("ranges", "ranges (random/bayes)", "temperature=0.1:1.5; min_p=0:0.3"),
          ("strategy", "strategy", "grid | random | bayes"),
          ("trials", "trials", "budget for random/bayes"),
          ("seeds", "seeds per point", "3"),
          ("objective", "objective", "distinct_2=1,mean_logprob=0.5"),
          ("direction", "direction", "maximize | minimize")]


CLI_WORDS = [("--trials N", "a number of trials"), ("--trials", "trials"), ("--grid ", "grid "), ("--grid", "grid"),
             ("--range ", "ranges "), ("--range", "ranges"), ("(e.g. -p balanced) ", "")]


def form_words(message: str) -> str:
    """The engine's sweep messages name command-line options; on this screen the form's fields are meant."""
    for cli, form in CLI_WORDS:
        message = message.replace(cli, form)
    return message


class SweepScreen(Screen):
    HELP_NAME = "the sweep"
    """What the help (F1) calls this screen."""
    DEFAULT_CSS = """
    SweepScreen #sweep-form { height: auto; padding: 0 1; }
    SweepScreen .row { height: 3; }
    SweepScreen .row > Label { width: 24; padding: 1 1 0 0; text-align: right; }
    SweepScreen .row > Input { width: 1fr; }
    SweepScreen #sweep-buttons { height: 3; }
    SweepScreen #sweep-status { height: auto; max-height: 4; padding: 0 1; background: $panel; }
    SweepScreen #sweep-feedback { height: auto; }
    SweepScreen #sweep-body { height: 1fr; }
    SweepScreen #sweep-table { height: auto; }
    SweepScreen.-compact .row { height: 1; }
    SweepScreen.-compact .row > Label { padding: 0 1 0 0; }
    SweepScreen.-compact .row > Input { height: 1; border: none; padding: 0 1; }
    SweepScreen.-compact #sweep-buttons { height: 1; }
    SweepScreen.-compact #sweep-buttons > Button { height: 1; min-width: 12; border: none; }
    """
    COMPACT_BELOW = 36
    """Rows below which the form's fields take one line each (at 80x24 the Run button and the feedback were below
    the bottom edge, so a mistake seemed to do nothing)."""
    BINDINGS = [Binding("ctrl+r", "start", "Run sweep"), Binding("escape", "back", "Back / stop"),
                Binding("ctrl+b", "use_best", "Best → pane"), Binding("ctrl+s", "save_best", "Save best")]

    @dataclass
    class Point(Message):
        result: object

    @dataclass
    class Done(Message):
        error: str | None

    def __init__(self, loaded, base, prompt) -> None:
        super().__init__()
        self.greedy_base = not base.do_sample  # sweeping temperature or top-p of a greedy config changes nothing
        base = base.replace(do_sample=True, temperature=base.temperature or 1.0) if self.greedy_base else base
        self.loaded, self.base, self.prompt = loaded, base, prompt
        self.results: list = []
        self.spec = None
        self.cancel = threading.Event()
        self.running = False
        self.note = ""

    def compose(self) -> ComposeResult:
        defaults = {"grid": "temperature=0.3,0.7,1.1; top_p=0.8,0.95", "strategy": "grid", "seeds": "3",
                    "objective": "distinct_2=1,mean_logprob=0.5", "direction": "maximize"}
        with VerticalScroll(id="sweep-body"):  # the form is tall: at 80x24 everything scrolls together
            with Vertical(id="sweep-form"):
                yield Static(f"Sweep around {self.base.name} ({self.base.summary()}) on the current prompt",
                             markup=False)  # wraps where a Label was cut at 80 columns
                if self.greedy_base:
                    yield Label(f"{self.base.name} decodes greedily, so the sweep samples around it (do_sample on)",
                                classes="sweep-note", markup=False)
                for key, label, placeholder in FIELDS:
                    with Horizontal(classes="row"):
                        yield Label(label, markup=False)
                        yield Input(defaults.get(key, ""), placeholder=placeholder, id=f"s-{key}")
                with Horizontal(id="sweep-buttons"):
                    yield Button("Run sweep", variant="primary", id="run")
            yield Static("", id="sweep-table", markup=False)
        with Vertical(id="sweep-feedback"):  # always in view, whatever the form's scroll
            yield ProgressBar(id="sweep-progress", show_eta=True)
            yield Static("ctrl+r runs the sweep · esc back", id="sweep-status", markup=False)
        yield Footer()

    def on_resize(self) -> None:
        self.set_class(self.size.height < self.COMPACT_BELOW, "-compact")

    def build_spec(self):
        from decodelab.engine.experiments.sweep import PromptCase, SweepSpec, parse_grid, parse_objective, parse_ranges

        def value(key):
            return self.query_one(f"#s-{key}", Input).value.strip()

        def items(key):
            return tuple(p.strip() for p in value(key).split(";") if p.strip())

        try:
            trials = int(value("trials")) if value("trials") else None
            seeds = int(value("seeds") or 3)
        except ValueError:
            raise ConfigError("trials and seeds must be whole numbers") from None
        spec = SweepSpec(base=self.base, grid=parse_grid(items("grid")), ranges=parse_ranges(items("ranges")),
                         strategy=value("strategy") or "grid", trials=trials, seeds=seeds,
                         prompts=[PromptCase(self.prompt)], objective=parse_objective(value("objective")),
                         direction=value("direction") or "maximize")
        spec.validate()
        return spec

    @on(Button.Pressed, "#run")
    def action_start(self) -> None:
        if self.running:
            return
        try:
            self.spec = self.build_spec()
        except ConfigError as exc:
            self.query_one("#sweep-status", Static).update(f"✗ {form_words(str(exc))}")
            return
        self.results, self.running = [], True
        self.cancel = threading.Event()
        total = self.spec.grid_size() if self.spec.strategy == "grid" else self.spec.trials
        self.query_one(ProgressBar).update(total=total, progress=0)
        self.note = " (trials is ignored: a grid runs every combination)" if self.spec.strategy == "grid" and \
            self.spec.trials is not None else ""
        self.query_one("#sweep-status", Static).update(
            f"running {total} points{self.note}… esc stops and keeps what is done")
        self.run_sweep(self.spec)

    @work(thread=True, exclusive=True, group="sweep")
    def run_sweep(self, spec) -> None:
        from decodelab.engine.experiments.sweep import run_sweep

        try:
            run_sweep(self.loaded, spec, cancel=self.cancel, on_point=lambda r: self.post_message(self.Point(r)))
        except Exception as exc:  # noqa: BLE001 - report, never crash the app
            self.post_message(self.Done(str(exc)))
            return
        self.post_message(self.Done(None))

    def on_sweep_screen_point(self, message: Point) -> None:
        self.results.append(message.result)
        self.query_one(ProgressBar).advance(1)
        self.show()

    def on_sweep_screen_done(self, message: Done) -> None:
        self.running = False
        status = f"error: {message.error}" if message.error else f"done: {len(self.results)} points{self.note}"
        if self.cancel.is_set():
            status = f"stopped: kept {len(self.results)} points"
        self.query_one("#sweep-status", Static).update(status + " · ctrl+b best → new pane · ctrl+s save best")
        self.show()
        self.call_after_refresh(lambda: self.query_one("#sweep-body", VerticalScroll).scroll_to_widget(
            self.query_one("#sweep-status"), top=True, animate=False))

    def show(self) -> None:
        from decodelab.render.pictures import grid_picture, scatter_text
        from decodelab.render.tables import results_table
        from decodelab.themes.heatmap import colour
        from rich.console import Group

        if not self.results:
            return
        parts = [results_table(self.results, self.spec, limit=15)]
        names = self.spec.swept()
        if len(names) >= 2 and self.spec.strategy == "grid":
            parts.append(grid_picture(self.results, names[0], names[1], self.spec.direction, colour))
        picture = scatter_text(self.results, self.size.width)
        if picture is not None:
            parts.append(picture)
        self.query_one("#sweep-table", Static).update(Group(*parts))

    def best(self):
        from decodelab.engine.experiments.sweep import best

        top = best(self.results, self.spec.direction) if self.results else None
        if top is None:
            self.notify("No finished points yet.", severity="warning")
        return top

    def on_mount(self) -> None:
        self.query_one("#s-grid", Input).focus()

    def action_use_best(self) -> None:
        top = self.best()
        if top is not None:
            pane = self.app.panes_part.add_pane(top.config.replace(seed=None))
            message = f"added pane {pane.state.config.name} ({top.config.summary()}): esc shows it beside the others"
            self.query_one("#sweep-status", Static).update(f"✓ {message}")
            self.notify(message[0].upper() + message[1:])

    def action_save_best(self) -> None:
        from decodelab.engine.library.presets import save_user_preset

        from .ask import AskText

        top = self.best()
        if top is None:
            return
        config = top.config.replace(seed=None, description=f"best of a {self.spec.strategy} sweep, objective "
                                    f"{self.spec.objective} = {top.objective:.4f}")

        def save(name):
            if name:
                try:
                    self.notify(f"Saved {name} → {save_user_preset(config, name)}")
                except ConfigError as exc:
                    self.notify(str(exc), severity="error")

        self.app.push_screen(AskText("Save the best point as a preset named:", "sweep-best"), save)

    def cancel_work(self) -> None:
        self.cancel.set()

    def action_back(self) -> None:
        if self.running:
            self.cancel.set()
            return
        self.app.pop_screen()
