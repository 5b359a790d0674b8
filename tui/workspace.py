"""The Workspace: what a person has built on the main screen (panes' states, system prompt, reference, undo), typed.

Sessions (ctrl+s, ctrl+o) save and load exactly this: `record()` gives the engine's session record of it and
`states_from()` the panes' states back. The panes themselves are the pane strip's widgets, in their order on
screen; each holds a PaneState (its config, conversation and versions), and the Workspace reads them from there.
Nothing here touches a widget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from decodelab.engine.config import ConfigError, DecodingConfig

from .state import PaneState, conversation_record, restore_conversation

if TYPE_CHECKING:
    from decodelab.engine.backends.loading import ModelSpec
    from decodelab.engine.library.sessions import Session

UNDO_DEPTH = 20
"""How many undoable actions u can take back, newest first."""


@dataclass
class Removed:
    """x removed a pane: u puts its state back at its place."""

    index: int
    state: PaneState


@dataclass
class FieldSet:
    """= set one field on every pane: u gives each pane its own config back."""

    before: list[tuple[PaneState, DecodingConfig]]
    text: str


@dataclass
class TurnsSetAside:
    """shift+n started a new conversation: u gives each pane its earlier turns back."""

    kept: list[tuple[PaneState, object]]


Undoable = Removed | FieldSet | TurnsSetAside


@dataclass
class Workspace:
    """The main screen's work, apart from the widgets that show it."""

    order: Callable[[], list[PaneState]]
    """The panes' states in their order on screen (the pane strip's)."""
    system_prompt: str | None = None
    """The system prompt every pane's next run starts with (shift+p sets it); None for none."""
    draft: str | None = None
    """The prompt box's text while { shows an earlier turn's message there (} at the newest puts it back)."""
    reference: PaneState | None = None
    """The pane the others are measured against (shift+r), or None."""
    measure: str = "prob"
    """What the heatmap colours tokens by (h)."""
    diff_mode: str = "off"
    """Which first different token is marked (v): off, greedy, left."""
    undo: list[Undoable] = field(default_factory=list)
    """What u undoes, newest last."""
    last_session: str | None = None
    """The session file saved or opened last: ctrl+s and ctrl+o offer it."""
    set_aside: str | None = None
    """A workspace set aside at start or by shift+f: ctrl+o offers it first."""

    @property
    def panes(self) -> list[PaneState]:
        return self.order()

    def remember(self, entry: Undoable) -> None:
        """Something u can undo (the oldest beyond UNDO_DEPTH are dropped)."""
        self.undo = (self.undo + [entry])[-UNDO_DEPTH:]

    def removed_states(self) -> list[PaneState]:
        """Panes removed with x that u may still bring back (their models stay loaded)."""
        return [e.state for e in self.undo if isinstance(e, Removed)]

    def drop_reference_if_gone(self) -> None:
        if self.reference is not None and all(s is not self.reference for s in self.panes):
            self.reference = None

    def clear_reference(self) -> bool:
        """No reference pane any more (its figures go); True when the heatmap was on kl and moved to prob."""
        self.reference = None
        for state in self.panes:
            state.agreement, state.kl_levels = None, None
        if self.measure == "kl":
            self.measure = "prob"
            return True
        return False

    # -- sessions -----------------------------------------------------------------------------------------
    def record(self, prompt: str, model: ModelSpec) -> Session:
        """The session record of this workspace: the prompt box, the app's model, and every pane."""
        from decodelab.engine.library.sessions import Session

        states = self.panes
        return Session(prompt=prompt, model=dataclasses.asdict(model), configs=[s.config for s in states],
                       completions=[s.completion for s in states], system=self.system_prompt,
                       conversations=[conversation_record(s) for s in states],
                       pane_models=[dataclasses.asdict(s.model_spec) if s.model_spec else None for s in states],
                       reference=next((i for i, s in enumerate(states) if s is self.reference), None))

    @staticmethod
    def states_from(session: Session, where: str) -> list[PaneState]:
        """The panes' states of a session record; ConfigError saying which pane is damaged."""
        from decodelab.engine.backends.loading import ModelSpec

        states = []
        n = len(session.configs)
        models = list(session.pane_models) + [None] * (n - len(session.pane_models))
        records = list(session.conversations or []) + [None] * (n - len(session.conversations or []))
        completions = list(session.completions) + [None] * (n - len(session.completions))
        for i, (config, completion, record) in enumerate(zip(session.configs, completions, records)):
            state = PaneState(config)
            try:
                model = models[i]
                state.model_spec = ModelSpec(**model) if model else None
                if record is not None:
                    restore_conversation(state, record, where)
                elif completion is not None:  # a schema-1 file: one output, on the session's prompt
                    state.prompt = session.prompt
                    state.finish(completion)
            except ConfigError:
                raise
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise ConfigError(f"{where} is damaged: pane {i + 1}'s conversation or model "
                                  f"({type(exc).__name__}: {exc})") from exc
            states.append(state)
        return states
