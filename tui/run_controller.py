"""The run controller: one batched engine run at a time, on a worker thread, and what it does to the panes' state.

The worker only hands events over (a deque the app drains at its repaint rate) and posts RunFinished or
RunFailed; it never touches a widget. The app asks the controller to start, stop one row, cancel, and to
apply what arrived; it repaints the panes the controller says changed.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import threading
from functools import partial

from .messages import RunFailed, RunFinished
from .state import PaneState


def prompt_groups(prompts: list, backends: list) -> list[list[int]]:
    """The rows that share a model and a prompt (text or messages), in order of first appearance: one part of a run
    each (a model's parts then decode in its one batch)."""
    groups: dict[str, list[int]] = {}
    for row, (prompt, backend) in enumerate(zip(prompts, backends)):
        groups.setdefault(json.dumps([id(backend), prompt]), []).append(row)
    return list(groups.values())


class RunController:
    def __init__(self, app) -> None:
        self.app = app
        self.running = False
        """A run is in progress (its worker has not reported back)."""
        self.run_id = 0
        """Which run the events belong to; a stale run's events and reports are ignored."""
        self.cancel_event = threading.Event()
        self.parts: list[tuple[list[int], set[int]]] = []
        """The current run's parts: the rows (indices into states) on one prompt, and the part's rows stopped
        one by one (k), which the engine reads while it runs."""
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

    def start(self, backends: list, states: list[PaneState], configs, prompts: list, prefix: list[int] | None,
              prefix_steps: list | None) -> None:
        """Begin a run of configs (one per state, each on its own prompt and its own model: backends) ; the panes
        show it streaming.

        Panes on the same model and prompt (the usual case: one prompt, or a conversation's first turn) form one
        part, prefilled once; in a conversation each pane's history makes its own prompt, and every part on one
        model still decodes in that model's one batch. Each model runs on its own thread, so a slow model does not
        hold back the others' streaming."""
        self.before = {id(s): dataclasses.replace(s) for s in states}
        from decodelab.engine.backends.pool import spec_label

        for state, prompt, backend in zip(states, prompts, backends):
            state.begin(prefix_steps, len(prefix) - 1 if prefix else None, prompt, spec_label(backend.spec))
        self.started = {id(s): len(s.steps) for s in states}  # a branch starts with its forced tokens
        self.running = True
        self.run_id += 1
        self.cancel_event, self.states = threading.Event(), states
        self.parts = [(rows, set()) for rows in prompt_groups(prompts, backends)]
        work = partial(self._work, backends, self.run_id, states, configs, prompts, list(prefix or []),
                       self.cancel_event, self.parts)
        self.app.run_worker(work, thread=True, exclusive=True, group="engine", name="engine")

    def _work(self, backends, run_id, states, configs, prompts, prefix, cancel, parts) -> None:
        """The worker thread: the app's Session runs each model's parts in its one batch, the models side by side,
        each step handed over; the end is reported as one message (a model that failed: its panes' errors)."""
        from decodelab.engine.results import GenerationError
        from decodelab.engine.session import Job

        def handler(rows):
            def on_step(event) -> None:
                self.pending.append((run_id, [states[r] for r in rows], event))
            return on_step

        jobs = [Job(backends[rows[0]], prompts[rows[0]], [configs[r] for r in rows], handler(rows), prefix, stop)
                for rows, stop in parts]
        outcomes = self.app.shelf.session.run(
            jobs, cancel=cancel, trace_stages=self.app.trace_stages,
            on_thread=lambda: self.engine_threads.add(threading.current_thread().name))
        completions: list = [None] * len(states)
        errors: dict[int, str] = {}
        for (rows, _), outcome in zip(parts, outcomes):
            if outcome.error is not None:  # never let a run take the app down
                exc = outcome.error
                why = str(exc) if isinstance(exc, GenerationError) else f"{type(exc).__name__}: {exc}"
                errors.update({row: why for row in rows})
            for row, completion in zip(rows, outcome.completions or ()):
                completions[row] = completion
        if len(errors) == len(states) and len(set(errors.values())) == 1:  # one failure for every pane
            self.app.post_message(RunFailed(run_id, states, next(iter(errors.values()))))
            return
        for row, completion in enumerate(completions):
            if completion is None and row not in errors:  # cancelled before its turn came (a backend runs in turn)
                errors[row] = "cancelled before this pane's turn came"
        self.app.post_message(RunFinished(run_id, states, completions, errors))

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
        for row, (state, completion) in enumerate(zip(message.panes, message.completions)):
            if completion is not None:
                state.finish(completion)
            else:  # its model failed while the others' went on
                self._give_back(state, message.errors.get(row, "no result"))
        return True

    def failed(self, message: RunFailed) -> bool:
        """The run produced nothing usable: each pane gets its previous output back, with the error beside it."""
        if message.run_id != self.run_id:
            return False
        self.drain()
        self.running = False
        for state in message.panes:
            self._give_back(state, message.error)
        return True

    def _give_back(self, state: PaneState, error: str) -> None:
        """A pane whose run failed: its previous output back when it made nothing new, the error beside it."""
        before = self.before.get(id(state))
        if before is not None and len(state.steps) <= self.started.get(id(state), 0):  # it made nothing new
            for f in dataclasses.fields(before):
                setattr(state, f.name, getattr(before, f.name))
        state.running = False
        state.error = error

    def stop(self, state: PaneState, can_stop_rows: bool) -> tuple[bool, str]:
        """can_stop_rows: whether this pane's model can stop one row."""
        """k: stop one pane's row while the others go on; (whether it stops, what to tell the user)."""
        where = [(stop, rows.index(i)) for rows, stop in self.parts for i in rows if self.states[i] is state]
        if not self.running or not where or not state.running:
            return False, "This pane is not running (Esc cancels a whole run)."
        if not can_stop_rows or state.config.num_beams > 1:
            return False, "Only a local non-beam pane can be stopped alone: Esc cancels the whole run."
        stop, row = where[0]
        stop.add(row)
        others = any(s.running and s is not state for s in self.states)
        return True, f"Stopping {state.config.name}" + ("; the other panes go on." if others else ".")

    def cancel(self) -> None:
        self.cancel_event.set()
