"""The token inspector: the selected token's statistics and the alternatives the model weighed."""

from __future__ import annotations

import math
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


def _pct(logprob: float) -> str:
    """A probability as a percentage; "cut" when filtered out (-inf), "n/a" when not reported (NaN)."""
    if math.isnan(logprob):
        return "   n/a "
    return f"{math.exp(logprob) * 100:6.2f}%" if math.isfinite(logprob) else "   cut "


def token_repr(text: str) -> str:
    """A token's text, quoted so leading spaces and newlines show."""
    return repr(text) if text else "∅"


class Inspector(Vertical):
    """Details of one token step; Enter on an alternative branches the pane from it."""

    DEFAULT_CSS = """
    Inspector {
        border: round $accent;
        border-title-color: $text;
        height: 1fr;
    }
    Inspector > Static {
        padding: 0 1;
        height: auto;
    }
    Inspector > OptionList {
        height: 1fr;
        border: none;
    }
    """

    @dataclass
    class Branch(Message):
        """Continue the pane with this token instead of the one it chose."""

        token_id: int

    def compose(self) -> ComposeResult:
        yield Static("select a token: click it, or focus a pane and use ← →", id="inspector-info")
        yield OptionList(id="alternatives")

    def on_mount(self) -> None:
        self.border_title = "inspector"

    def show(self, pane_name: str, index: int, step) -> None:
        self.border_title = f"{pane_name} · token {index}"
        info = Text()
        info.append(f"{token_repr(step.text)!s}\n", style="bold")
        info.append(f"p {_pct(step.logprob).strip()}  processed {_pct(step.logprob_processed).strip()}\n")
        info.append(f"rank {step.rank} · entropy {step.entropy:.2f} → {step.entropy_processed:.2f} nats")
        self.query_one("#inspector-info", Static).update(info)
        options = self.query_one(OptionList)
        options.clear_options()
        options.add_option(Option(Text(" #  token              raw   processed", style="bold"), disabled=True))
        for rank, alt in enumerate(step.top):
            mark = "▸" if alt.token_id == step.token_id else " "
            label = f"{mark}{rank:2d} {token_repr(alt.text)[:16]:<16} {_pct(alt.logprob)} {_pct(alt.logprob_processed)}"
            options.add_option(Option(label, id=str(alt.token_id)))

    def clear(self) -> None:
        self.border_title = "inspector"
        self.query_one("#inspector-info", Static).update("select a token: click it, or focus a pane and use ← →")
        self.query_one(OptionList).clear_options()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            self.post_message(self.Branch(int(event.option.id)))
