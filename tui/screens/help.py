"""The help screen (? or F1, on every screen): every key, grouped by what it does.

It lists first the keys of the screen it was opened on when that is a dialog, then every key of the main screen
(tui/keys.py: the same table as the bindings and the command palette, so it cannot fall behind them), the keys of
the alternatives list, the settings editor, blind A/B and sweeps (read from their bindings), and the app's own.
"""

from __future__ import annotations

from textual.binding import Binding
from textual.screen import Screen

from ..keys import help_groups, key_name
from .ask import ShowText

APP_KEYS = [("? or F1", "this help (in a text box, F1)"), ("ctrl+p", "every action, found by name (the command palette)"),
            ("ctrl+q", "quit: a run is cancelled first; the workspace is kept and comes back on the next start"),
            ("Tab or shift+Tab", "the next / previous widget")]
DIALOG_KEYS = [("esc", "back one step: a question returns to its field, a dialog closes (an editor with changes "
                "asks first)"), ("Enter", "confirm or apply"), ("Tab or shift+Tab", "the next / previous field")]
ALTERNATIVES_EXTRA = [("↑ ↓", "pick an alternative"), ("Enter or b", "branch the pane from the highlighted one")]
EDITOR_EXTRA = [("Enter", "in a field: apply"), ("Tab or shift+Tab", "the next / previous field")]


def screen_keys(bindings: list, skip: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(key, what it does) for a widget's or screen's BINDINGS (Binding objects or (key, action, description)),
    without those whose action starts with one of `skip`."""
    rows = []
    for b in bindings:
        b = b if isinstance(b, Binding) else Binding(*b)
        if b.description and not b.action.startswith(skip):
            rows.append((key_name(b.key), b.description))
    return rows


def other_screens() -> list[tuple[str, list[tuple[str, str]]]]:
    from ..widgets.inspector import Inspector
    from .arena import ArenaScreen
    from .config_editor import ConfigEditor
    from .sweep import SweepScreen

    votes = [b for b in ArenaScreen.BINDINGS if b.action.startswith("vote('") and len(b.description) == 1]
    return [("The alternatives list (↓ or i in a pane)",
             ALTERNATIVES_EXTRA + screen_keys(Inspector.BINDINGS, skip=("screen.do('tokens.branch",))),
            ("The settings editor (e)", screen_keys(ConfigEditor.BINDINGS) + EDITOR_EXTRA),
            ("Blind A/B (shift+a)", [(f"{votes[0].key}–{votes[-1].key}", "vote for that output")]
             + screen_keys([b for b in ArenaScreen.BINDINGS if b not in votes])),
            ("Sweeps (shift+s)", screen_keys(SweepScreen.BINDINGS))]


def help_text(here: Screen | None = None) -> str:
    """The help's body; `here` is the screen it was opened on (its keys come first unless it is the main one)."""
    width = 18
    lines: list[str] = []

    def section(title: str, rows: list[tuple[str, str]]) -> None:
        lines.append(title)
        for key, text in rows:
            lines.append(f"  {key:<{width}} {text}" if len(key) < width else f"  {key}\n  {'':<{width}} {text}")
        lines.append("")

    if here is not None and type(here).__name__ != "MainScreen":
        section(f"Here ({type(here).__name__})", screen_keys(type(here).BINDINGS) or [("esc", "close")])
    lines.append("Main screen (* acts on the current pane; the rest on every pane or the app)")
    lines.append("")
    for group, rows in help_groups():
        section(group, [(key, f"{'* ' if pane else ''}{text}") for key, text, pane in rows])
    for title, rows in other_screens():
        section(title, rows)
    section("Dialogs", DIALOG_KEYS)
    section("Everywhere", APP_KEYS)
    return "\n".join(lines).rstrip() + "\n"


class HelpScreen(ShowText):
    """? or F1: every key; esc, q, ? or F1 closes it."""

    BINDINGS = [("escape,q,question_mark,f1", "close", "Close"), ("y", "copy", "Copy")]

    def __init__(self, here: Screen | None = None) -> None:
        super().__init__("Keys", help_text(here))
