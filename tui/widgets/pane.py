"""One config's pane: title, config summary, streaming text, stats line and a probability sparkline."""

from __future__ import annotations

import math

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Label, Sparkline, Static

from tui.state import PaneState
from tui.widgets.token_view import TokenView, render_tokens


SHORT_REASONS = {"eos": "eos", "stop_string": "stop", "max_new_tokens": "max", "cancelled": "cancelled"}


def stats_text(state: PaneState, diverge_at: int | None) -> str:
    """tokens, stop reason, perplexity, seed, speed: the most useful first, as narrow panes cut the end."""
    if state.error and not state.steps:
        return f"error: {state.error}"
    parts = [f"⚠ {state.error}"] if state.error else []  # e.g. a stream cut mid-way: the text is kept
    parts.append(f"{len(state.steps)} tok")
    if state.running:
        parts.append("running…")
    elif state.stop_reason:
        parts.append(SHORT_REASONS.get(state.stop_reason, state.stop_reason))
    finite = [s.logprob for s in state.steps if math.isfinite(s.logprob)]
    if finite:
        mean = sum(finite) / len(finite)
        parts.append(f"ppl {math.exp(-mean):.1f} (lp {mean:.2f})")
    if diverge_at is not None:
        parts.append(f"diverges @{diverge_at}")
    if state.branched_at is not None:
        parts.append(f"branch @{state.branched_at}")
    if state.seed is not None and state.config.samples:
        parts.append(f"seed {state.seed}")
    if state.completion is not None:
        parts.append(f"{state.completion.timings.tokens_per_s:.0f} tok/s")
    return " · ".join(parts)


class Pane(Vertical, can_focus=True):
    """A pane showing one decoding config's output."""

    DEFAULT_CSS = """
    Pane {
        width: 40;
        height: 1fr;
        border: round $secondary;
        border-title-color: $text;
        border-subtitle-color: $text-muted;
    }
    Pane:focus-within, Pane:focus {
        border: round $primary;
    }
    Pane > .pane--summary {
        color: $text-muted;
        padding: 0 1;
        height: 1;
    }
    Pane > VerticalScroll {
        height: 1fr;
    }
    Pane > .pane--stats {
        height: 1;
        padding: 0 1;
        color: $text-muted;
    }
    Pane > .pane--error {
        height: auto;
        max-height: 8;
        padding: 0 1;
        color: $error;
    }
    Pane > .pane--error.-empty {
        display: none;
    }
    Pane > Sparkline {
        height: 1;
        margin: 0 1;
    }
    """

    BINDINGS = [
        Binding("left", "app.token(-1)", "◀ token", show=False),
        Binding("right", "app.token(1)", "token ▶", show=False),
        Binding("home", "app.token(-100000)", "first token", show=False),
        Binding("end", "app.token(100000)", "last token", show=False),
    ]

    def __init__(self, state: PaneState, **kwargs) -> None:
        super().__init__(**kwargs)
        self.state = state
        self.measure = "prob"
        self.diverge_at: int | None = None

    def compose(self) -> ComposeResult:
        yield Label(self.state.config.summary(), classes="pane--summary")
        scroll = VerticalScroll()
        scroll.can_focus = False
        with scroll:
            yield TokenView()
        yield Static("", classes="pane--error")
        yield Static("", classes="pane--stats")
        yield Sparkline([], summary_function=max)

    def on_mount(self) -> None:
        self.refresh_view()

    def show_error(self) -> None:
        """The last run's error in full, beside (never instead of) the pane's text."""
        error = self.query_one(".pane--error", Static)
        error.update(f"⚠ {self.state.error}" if self.state.error else "")
        error.set_class(not self.state.error, "-empty")

    def refresh_view(self, scroll: bool = False) -> None:
        """Redraw from state (called at most ~30 times a second while streaming)."""
        state = self.state
        self.border_title = state.config.name
        self.border_subtitle = f"⚠ server ignores {', '.join(state.ignored)}" if state.ignored else ""
        self.query_one(".pane--summary", Label).update(state.config.summary())
        text = render_tokens(state.steps, len(state.text), self.measure, state.cursor, self.diverge_at)
        self.query_one(TokenView).update(text)
        self.query_one(".pane--stats", Static).update(stats_text(state, self.diverge_at))
        self.show_error()
        self.query_one(Sparkline).data = [math.exp(s.logprob) if math.isfinite(s.logprob) else 0.0
                                          for s in state.steps[-200:]]
        if scroll and state.cursor is None:
            self.query_one(VerticalScroll).scroll_end(animate=False)
