"""The run controller: one batched engine run at a time, on a worker thread, and what it does to the panes' state.

The worker only hands events over (a deque the app drains at its repaint rate) and posts RunFinished or
RunFailed; it never touches a widget. The app asks the controller to start, stop one row, cancel, and to
apply what arrived; it repaints the panes the controller says changed.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from functools import partial

from .messages import RunFailed, RunFinished
from .state import PaneState


class RunController:
    def __init__(self, app) -> None:
        self.app = app
        self.running = False
        """A run is in progress (its worker has not reported back)."""
        self.run_id = 0
        """Which run the events belong to; a stale run's events and reports are ignored."""
        self.cancel_event = threading.Event()
        self.stop_rows: set[int] = set()
        """Rows of the current run stopped one by one (k); the engine reads it while it runs."""
        self.states: list[PaneState] = []
        """The current run's panes' states, by row."""
        self.before: dict[int, PaneState] = {}
        """Each running pane's previous output, given back when the run fails."""
        self.started: dict[int, int] = {}
        """How many tokens each pane showed as the run began (a branch's forced prefix)."""
        self.pending: collections.deque = collections.deque()
        """(run id, states, StepEvent) handed over by the worker, applied by drain()."""
        self.engine_threads: set[str] = set()
        """Names of the threads the engine ran on (never the main thread)."""

    def start(self, loaded, states: list[PaneState], configs, prompt: str, prefix: list[int] | None,
              prefix_steps: list | None) -> None:
        """Begin a run of configs (one per state) on loaded; the panes show it streaming."""
        self.before = {id(s): dataclasses.replace(s) for s in states}
        for state in states:
            state.begin(prefix_steps, len(prefix) - 1 if prefix else None, prompt, getattr(loaded, "name", None))
        self.started = {id(s): len(s.steps) for s in states}  # a branch starts with its forced tokens
        self.running = True
        self.run_id += 1
        self.cancel_event, self.stop_rows, self.states = threading.Event(), set(), states
        work = partial(self._work, loaded, self.run_id, states, configs, prompt, list(prefix or []),
                       self.cancel_event, self.stop_rows)
        self.app.run_worker(work, thread=True, exclusive=True, group="engine", name="engine")

    def _work(self, loaded, run_id, states, configs, prompt, prefix, cancel, stop_rows) -> None:
        """The worker thread: decode, handing each step over; report the end as a message."""
        from decodelab.engine.backends.base import generate_many
        from decodelab.engine.results import GenerationError

        def on_step(event) -> None:
            self.engine_threads.add(threading.current_thread().name)
            self.pending.append((run_id, states, event))

        try:
            completions = generate_many(loaded, prompt, configs, on_step=on_step, cancel=cancel, prefix_ids=prefix,
                                        stop_rows=stop_rows)
        except GenerationError as exc:
            self.app.post_message(RunFailed(run_id, states, str(exc)))
            return
        except Exception as exc:  # noqa: BLE001 - never let a run take the app down
            self.app.post_message(RunFailed(run_id, states, f"{type(exc).__name__}: {exc}"))
            return
        self.app.post_message(RunFinished(run_id, states, completions))

    def drain(self) -> set[int]:
        """Apply every step that arrived; the ids of the states that changed."""
        changed: set[int] = set()
        while self.pending:
            run_id, states, event = self.pending.popleft()
            if run_id != self.run_id:
                continue
            for row, steps in event.tokens.items():
                states[row].steps.extend(steps)
                states[row].text = event.texts.get(row, states[row].text)
                changed.add(id(states[row]))
            for row, reason in event.finished.items():
                states[row].stop_reason = reason
                changed.add(id(states[row]))
        return changed

    def finished(self, message: RunFinished) -> bool:
        """The run ended: every pane takes its completion. False for a stale run's report."""
        if message.run_id != self.run_id:
            return False
        self.drain()
        self.running = False
        for state, completion in zip(message.panes, message.completions):
            state.finish(completion)
        return True

    def failed(self, message: RunFailed) -> bool:
        """The run produced nothing usable: each pane gets its previous output back, with the error beside it."""
        if message.run_id != self.run_id:
            return False
        self.drain()
        self.running = False
        for state in message.panes:
            before = self.before.get(id(state))
            if before is not None and len(state.steps) <= self.started.get(id(state), 0):  # it made nothing new
                for f in dataclasses.fields(before):
                    setattr(state, f.name, getattr(before, f.name))
            state.running = False
            state.error = message.error
        return True

    def stop(self, state: PaneState, can_stop_rows: bool) -> tuple[bool, str]:
        """k: stop one pane's row while the others go on; (whether it stops, what to tell the user)."""
        rows = [i for i, s in enumerate(self.states) if s is state]
        if not self.running or not rows or not state.running:
            return False, "This pane is not running (Esc cancels a whole run)."
        if not can_stop_rows or state.config.num_beams > 1:
            return False, "Only a local non-beam pane can be stopped alone: Esc cancels the whole run."
        self.stop_rows.add(rows[0])
        others = any(s.running and s is not state for s in self.states)
        return True, f"Stopping {state.config.name}" + ("; the other panes go on." if others else ".")

    def cancel(self) -> None:
        self.cancel_event.set()
