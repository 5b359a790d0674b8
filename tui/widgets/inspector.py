"""The token inspector: the selected token's statistics, the alternatives the model weighed (and which sampler
stage removed each), the token's probability after each stage of the chain, and the named tokens."""

from __future__ import annotations

import math
from dataclasses import dataclass

from decodelab.engine.decoding.token_bytes import REPLACEMENT, readable
from decodelab.engine.grammars import constraint_of
from rich.cells import cell_len, set_cell_size
from rich.text import Text
from textual.content import Content  # a title with [brackets] is text, not markup
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


HINT = "select a token: click it, or focus a pane and use ← →"
TOKEN_CELLS = 14
"""The token column's width in terminal cells: a row is 36 cells, inside the 40-column inspector with its
border and scrollbar, so it never wraps."""


def fit_cells(text: str, cells: int) -> str:
    """text cut or padded to exactly `cells` terminal cells (a CJK character takes two), ending in … when cut."""
    if cell_len(text) <= cells:
        return set_cell_size(text, cells)
    return set_cell_size(text, cells - 1) + "…"


def _pct(logprob: float) -> str:
    """A probability as a percentage; "cut" when filtered out (-inf), "n/a" when not reported (NaN)."""
    if math.isnan(logprob):
        return "   n/a "
    if not math.isfinite(logprob):
        return "   cut "
    pct = math.exp(logprob) * 100
    return f"{pct:6.0e}%" if 0 < pct < 0.005 else f"{pct:6.2f}%"  # a rare named token: 3e-05%, not 0.00%


STAGE_SHORT = {"epsilon_cutoff": "eps", "eta_cutoff": "eta", "no_repeat_ngram": "ngram", "banned_strings": "ban",
               "min_new_tokens": "minnew", "typical_p": "typ", "top_n_sigma": "nsigma", "mirostat": "miro",
               "logit_bias": "bias", "penalties": "pen", "adaptive_p": "adapt", "smoothing": "smooth", "cfg": "cfg",
               "grammar": "constr"}
STAGE_NAME = {"epsilon_cutoff": "epsilon", "eta_cutoff": "eta", "no_repeat_ngram": "no_repeat",
              "banned_strings": "banned", "min_new_tokens": "min_new", "top_n_sigma": "top_nsigma", "cfg": "guidance"}
"""Stage names cut to fit the inspector's columns."""


def removed_by(step, j: int) -> str | None:
    """The stage of the chain that removed alternative j of this step (None: kept, or no trace)."""
    for stage in step.stages[1:]:
        if j < len(stage.alternatives) and stage.alternatives[j] == -math.inf:
            return stage.stage
    return None


def chain_rows(step) -> list[str]:
    """One line per stage: its name, the candidates it left, this token's probability after it, the mass it moved."""
    rows = [f" {'stage':<12}{'kept':>6} {'p(tok)':>8}{'moved':>8}"]
    for stage in step.stages:
        moved = "" if stage.stage == "raw" else f"{stage.moved * 100:6.1f}%"
        name = STAGE_NAME.get(stage.stage, stage.stage)
        rows.append(f" {fit_cells(name, 12)}{stage.kept:>6} {_pct(stage.logprob):>8}{moved:>8}")
    return rows


def token_repr(text: str) -> str:
    """A token's text, quoted so leading spaces and newlines show."""
    return repr(text) if text else "∅"


def token_label(token_id: int, text: str, token_bytes=None) -> tuple[str, bool]:
    """What to call a token: its text, or its bytes (<0xE2><0x80>) when it holds part of a character.
    Returns (label, shown as bytes)."""
    data = token_bytes(token_id) if token_bytes is not None and (not text or REPLACEMENT in text) else None
    if data:
        shown = readable(data)
        return token_repr(shown), shown != data.decode("utf-8", "replace")
    return token_repr(text), False


