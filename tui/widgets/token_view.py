"""A pane's text, one clickable span per token, coloured by the heatmap measure."""

from __future__ import annotations

from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual.message import Message
from textual.widgets import Static

from themes.heatmap import colour, level, text_colour_for


def render_tokens(steps, text_len: int, measure: str, cursor: int | None, diverge_at: int | None,
                  scale: str = "viridis") -> Text:
    """Text for a pane: each token's piece, styled by measure, cursor and divergence, clickable."""
    out = Text()
    remaining = text_len
    for i, step in enumerate(steps):
        piece = step.text[: max(remaining, 0)]
        remaining -= len(step.text)
        if not piece:
            if i == cursor:  # keep an empty-text token (e.g. EOS) selectable and visible
                piece = "⏎" if step.text == "" else piece
            else:
                continue
        style = Style(meta={"@click": f"select_token({i})"})
        value = level(step, measure)
        if value is not None:
            bg = colour(value, scale)
            style += Style(color=text_colour_for(bg), bgcolor=bg)
        if i == diverge_at:
            style += Style(underline=True, bold=True)
        if i == cursor:
            style += Style(reverse=True)
        out.append(piece, style)
    return out


class TokenView(Static):
    """The streaming text of one pane."""

    DEFAULT_CSS = """
    TokenView {
        width: 1fr;
        height: auto;
        padding: 0 1;
        link-style: none;
        link-background-hover: $accent 30%;
        link-style-hover: none;
    }
    """

    @dataclass
    class Selected(Message):
        """The user clicked a token."""

        view: "TokenView"
        index: int

    def action_select_token(self, index: int) -> None:
        self.post_message(self.Selected(self, index))
