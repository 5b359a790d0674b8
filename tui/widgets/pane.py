"""One config's pane: title, config summary, streaming text, status line and a probability sparkline."""

from __future__ import annotations

import math

from rich.text import Text
from textual.content import Content  # a title with [brackets] is text, not markup
from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.geometry import Region, Spacing
from textual.widgets import Label, Sparkline, Static

from ..keys import bindings
from ..state import PaneState
from .token_view import TokenView, render_tokens

NAME_WIDTH = 18
"""A longer pane name is cut with … in the title, so the version and branch marks still show."""
ROOMY_HEIGHT = 20
"""Panes at least this tall give the status line a second line instead of cutting it."""
SHORT_HEIGHT = 9
"""Panes shorter than this leave out the config line and the sparkline, to keep some text on show."""


def stats_text(state: PaneState, diverge_at: int | None) -> str:
    """How the pane's output ended (or that it runs), then tokens, perplexity, seed, marks and speed:
    the most useful first, as a narrow pane cuts the end (the full line is the status line's tooltip)."""
    if state.error and not state.steps:
        return f"error: {state.error}"
    parts = [f"⚠ {state.error}"] if state.error else []  # e.g. a stream cut mid-way: the text is kept
    if state.stop_reason:  # a row that stopped says so at once, while the rest of the batch runs on
        parts.append(state.stop_reason)  # the engine's own word, as run --json writes it (eos, max_new_tokens, …)
        if state.incomplete:
            parts.append("⚠ constraint incomplete: raise max_new_tokens")
    elif state.running:
        parts.append("running…")
    parts.append(f"{len(state.steps)} tok")
    if state.agreement is not None:  # against the reference pane (shift+r): early, where a narrow pane shows it
        from ..models import agreement_text

        parts.append(agreement_text(state.agreement))
    removed = [s.constraint_removed for s in state.steps if s.constraint_removed is not None]
    if removed:  # how hard the json_schema / regex / choice / grammar pushed against the model (early: a
        forced = sum(s.forced for s in state.steps)  # narrow pane cuts the end)
        parts.append(f"constraint −{sum(removed) / len(removed):.0%}/tok" + (f" {forced} forced" if forced else ""))
    finite = [s.logprob for s in state.steps if math.isfinite(s.logprob)]
    if finite:
        mean = sum(finite) / len(finite)
        parts.append(f"ppl {math.exp(-mean):.1f} (lp {mean:.2f})")
    if state.seed is not None and state.config.samples and not state.running:
        parts.append(f"seed {state.seed}")
    if diverge_at is not None:
        parts.append(f"diverges @{diverge_at}")
    if state.branched_at is not None:
        parts.append(f"branch @{state.branched_at}")
    if state.completion is not None:
        rate = state.completion.timings.tokens_per_s
        parts.append(f"{rate:.0f} tok/s" if rate >= 10 else f"{rate:.1f} tok/s")  # a slow CPU is not "0 tok/s"
    return " · ".join(parts)


def pane_title(state: PaneState, number: int | None, model: str | None = None, reference: bool = False) -> str:
    """"1 greedy · smollm2 bfloat16 · v2/3 ┃@12": the pane's key, its name, its model (when the panes' differ),
    which version shows and where it branched (╎@12 on a version others branched from); ★ marks the reference
    pane."""
    name = state.config.name if len(state.config.name) <= NAME_WIDTH else state.config.name[:NAME_WIDTH - 1] + "…"
    parts = [("★" if reference else "") + (f"{number} {name}" if number is not None else name)]
    if model:
        parts.append(model)
    turn = state.turn_label()
    if turn:
        parts.append(turn)
    version = state.version_label()
    if version:
        parts.append(version)
    if state.branched_at is not None:
        parts.append(f"┃@{state.branched_at}")
    children = sorted({v.branched_at for v in state.children() if v.branched_at is not None})
    if children and state.branched_at is None:  # v1 of a branched pane: where its branches start, not a branch
        parts.append("╎@" + ",".join(map(str, children[:3])) + ("…" if len(children) > 3 else ""))
    return " · ".join(parts)


