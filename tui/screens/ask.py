"""Small dialogs: ask for a line of text (with validation), or confirm an action."""

from __future__ import annotations

from typing import Callable

from textual import on
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


class AskText(ModalScreen[str | None]):
    """Ask for one line. check(value) returns an error message or None; the dialog stays open on error."""

    DEFAULT_CSS = """
    AskText { align: center middle; }
    AskText > Vertical {
        width: 80%; max-width: 90; height: auto;
        border: thick $primary; background: $surface; padding: 1 2;
    }
    AskText #ask-error { color: $error; height: auto; }
    AskText .ask-title { text-style: bold; }
    AskText Horizontal { height: 3; align-horizontal: right; }
    """
    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, title: str, value: str = "", check: Callable[[str], str | None] | None = None,
                 detail: str = "") -> None:
        super().__init__()
        self.title_text, self.value, self.check, self.detail = title, value, check, detail

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, classes="ask-title", markup=False)
            if self.detail:
                yield Static(self.detail, markup=False)
            yield Input(self.value, id="ask-input")
            yield Static("", id="ask-error", markup=False)
            with Horizontal():
                yield Button("OK", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        value = self.query_one(Input).value.strip()
        error = self.check(value) if self.check else None
        if error:
            self.query_one("#ask-error", Static).update(error)
            return
        self.dismiss(value)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class Confirm(ModalScreen[bool]):
    """A yes/no question over the app (which stays visible, dimmed, behind it)."""

    # DEFAULT_CSS is scoped to its own class, so Confirm needs its own: without it, it sat top-left on a blank screen
    DEFAULT_CSS = """
    Confirm { align: center middle; }
    Confirm > Vertical {
        width: 80%; max-width: 70; height: auto;
        border: thick $warning; background: $surface; padding: 1 2;
    }
    Confirm Label { width: 1fr; }
    Confirm Horizontal { height: 3; margin-top: 1; align-horizontal: right; }
    """
    BINDINGS = [("escape", "no", "Cancel"), ("y", "yes", "Yes"), ("n", "no", "No")]

    def __init__(self, question: str, yes: str = "Yes") -> None:
        super().__init__()
        self.question, self.yes = question, yes

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question, markup=False)
            with Horizontal():
                yield Button(self.yes, variant="warning", id="yes")
                yield Button("Cancel", id="no")

    @on(Button.Pressed, "#yes")
    def action_yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#no")
    def action_no(self) -> None:
        self.dismiss(False)


class ShowText(ModalScreen[None]):
    """A text to read (a pane's whole config and which settings mattered), scrollable; any of esc, q or f
    closes it; y copies it."""

    DEFAULT_CSS = """
    ShowText { align: center middle; }
    ShowText > Vertical {
        width: 90%; max-width: 100; height: auto; max-height: 90vh;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    ShowText .show-title { height: auto; }
    ShowText VerticalScroll { height: auto; max-height: 75vh; }
    """
    BINDINGS = [("escape", "close", "Close"), ("q", "close", "Close"), ("f", "close", "Close"),
                ("y", "copy", "Copy")]

    def __init__(self, title: str, body: str) -> None:
        super().__init__()
        self.title_text, self.body = title, body

    def compose(self) -> ComposeResult:
        from textual.containers import VerticalScroll

        with Vertical():
            yield Static(Text.assemble((self.title_text, "bold"), ("  esc closes · ↑ ↓ scroll · y copies", "dim")),
                         classes="show-title")
            with VerticalScroll():
                yield Static(self.body, markup=False)

    def on_mount(self) -> None:
        from textual.containers import VerticalScroll

        self.query_one(VerticalScroll).focus()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.body)
        self.app.notify("Copied (through the terminal, OSC 52).")


def save_asking(app, path: str, text: str, what: str, again: Callable[[str], None],
                done: Callable[[str], None]) -> None:
    """Write text to path, atomically; when the file exists, ask first: no (or esc) calls again(path), so the
    question steps back to the path as typed. done(path) runs once it is written; any other failure is said."""
    import os

    from decodelab.engine.config import ConfigError
    from decodelab.engine.library.fileio import save_document

    class Exists(ConfigError):
        pass

    def attempt(overwrite: bool) -> None:
        try:
            save_document(os.path.expanduser(path), text, what, overwrite=overwrite, exists_error=Exists)
        except Exists:
            app.push_screen(Confirm(f"{path} exists. Overwrite it?", "Overwrite"),
                            lambda yes: attempt(True) if yes else again(path))
            return
        except ConfigError as exc:  # the path as typed comes back, to be put right (or esc)
            app.notify(str(exc), severity="error", timeout=10)
            again(path)
            return
        done(path)

    if os.path.isdir(os.path.expanduser(path)):  # not "exists: overwrite it?", then "Is a directory"
        app.notify(f"{path} is a folder: give the {what}'s name in it, e.g. "
                   f"{os.path.join(path, 'decodelab.json' if 'session' in what else 'export.txt')}",
                   severity="error", timeout=10)
        again(path)
        return
    attempt(False)
