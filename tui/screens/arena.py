"""Blind A/B in the TUI: shuffled outputs labelled A, B, ...; vote with one key; identities revealed after."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from decodelab.engine.config import ConfigError
from decodelab.engine.experiments.arena import LABELS, Tally, load_tally, play_round, save_tally
from textual.content import Content  # a title with [brackets] is text, not markup
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static


class ArenaScreen(Screen):
    """Rounds on the current prompt with the current panes' configs; the tally is saved after every vote."""
    HELP_NAME = "blind A/B"
    """What the help (F1) calls this screen."""

    DEFAULT_CSS = """
    ArenaScreen #arena-status { height: auto; padding: 0 1; background: $panel; }
    ArenaScreen #arena-outputs { height: 1fr; layout: grid; grid-size: 2; grid-rows: auto; grid-gutter: 0 1; }
    ArenaScreen .arena-output { width: 1fr; height: auto; border: round $secondary; padding: 0 1; }
    ArenaScreen #arena-tally { height: auto; max-height: 30%; overflow-y: auto; }
    """
    BINDINGS = [Binding("t", "vote('tie')", "Tie"), Binding("s", "vote('skip')", "Skip"),
                Binding("n", "next_round", "Next round"), Binding("w", "save_winner", "Save winner"),
                Binding("escape", "back", "Back")] + [
        Binding(c.lower(), f"vote('{c}')", c, show=i < 2) for i, c in enumerate(LABELS[:9])]

    @dataclass
    class RoundReady(Message):
        round: object

    @dataclass
    class RoundFailed(Message):
        error: str

    def __init__(self, loaded, configs, prompt, tally_path: str) -> None:
        super().__init__()
        self.loaded, self.prompt, self.tally_path = loaded, prompt, tally_path
        self.tally = self._open_tally(configs)
        self.round = None
        self.voted = False
        self.cancel = threading.Event()  # set when the screen is left: a round being generated stops

    def _open_tally(self, configs) -> Tally:
        from pathlib import Path

        if Path(self.tally_path).exists():
            tally = load_tally(self.tally_path)
            if [c.name for c in tally.configs] != [c.name for c in configs]:
                raise ConfigError(f"{self.tally_path} holds a tally of {', '.join(tally.names)}, not these panes")
            return tally
        return Tally(list(configs))

    def compose(self) -> ComposeResult:
        yield Static("", id="arena-status", markup=False)
        yield VerticalScroll(id="arena-outputs")  # a grid of as many columns as fit; it scrolls (PageDown) for more
        yield Static("", id="arena-tally", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.show_tally()
        self.action_next_round()

    def action_next_round(self) -> None:
        if self.round is not None and not self.voted:
            self.notify("Vote first (a/b/…, t tie, s skip).", severity="warning")
            return
        self.round, self.voted = None, False
        self.query_one("#arena-status", Static).update(f"round {len(self.tally.votes) + 1}: generating…")
        self.play(len(self.tally.votes))

    @work(thread=True, exclusive=True, group="arena")
    def play(self, number: int) -> None:
        from decodelab.engine.results import GenerationError

        try:
            rnd = play_round(self.loaded, self.tally, self.prompt, number, cancel=self.cancel)
        except GenerationError as exc:
            self.post_message(self.RoundFailed(str(exc)))
            return
        if not self.cancel.is_set():
            self.post_message(self.RoundReady(rnd))

    def cancel_work(self) -> None:
        self.cancel.set()

    def action_back(self) -> None:
        """Esc: leave for the panes; a round still generating is cancelled, not left running."""
        self.cancel_work()
        self.app.pop_screen()

    def on_arena_screen_round_ready(self, message: RoundReady) -> None:
        self.round = message.round
        outputs = self.query_one("#arena-outputs", VerticalScroll)
        outputs.remove_children()
        for label, text in self.round.shown():
            box = Static(text or "(empty)", markup=False, classes="arena-output")
            box.border_title = Content(label)
            outputs.mount(box)
        self.fit_columns()
        outputs.focus()  # PageDown / ↓ reach the candidates below the first row
        keys = "/".join(label.lower() for label in self.round.labels)
        self.query_one("#arena-status", Static).update(
            f"round {self.round.number + 1} · which is best? {keys} · t tie · s skip (identities hidden)")

    MIN_WIDTH = 34
    """The narrowest a candidate's box gets: fewer columns (and more rows to scroll) below it."""

    def fit_columns(self) -> None:
        """As many candidates side by side as fit MIN_WIDTH each (all of them when they do; one per row at 40
        columns); the rest below, in view with PageDown. Side by side in one row, six went off the screen's right
        edge at 80 and 160 columns, unreachable."""
        shown = len(self.round.labels) if self.round is not None else 2
        columns = max(1, min(shown, self.size.width // self.MIN_WIDTH))
        self.query_one("#arena-outputs").styles.grid_size_columns = columns

    def on_resize(self) -> None:
        self.fit_columns()

    def on_arena_screen_round_failed(self, message: RoundFailed) -> None:
        self.query_one("#arena-status", Static).update(f"the round failed: {message.error}")
        self.notify(message.error, severity="error")

    def action_vote(self, choice: str) -> None:
        if self.round is None or self.voted or (choice not in ("tie", "skip") and choice not in self.round.labels):
            return
        self.tally.record(self.round, choice)
        self.voted = True
        try:
            save_tally(self.tally, self.tally_path)
        except ConfigError as exc:
            self.notify(str(exc), severity="error")
        for box, line in zip(self.query(".arena-output"), self.tally.reveal(self.round)):
            box.border_title = Content(line)
        self.query_one("#arena-status", Static).update(
            f"voted {choice} · revealed · n next round · w save the leader · esc back")
        self.show_tally()

    def show_tally(self) -> None:
        from decodelab.render.tables import tally_table

        self.query_one("#arena-tally", Static).update(tally_table(self.tally))

    def action_save_winner(self) -> None:
        from decodelab.engine.library.presets import PresetExistsError, save_user_preset

        from .ask import AskText

        leader = self.tally.leader()
        if leader is None:
            self.notify("No votes yet.", severity="warning")
            return
        config = self.tally.configs[leader].replace(description=self.tally.describe(leader))

        def save(name: str | None) -> None:
            if not name:
                return
            try:
                self.notify(f"Saved {name} → {save_user_preset(config, name)}")
            except PresetExistsError as exc:
                self.notify(f"{exc} (nothing was overwritten)", severity="error")
            except ConfigError as exc:
                self.notify(str(exc), severity="error")

        self.app.push_screen(AskText(f"Save the leader ({self.tally.names[leader]}) as a preset named:",
                                     f"{self.tally.configs[leader].name}-winner"), save)
