"""Messages the engine worker posts to the app (small dataclasses; the worker never touches widgets)."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass
class RunFailed(Message):
    run_id: int
    panes: list[int]
    error: str
