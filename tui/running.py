"""The Runner part: starting a run of some panes (checked first), streaming it onto them, stopping one, cancelling,
and the end of a run. The engine side of a run (its worker, events and rows) is the RunController's."""

from __future__ import annotations

import dataclasses
from typing import Any

from decodelab.engine.config import DecodingConfig

from .messages import RunFailed, RunFinished
from .parts import Part
from .preflight import run_error
from .run_controller import prompt_groups
from .state import PaneState
from .widgets.pane import Pane


class Runner(Part):
    def start(self, panes: list[Pane], keep_seeds: bool = False, prefix: list[int] | None = None,
              prefix_steps: list | None = None, prompt: Any = None, advance: bool = False,
              configs: list[DecodingConfig] | None = None) -> bool:
        """Run the panes (True when the run started). Each runs its live turn: the prompt box's text after its
        own earlier turns, or `prompt` as given (a branch replays its output's own prompt). advance: each pane
        with a reply first makes it an earlier turn, so the prompt box's text is the next user message."""
        if len(self.app.screen_stack) > 1:
            return False  # a dialog is open: finish it first
        shelf = self.shelf
        if shelf.loaded is None:
            if shelf.loading:
                self.notify("The model is still loading (see the bar at the top): press ctrl+r once it is in.",
                            severity="warning")
            else:
                self.notify("No model is loaded yet (press m to load one).", severity="warning")
            return False
        if self.running:
            self.notify("A run is in progress: Esc cancels it.", severity="warning")
            return False
        if not panes:
            self.notify("No panes to run: press a to add one.", severity="warning")
            return False
        missing = shelf.missing_models(panes)
        if missing:
            self.notify(missing, severity="warning")
            return False
        backends = [shelf.backend_for(p.state) for p in panes]
        configs = list(configs or [p.state.config for p in panes])
        for i, pane in enumerate(panes):
            if keep_seeds and configs[i].seed is None and pane.state.seed is not None:
                configs[i] = configs[i].replace(seed=pane.state.seed)
        advanced = [p for p in panes if advance and p.state.can_advance()]
        for pane in advanced:
            pane.state.push_turn()
        user = self.prompt_box.text
        system = self.ws.system_prompt
        prompts = [prompt if prompt is not None else p.state.prompt_for(self.turn_message(p.state, user), system)
                   for p in panes]
        problem = self._problem(prompts, configs, backends)
        if problem:  # refused before anything is touched: every pane keeps its text
            for pane in advanced:
                pane.state.pop_turn()
            self.notify(problem, title="Not run", severity="error", timeout=15)
            return False
        if prompt is None and any(isinstance(p, str) and not p.strip() for p in prompts):
            self.notify("The prompt is empty, so the model writes from nothing: type one in the prompt box (p goes "
                        "there).", severity="warning", timeout=6)  # as the CLI warns; the run goes on
        self.app.runs.start(backends, [p.state for p in panes], configs, prompts, prefix, prefix_steps)
        self.show_cancel(True)
        for pane in panes:
            pane.diverge_at = None
            pane.refresh_view()
        self.app.tokens.refresh_inspector()
        return True

    def turn_message(self, state: PaneState, typed: str) -> str:
        """The user message a pane's live turn runs: what is typed, or, in a conversation after ctrl+n emptied the
        box, the turn's own message (ctrl+r then makes a new version of the latest reply); a pane added since
        answers the conversation's latest message (never an empty one)."""
        if typed.strip():
            return typed
        if state.turns and state.user is not None:
            return state.user
        latest = next((s.user for s in self.ws.panes if s.turns and s.user), None)
        return latest if latest is not None else typed

    def _problem(self, prompts: list, configs: list[DecodingConfig], backends: list) -> str | None:
        """Why the run would fail before producing anything, checked once per distinct model and prompt."""
        for rows in prompt_groups(prompts, backends):
            problem = run_error(backends[rows[0]], prompts[rows[0]], [configs[row] for row in rows])
            if problem:
                several = len({id(b) for b in backends}) > 1
                return f"{self.shelf.label(backends[rows[0]])}: {problem}" if several else problem
        return None

    def drain(self) -> None:
        """Apply every step that arrived since the last repaint, then repaint each changed pane once."""
        changed = self.app.runs.drain()
        if changed:
            for pane in self.panes():
                if id(pane.state) in changed:
                    pane.refresh_view(scroll=True)
            current = self.pane()
            if current is not None and id(current.state) in changed:
                self.app.tokens.refresh_inspector()  # its copy of the status line follows the pane

    def show_cancel(self, shown: bool) -> None:
        """The footer offers "esc Cancel" only while a run is going (Esc still leaves the prompt when idle)."""
        screen = self.app.main_screen
        keys = screen._bindings.key_to_bindings
        keys["escape"] = [dataclasses.replace(b, show=shown) if "runner.escape" in b.action else b
                          for b in keys.get("escape", [])]
        self.app.refresh_bindings()

    def finished(self, message: RunFinished) -> None:
        if self.app.runs.finished(message):
            self.show_cancel(False)
            self.app.panes_part.refresh()
            failed = sorted(set(message.errors.values()))
            if failed:  # one model failed while the others' panes finished
                self.notify("\n".join(failed), title="Some panes failed", severity="error", timeout=10)
            if self.ws.reference is not None:
                self.app.compare.measure()
            if self.app.runs.cancel_event.is_set():
                self.notify("Run cancelled: partial outputs kept.")

    def failed(self, message: RunFailed) -> None:
        if self.app.runs.failed(message):
            self.show_cancel(False)
            self.app.panes_part.refresh()
            self.notify(message.error, title="Run failed", severity="error", timeout=10)

    # -- keys -------------------------------------------------------------------------------------------------
    def run_all(self) -> None:
        """ctrl+r: run every pane; from the prompt, focus moves to the panes (digits pick one, Esc cancels)."""
        self.start(self.panes())
        if self.running and self.app.focused is self.prompt_box and self.pane() is not None:
            self.app.screen.set_focus(self.pane(), scroll_visible=False)  # show_whole scrolls

    def rerun_same(self) -> None:
        """ctrl+g: every pane again with the seeds of its last run."""
        self.start(self.panes(), keep_seeds=True)

    def rerun_pane(self, pane: Pane) -> None:
        """.: this pane alone."""
        self.start([pane])

    def stop_pane(self, pane: Pane) -> None:
        """k: stop this pane's run while the other panes go on."""
        backend = self.shelf.backend_for(pane.state)
        stops, message = self.app.runs.stop(pane.state, backend is not None and backend.can("stop_rows"))
        self.notify(message, severity="information" if stops else "warning")

    def escape(self) -> None:
        """Esc: from the prompt, to the panes; else cancel a run; else close the inspector."""
        if self.app.focused is self.prompt_box:  # as its border says: to the panes (a run goes on; Esc cancels it)
            pane = self.pane()
            if pane is not None:
                self.app.screen.set_focus(pane, scroll_visible=False)  # show_whole scrolls
            else:  # no pane to go to: leave the box all the same, so a (add a pane) is a key, not a letter
                self.app.screen.set_focus(None)
                self.notify("No panes yet: a adds one from the presets.", severity="warning")
        elif self.running:
            self.app.runs.cancel()
        elif self.app.query_one("#inspector").has_class("-visible"):
            self.app.tokens.toggle_inspector()