class Inspector(Vertical):
    """Details of one token of one pane (its owner); Enter on an alternative branches that pane from it."""

    DEFAULT_CSS = """
    Inspector {
        border: round $accent;
        border-title-color: $text;
        border-subtitle-color: $text-muted;
        height: 1fr;
    }
    Inspector > Static {
        padding: 0 1;
        height: auto;
    }
    Inspector > OptionList, Inspector > OptionList:focus {
        height: 1fr;
        border: none;
        padding: 0;
        scrollbar-size-vertical: 1;
    }
    """

    BINDINGS = [
        Binding("escape", "screen.do('tokens.back_to_pane')", "back to the pane (a run goes on: Esc there cancels it)",
                show=False),
        Binding("i", "screen.do('tokens.back_to_pane')", "back to the pane", show=False),
        Binding("left", "screen.do('tokens.token(-1)')", "◀ token", show=False),
        Binding("right", "screen.do('tokens.token(1)')", "token ▶", show=False),
        Binding("b", "screen.do('tokens.branch')", "branch", show=False),
    ]

    @dataclass
    class Branch(Message):
        """Continue the pane with this token instead of the one it chose."""

        token_id: int

    owner = None
    """The pane whose token this shows (None when it shows none)."""

    def compose(self) -> ComposeResult:
        yield Static(HINT, id="inspector-info", markup=False)
        yield OptionList(id="alternatives")

    def on_mount(self) -> None:
        self.border_title = "inspector"

    def show(self, owner, index: int, step, token_bytes=None, status: str = "") -> None:
        """Show token `index` of pane `owner` (the pane a branch from here will rerun), under the pane's
        full status line (which a narrow pane cuts)."""
        self.owner = owner
        self.border_title = Content(f"{_pane_name(owner)} · token {index}")
        self.border_subtitle = "⏎ branch · esc back"
        label, as_bytes = token_label(step.token_id, step.text, token_bytes)
        info = Text()
        info.append(label, style="bold")
        if as_bytes:
            info.append("  bytes of a split character", style="dim")
        info.append(f"\np {_pct(step.logprob).strip()}  processed {_pct(step.logprob_processed).strip()}\n")
        info.append(f"rank {step.rank_text} · entropy {step.entropy:.2f} → {step.entropy_processed:.2f} nats"
                    .replace("-0.00", "0.00"))  # a fully certain token's entropy rounds to -0.00
        removed = step.constraint_removed
        if removed is not None:
            field = constraint_of(owner.state.config) if owner is not None else None
            info.append(f"\n{field[0] if field else 'constraint'} removed {removed:.0%} of the model's probability")
            if step.forced:
                info.append(f" · forced: the model gave this token {_pct(step.logprob).strip()}", style="bold")
        if status:
            info.append(f"\n{status}", style="dim")
        self.query_one("#inspector-info", Static).update(info)
        options = self.query_one(OptionList)
        highlighted = options.highlighted
        options.clear_options()
        header = f" {'#':>2} {'token':<{TOKEN_CELLS}} {'raw':>7} {'processed':>9}"
        options.add_option(Option(Text(header, style="bold"), disabled=True))
        for rank, alt in enumerate(step.top):
            mark = "▸" if alt.token_id == step.token_id else " "
            name = token_label(alt.token_id, alt.text, token_bytes)[0]
            cut = removed_by(step, rank)
            processed = f"{'✗' + STAGE_SHORT.get(cut, cut):>7}" if cut else _pct(alt.logprob_processed)
            label = f"{mark}{rank:2d} {fit_cells(name, TOKEN_CELLS)} {_pct(alt.logprob)} {processed}"
            options.add_option(Option(label, id=str(alt.token_id)))
        if step.named:
            options.add_option(Option(Text(" named tokens", style="bold"), disabled=True))
            for alt in step.named:
                mark = "▸" if alt.token_id == step.token_id else " "
                name = token_label(alt.token_id, alt.text, token_bytes)[0]
                label = f"{mark}   {fit_cells(name, TOKEN_CELLS)} {_pct(alt.logprob)} {_pct(alt.logprob_processed)}"
                options.add_option(Option(label, id=f"named-{alt.token_id}"))
        if len(step.stages) > 1:  # a config with stages of its own (greedy: the raw distribution only)
            options.add_option(Option(Text(" this token through the chain", style="bold"), disabled=True))
            header, *rows = chain_rows(step)
            options.add_option(Option(Text(header, style="bold"), disabled=True))
            for row in rows:  # enabled (so ↓ reaches them) but with no token to branch from
                options.add_option(Option(row))
        if highlighted is not None and highlighted < options.option_count:
            options.highlighted = highlighted

    def clear(self, owner=None, message: str = HINT) -> None:
        self.owner = owner
        self.border_title = Content(f"{_pane_name(owner)}" if owner is not None else "inspector")
        self.border_subtitle = ""
        self.query_one("#inspector-info", Static).update(message)
        self.query_one(OptionList).clear_options()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            self.post_message(self.Branch(int(event.option.id.removeprefix("named-"))))


def _pane_name(pane) -> str:
    number = getattr(pane, "number", None)
    name = pane.state.config.name
    return f"pane {number} {name}" if number is not None else name