def conversation_text(state: PaneState, reply: Text) -> Text:
    """The pane's text: in a conversation (turns, or a system prompt), its earlier turns (dim), the live turn's
    user message, the reply, and how many turns follow when an earlier one is on show; a pane on one plain
    prompt shows only the reply."""
    if not state.turns and not state.later and not isinstance(state.prompt, list):
        return reply  # one plain prompt: the prompt box shows it
    out = Text()
    for turn in state.turns:
        out.append(f"› {_one_line(turn.user)}\n", style="bold dim")
        out.append(f"{turn.reply.strip()}\n\n", style="dim")
    out.append(f"› {_one_line(state.user or '')}\n", style="bold")
    out.append_text(reply)
    if state.later:
        count = len(state.later)
        out.append(f"\n\n… {count} later turn{'s' if count > 1 else ''}: }} shows {'them' if count > 1 else 'it'}",
                   style="italic dim")
    return out


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Pane(Vertical, can_focus=True):
    """A pane showing one decoding config's output."""

    DEFAULT_CSS = """
    Pane {
        width: 40;
        height: 1fr;
        border: round $secondary;
        border-title-color: $text;
        border-subtitle-color: $accent;
    }
    Pane:focus-within, Pane:focus {
        border: round $primary;
    }
    Pane > .pane--summary {
        color: $text-muted;
        padding: 0 1;
        height: 1;
        width: 1fr;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    Pane.-roomy > .pane--summary {
        height: auto;
        max-height: 3;
        text-wrap: wrap;
    }
    Pane > VerticalScroll {
        height: 1fr;
        scrollbar-size-vertical: 1;
    }
    Pane > .pane--stats {
        height: 1;
        padding: 0 1;
        color: $text-muted;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    Pane.-roomy > .pane--stats {
        height: auto;
        max-height: 2;
        text-wrap: wrap;
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
    Pane.-short > .pane--summary, Pane.-short > Sparkline {
        display: none;
    }
    """

    BINDINGS = bindings("pane")  # tui/keys.py: each key acts on this pane through the app

    def __init__(self, state: PaneState, **kwargs) -> None:
        super().__init__(**kwargs)
        self.state = state
        self.measure = "prob"
        self.diverge_at: int | None = None
        self.number: int | None = None
        """Its position, 1-based: the digit key that focuses it."""
        self.more = ""
        """"◀ 1 more" / "2 more ▶" when panes are hidden to the side (set by the pane strip)."""

    @property
    def token_bytes(self):
        """token id -> bytes, to show tokens holding part of a character (None without a local tokenizer); the
        pane's own model's when it has one."""
        shelf = getattr(self.app, "shelf", None)  # None in an App that is not decodelab's (widget tests)
        return shelf.token_bytes_for(self.state) if shelf is not None else None

    def compose(self) -> ComposeResult:
        yield Label(self.state.config.summary(), classes="pane--summary", markup=False)
        scroll = VerticalScroll()
        scroll.can_focus = False
        with scroll:
            yield TokenView()
        yield Static("", classes="pane--error", markup=False)
        yield Static("", classes="pane--stats", markup=False)
        yield Sparkline([], summary_function=max)

    def on_mount(self) -> None:
        self.refresh_view()

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.height >= ROOMY_HEIGHT, "-roomy")
        self.set_class(event.size.height < SHORT_HEIGHT, "-short")
        if self.state.cursor is not None:  # the text wraps differently now: keep the selected token in view
            self.call_after_refresh(self.scroll_to_cursor)

    def show_error(self) -> None:
        """The last run's error in full, beside (never instead of) the pane's text."""
        error = self.query_one(".pane--error", Static)
        error.update(f"⚠ {self.state.error}" if self.state.error else "")
        error.set_class(not self.state.error, "-empty")

    def refresh_view(self, scroll: bool = False) -> None:
        """Redraw from state (called at most ~30 times a second while streaming). A pane still being mounted (u
        brings one back) draws itself once composed: its children are not there to update yet."""
        if not self.query(TokenView):
            return
        state = self.state
        self.refresh_title()
        self.refresh_subtitle()
        summary = self.query_one(".pane--summary", Label)
        summary.update(state.config.summary())  # cut with … in a short pane; whole in a tall one and the tooltip
        summary.tooltip = state.config.summary()
        text = render_tokens(state.steps, len(state.text), self.measure, state.cursor, self.diverge_at,
                             branch_marks=state.branch_marks(), token_bytes=self.token_bytes, kl=state.kl_levels,
                             cut=state.stop_reason == "stop_string")
        self.query_one(TokenView).update(conversation_text(state, text))
        stats = self.query_one(".pane--stats", Static)
        stats.update(stats_text(state, self.diverge_at))
        stats.tooltip = stats_text(state, self.diverge_at)
        self.show_error()
        self.query_one(Sparkline).data = [math.exp(s.logprob) if math.isfinite(s.logprob) else 0.0
                                          for s in state.steps[-200:]]
        if state.cursor is not None:
            self.call_after_refresh(self.scroll_to_cursor)
        elif scroll:
            self.query_one(VerticalScroll).scroll_end(animate=False)

    def refresh_title(self) -> None:
        """Its number, name, model (when the panes' models differ), version, branch, and ★ for the reference."""
        shelf, workspace = getattr(self.app, "shelf", None), getattr(self.app, "workspace", None)
        label = shelf.pane_label(self.state) if shelf is not None else None
        self.border_title = Content(pane_title(self.state, self.number, label,
                                               workspace is not None and workspace.reference is self.state))

    def refresh_subtitle(self) -> None:
        ignored = f"⚠ server ignores {', '.join(self.state.ignored)}" if self.state.ignored else ""
        shelf = getattr(self.app, "shelf", None)
        written = shelf.written_by_other(self.state) if shelf is not None else None
        other = f"by {written}" if written and not self.state.running else ""
        self.border_subtitle = Content(" · ".join(p for p in (other, ignored, self.more) if p))

    def scroll_to_cursor(self) -> None:
        """Bring the selected token into view (with a line of context) when the text is taller than the pane."""
        if self.state.cursor is None:
            return
        line = self.query_one(TokenView).token_line(self.state.cursor)
        if line is not None:
            self.query_one(VerticalScroll).scroll_to_region(Region(0, line, 1, 1), spacing=Spacing(1, 0, 1, 0),
                                                            animate=False, immediate=True)

    # -- this pane's keys (tui/keys.py) -------------------------------------------------------------------
    def action_do(self, action: str) -> None:
        """Every pane key: the App's part named in the action does it, on this pane."""
        self.app.do(action, self)
