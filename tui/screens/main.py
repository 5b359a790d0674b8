"""The main screen: the model bar, the prompt box, the panes beside the inspector, the legend; it owns the main keys.

Its keys (tui/keys.py, scope "main") are bound here, so a dialog or another screen (A/B, sweep) never runs them;
the widgets' messages (a token clicked, a branch chosen, focus) are handed to the App's parts.
"""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Static, TextArea

from ..keys import bindings
from ..state import PaneState
from ..widgets.footer import FittingFooter
from ..widgets.inspector import Inspector
from ..widgets.legend import Legend
from ..widgets.pane import Pane
from ..widgets.pane_strip import PaneStrip
from ..widgets.token_view import TokenView


class MainScreen(Screen):
    BINDINGS = bindings("main")

    def __init__(self, states: list[PaneState], prompt: str) -> None:
        super().__init__()
        self.initial_states = states
        self.initial_prompt = prompt

    def compose(self) -> ComposeResult:
        yield Static("loading…", id="model-bar", markup=False)
        yield TextArea(self.initial_prompt, id="prompt", soft_wrap=True, show_line_numbers=False)
        with Horizontal(id="workspace"):
            with PaneStrip(id="panes"):
                for state in self.initial_states:
                    yield Pane(state)
            yield Inspector(id="inspector")
        yield Legend(id="legend")
        yield FittingFooter()

    def on_mount(self) -> None:
        self.call_after_refresh(self.app.main_mounted)  # type: ignore[attr-defined]  # every widget is in then

    def action_do(self, action: str) -> None:
        """Every main-screen key: the App's part named in the action does it."""
        self.app.do(action)  # type: ignore[attr-defined]

    def on_resize(self, event: events.Resize) -> None:
        width = event.size.width
        self.set_class(width < 110, "-narrow")
        self.set_class(width < 76, "-stacked")
        self.call_after_refresh(self.app.layout_panes)  # type: ignore[attr-defined]

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        self.app.tokens.focused(event)  # type: ignore[attr-defined]

    def on_token_view_selected(self, event: TokenView.Selected) -> None:
        self.app.tokens.token_selected(event)  # type: ignore[attr-defined]

    def on_inspector_branch(self, event: Inspector.Branch) -> None:
        self.app.tokens.branch_to(event.token_id)  # type: ignore[attr-defined]
