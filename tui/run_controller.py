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


def prompt_groups(prompts: list) -> list[list[int]]:
    """The rows that share a prompt (text or messages), in order of first appearance: one part of a run each."""
    groups: dict[str, list[int]] = {}
    for row, prompt in enumerate(prompts):
        groups.setdefault(json.dumps(prompt), []).append(row)
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

    def start(self, loaded, states: list[PaneState], configs, prompts: list, prefix: list[int] | None,
              prefix_steps: list | None) -> None:
        """Begin a run of configs (one per state, each on its own prompt) on loaded; the panes show it streaming.

        Panes on the same prompt (the usual case: one prompt, or a conversation's first turn) form one part,
        prefilled once; in a conversation each pane's history makes its own prompt, and every part still
        decodes in the one batch."""
        self.before = {id(s): dataclasses.replace(s) for s in states}
        name = getattr(loaded, "name", None)
        for state, prompt in zip(states, prompts):
            state.begin(prefix_steps, len(prefix) - 1 if prefix else None, prompt, name)
        self.started = {id(s): len(s.steps) for s in states}  # a branch starts with its forced tokens
        self.running = True
        self.run_id += 1
        self.cancel_event, self.states = threading.Event(), states
        self.parts = [(rows, set()) for rows in prompt_groups(prompts)]
        work = partial(self._work, loaded, self.run_id, states, configs, prompts, list(prefix or []),
                       self.cancel_event, self.parts)
        self.app.run_worker(work, thread=True, exclusive=True, group="engine", name="engine")

    def _work(self, loaded, run_id, states, configs, prompts, prefix, cancel, parts) -> None:
        """The worker thread: decode, handing each step over; report the end as a message."""
        from decodelab.engine.backends.base import Part, generate_parts
        from decodelab.engine.results import GenerationError

        def handler(rows):
            def on_step(event) -> None:
                self.engine_threads.add(threading.current_thread().name)
                self.pending.append((run_id, [states[r] for r in rows], event))
            return on_step

        runs = [Part(prompts[rows[0]], [configs[r] for r in rows], handler(rows), prefix, stop)
                for rows, stop in parts]
        try:
            results = generate_parts(loaded, runs, cancel=cancel,
                                     trace_stages=self.app.trace_stages and loaded.can("stages"))
        except GenerationError as exc:
            self.app.post_message(RunFailed(run_id, states, str(exc)))
            return
        except Exception as exc:  # noqa: BLE001 - never let a run take the app down
            self.app.post_message(RunFailed(run_id, states, f"{type(exc).__name__}: {exc}"))
            return
        completions = [None] * len(states)
        for (rows, _), done in zip(parts, results):
            for row, completion in zip(rows, done):
                completions[row] = completion
        if any(c is None for c in completions):  # cancelled before every part ran (a backend runs them in turn)
            self.app.post_message(RunFailed(run_id, states, "cancelled before this pane's turn came"))
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
