"""Part: the base of the App's named parts (panes, tokens, talk, files, runs, shelf, reference), and what they share.

A part owns the commands of one concern and no state of its own beyond what its class declares: the work lives
in the App's Workspace (tui/workspace.py), the models in its ModelShelf (tui/models.py), the run in its
RunController. A part reaches the screen through the helpers here, and another part by its name on the App.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textual.widgets import TextArea

    from .app import DecodelabApp
    from .widgets.pane import Pane


class Part:
    def __init__(self, app: DecodelabApp) -> None:
        self.app = app

    # -- the App's named parts and state ---------------------------------------------------------------------
    @property
    def ws(self):  # -> Workspace
        return self.app.workspace

    @property
    def shelf(self):  # -> ModelShelf
        return self.app.shelf

    @property
    def running(self) -> bool:
        return self.app.runs.running

    # -- the screen --------------------------------------------------------------------------------------------
    def panes(self) -> list[Pane]:
        return self.app.panes()

    def pane(self) -> Pane | None:
        return self.app.pane()

    @property
    def prompt_box(self) -> TextArea:
        from textual.widgets import TextArea

        return self.app.query_one("#prompt", TextArea)

    def notify(self, message: str, **kwargs: Any) -> None:
        """A notification, shown as written (the App's notify never reads markup)."""
        self.app.notify(message, **kwargs)

    def push_screen(self, screen: Any, callback: Any = None) -> None:
        self.app.push_screen(screen, callback)

    def later(self, callback: Any, *args: Any) -> None:
        """Run after the next refresh (mounts and removals have landed then)."""
        self.app.call_after_refresh(callback, *args)
