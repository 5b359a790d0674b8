"""Stopping single rows of a running batch while the others go on (the TUI's "stop this pane")."""

from __future__ import annotations

from collections.abc import Container

from ..results import StepEvent


def finish_stopped(trackers, row_ids: list[int], stops: Container[int], step: int, now: float) -> StepEvent | None:
    """Finish, as "cancelled", every running row whose id the caller put in stops; None when there is none.

    stops is read, never written: the caller may add row ids from another thread while the run goes on.
    A stopped row keeps its slot in the batch (shapes stay fixed) and produces no more tokens.
    """
    finished = {}
    for row, tracker in zip(row_ids, trackers):
        if not tracker.finished and row in stops:
            finished[row] = tracker.finish("cancelled", now)
    return StepEvent(step=step, tokens={}, finished=finished) if finished else None
