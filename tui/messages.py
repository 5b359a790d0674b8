"""Messages the engine worker posts to the app (small dataclasses; the worker never touches widgets)."""

from __future__ import annotations

from dataclasses import dataclass, field

from textual.message import Message


@dataclass
class LoadProgress(Message):
    stage: str
    fraction: float | None


@dataclass
class ModelLoaded(Message):
    loaded: object


@dataclass
class LoadFailed(Message):
    error: str


@dataclass
class RunFinished(Message):
    run_id: int
    panes: list[int]
    completions: list
    """One per pane; None where the pane's model failed (its error is in errors)."""
    errors: dict = field(default_factory=dict)
    """Pane index -> why it has no completion (its model failed while the others' went on)."""


@dataclass
class RunFailed(Message):
    run_id: int
    panes: list[int]
    error: str


@dataclass
class PaneModelProgress(Message):
    spec: object
    stage: str
    fraction: float | None


@dataclass
class PaneModelLoaded(Message):
    spec: object
    label: str


@dataclass
class PaneModelFailed(Message):
    spec: object
    error: str


@dataclass
class AgreementReady(Message):
    """Every pane measured against the reference: (state, Agreement or None, KL per own token or None, problem)."""

    reference: object
    results: list
