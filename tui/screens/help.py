"""The help screen (? or F1, on every screen): every key, grouped by what it does.

It lists first the keys of the screen it was opened on when that is a dialog, then every key of the main screen
(tui/keys.py: the same table as the bindings and the command palette, so it cannot fall behind them), the keys of
the alternatives list, the settings editor, blind A/B and sweeps (read from their bindings), and the app's own.
"""

from __future__ import annotations

from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Static

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


MAIN_NOTE = "Main screen (* acts on the current pane; the rest on every pane or the app)"


def here_name(screen: Screen) -> str:
    """What the help calls the screen it was opened on: its HELP_NAME, else a dialog's own title (cut), never the
    class name a newcomer cannot know (it said "Here (SavePreset)")."""
    named = getattr(screen, "HELP_NAME", None)
    if named:
        return named
    title = " ".join(str(getattr(screen, "title_text", "") or "").split())
    return (title[:48].rstrip() + "…" if len(title) > 49 else title) or "this dialog"


def help_sections(here: Screen | None = None) -> list[tuple[str, list[tuple[str, str]]]]:
    """(title, [(key, what it does)]) in the help's order; `here` is the screen it was opened on (its keys come
    first unless it is the main one)."""
    out = []
    if here is not None and type(here).__name__ != "MainScreen":
        out.append((f"Here ({here_name(here)})", screen_keys(type(here).BINDINGS) or [("esc", "close")]))
    for group, rows in help_groups():
        out.append((group, [(key, f"{'* ' if pane else ''}{text}") for key, text, pane in rows]))
    out.extend(other_screens())
    out.append(("Dialogs", DIALOG_KEYS))
    out.append(("Everywhere", APP_KEYS))
    return out


def help_text(here: Screen | None = None) -> str:
    """The help as plain text (y copies it)."""
    width = 18
    lines: list[str] = []
    sections = help_sections(here)
    for i, (title, rows) in enumerate(sections):
        if not title.startswith("Here") and (i == 0 or sections[i - 1][0].startswith("Here")):
            lines += [MAIN_NOTE, ""]
        lines.append(title)
        for key, text in rows:
            lines.append(f"  {key:<{width}} {text}" if len(key) < width else f"  {key}\n  {'':<{width}} {text}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def help_renderable(here: Screen | None = None):
    """The help on screen: each group a two-column grid, so a long line wraps under its text, not its key."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list = []
    sections = help_sections(here)
    for i, (title, rows) in enumerate(sections):
        if not title.startswith("Here") and (i == 0 or sections[i - 1][0].startswith("Here")):
            parts.append(Text(MAIN_NOTE, style="dim"))
        parts.append(Text(title, style="bold"))
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=18, no_wrap=True)
        grid.add_column(ratio=1)
        for key, text in rows:
            grid.add_row(Text("  " + key, style="bold"), Text(text))
        parts.append(grid)
        parts.append(Text(""))
    return Group(*parts)


class HelpScreen(ShowText):
    """? or F1: every key; esc, q, ? or F1 closes it."""

    BINDINGS = [("escape,q,question_mark,f1", "close", "Close"), ("y", "copy", "Copy")]

    def __init__(self, here: Screen | None = None) -> None:
        super().__init__("Keys", help_text(here))
        self.here = here

    def on_mount(self) -> None:
        super().on_mount()
        self.query(Static).last().update(help_renderable(self.here))
