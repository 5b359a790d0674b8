"""A pane's text, one clickable span per token, coloured by the heatmap measure."""

from __future__ import annotations

from dataclasses import dataclass

from decodelab.engine.decoding.token_bytes import display_pieces
from decodelab.themes.heatmap import colour, kl_level, level, text_colour_for
from rich.style import Style
from rich.text import Text
from textual import events
from textual.message import Message
from textual.widgets import Static


BRANCH_MARK = "┃"
"""Drawn before the token a pane was branched to (not part of the text: copy and save never see it)."""
CHILD_MARK = "╎"
"""Drawn, dimmer, before a token where a later version branched from the one on show (v1 of a branched pane)."""


def render_tokens(steps, text_len: int, measure: str, cursor: int | None, diverge_at: int | None,
                  scale: str = "viridis", branch_marks=(), token_bytes=None, kl=None, cut: bool = False) -> Text:
    """Text for a pane: each token's piece, styled by measure, cursor and divergence, clickable.

    Each span carries `token` meta (not `@click`, whose link style would replace the heatmap's
    black-or-white text colour). token_bytes(token_id) -> bytes | None lets a token holding part of
    a UTF-8 character show its bytes (<0xE2>) instead of U+FFFD. branch_marks: token index -> the mark drawn
    before it: BRANCH_MARK where this output was branched, CHILD_MARK where a later version branched from it
    (a set marks each with BRANCH_MARK). kl: the KL
    against the reference pane's model at each token, which the "kl" measure colours by. cut: the output ended on a
    stop string (its trimmed tokens show nothing).
    """
    out = Text()
    marks = branch_marks if isinstance(branch_marks, dict) else dict.fromkeys(branch_marks, BRANCH_MARK)
    pieces = display_pieces(steps, text_len, token_bytes, cut)
    for i, (step, (piece, raw)) in enumerate(zip(steps, pieces)):
        if not piece:
            if i != cursor:
                continue
            piece = "⏎"  # keep an empty-text token (e.g. EOS) selectable and visible
        if i in marks:
            own = marks[i] == BRANCH_MARK
            out.append(marks[i], Style(bold=own, dim=not own, color="#ff8c00", meta={"token": i}))
        style = Style(meta={"token": i})
        value = kl_level(kl[i]) if measure == "kl" and kl is not None and i < len(kl) else level(step, measure)
        if value is not None:
            bg = colour(value, scale)
            style += Style(color=text_colour_for(bg), bgcolor=bg)
        if raw:
            style += Style(italic=True)
        if measure == "constraint" and step.forced:
            style += Style(underline=True)  # the constraint chose a token the model gave under 1%
        if i == diverge_at:
            style += Style(underline=True, bold=True)
        if i == cursor:
            style += Style(reverse=True)
            piece = piece.replace("\n", "⏎\n")  # a selected line break shows (and can be scrolled to)
        out.append(piece, style)
    return out


class TokenView(Static):
    """The streaming text of one pane."""

    DEFAULT_CSS = """
    TokenView {
        width: 1fr;
        height: auto;
        padding: 0 1;
    }
    """

    @dataclass
    class Selected(Message):
        """The user clicked a token."""

        view: "TokenView"
        index: int

    def on_click(self, event: events.Click) -> None:
        index = event.style.meta.get("token")
        if index is not None:
            event.stop()
            self.post_message(self.Selected(self, int(index)))

    def action_select_token(self, index: int) -> None:
        self.post_message(self.Selected(self, index))

    def token_line(self, index: int) -> int | None:
        """The line (within this widget) where token `index` is drawn, None when it is not drawn."""
        for y in range(self.size.height):
            for segment in self.render_line(y):
                if segment.style is not None and segment.style.meta.get("token") == index:
                    return y
        return None
