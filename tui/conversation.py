"""The Talk part: conversations (the system prompt, next turns, continuing a reply, earlier turns).

ctrl+n sends the prompt box's text and empties it; ctrl+r with the box empty then reruns each pane's latest
message (a new version of the reply), and with text in it reruns the latest turn with that text instead.

Each pane keeps its own conversation (tui/state.py's turns): a new user message goes to every pane (ctrl+n)
or to one (n), and each pane answers after its own earlier replies, with its own config. { and } show an
earlier turn in every pane; a run there makes a new version of that turn, and the turns that followed
stay with the version they followed ([ ] brings them back).
"""

from __future__ import annotations

from .parts import Part
from .workspace import TurnsSetAside
from .widgets.pane import Pane


class Talk(Part):
    def system_prompt(self) -> None:
        """P: set the system prompt every pane's next run starts with (empty: none)."""
        from .screens.ask import AskText

        def chosen(text: str | None) -> None:
            if text is None:
                return
            self.ws.system_prompt = text or None
            self.app.update_model_bar()
            self.notify(f"System prompt set: {text}" if text else "No system prompt.", timeout=5)
            if text and self.shelf.loaded is not None and not self.shelf.has_template(self.shelf.loaded):
                self.notify(f"{self.shelf.loaded.name} has no chat template, so a system prompt cannot be sent to it.",
                            severity="warning", timeout=8)

        self.push_screen(AskText("System prompt (sent first in every pane's conversation; empty for none):",
                                 self.ws.system_prompt or ""), chosen)

    def new_conversation(self) -> None:
        """shift+n: every pane starts a new conversation (its earlier turns set aside; u brings them back)."""
        if self.running:
            self.notify("A run is in progress: wait for it, or Esc to cancel it.", severity="warning")
            return
        panes = [p for p in self.panes() if p.state.turns or p.state.later]
        if not panes:
            self.notify("No pane has earlier turns: this is already a new conversation.", severity="warning")
            return
        self.ws.remember(TurnsSetAside([(p.state, p.state.forget_turns()) for p in panes]))
        self.ws.draft = None
        self.app.panes_part.refresh()
        self.notify("New conversation: every pane's earlier turns are set aside (u brings them back); the next "
                    "ctrl+r or ctrl+n starts from the prompt box alone.", timeout=8)

    def next_turn(self) -> None:
        """ctrl+n: the prompt box's text is the next user message for every pane; each answers after its own reply."""
        self.send_turn(self.panes())

    def next_turn_pane(self, pane: Pane) -> None:
        """n: the prompt box's text as the next user message for this pane only."""
        self.send_turn([pane])

    def send_turn(self, panes: list[Pane]) -> None:
        if self.showing_earlier_turn(panes):
            self.notify("An earlier turn is on show: } goes back to the newest before sending a new message "
                        "(ctrl+r reruns the turn on show).", severity="warning", timeout=8)
            return
        if not self.prompt_box.text.strip():
            self.notify("Type the next user message in the prompt box first (p goes there).", severity="warning")
            return
        if self.app.runner.start(panes, advance=True):
            self.ws.draft = None
            self.prompt_box.text = ""  # sent: the box is ready for the next message (focus stays)

    def showing_earlier_turn(self, panes: list[Pane]) -> bool:
        return any(p.state.later for p in panes)

    def continue_pane(self, pane: Pane) -> None:
        """w: the pane writes on from the end of its reply (its tokens are kept and up to max_new_tokens more follow)."""
        state = pane.state
        if state.running or self.running:
            self.notify("A run is in progress: wait for it, or Esc to cancel it.", severity="warning")
            return
        if not state.steps or state.shown is None:
            self.notify(f"Pane {pane.number} has no reply to continue: ctrl+r runs it.", severity="warning")
            return
        backend = self.shelf.backend_for(state)
        if backend is None or not backend.can("branch"):
            self.notify("Continuing a reply needs the local engine, loaded; this pane's model is a remote server "
                        "or still loading.", severity="warning")
            return
        if self.shelf.written_by_other(state):
            self.notify(f"This reply was written by {state.model}: rerun the pane (.) on "
                        f"{self.shelf.label(backend)} first.", severity="warning")
            return
        if state.config.num_beams > 1:
            self.notify("Beam panes cannot be continued; duplicate it (d) and edit it (e) to a greedy pane first.",
                        severity="warning")
            return
        steps = list(state.steps)
        if state.stop_reason == "eos":  # write on past the end-of-sequence token, not after it
            steps = steps[:-1]
        if not steps:
            self.notify(f"Pane {pane.number}'s reply ended at once (eos): there is nothing to continue; "
                        "ctrl+r or . reruns it.", severity="warning")
            return
        # after an eos, the first new token may not be eos again (that would end at once, with nothing new)
        floor = len(steps) + 1 if state.stop_reason == "eos" else 0
        config = state.config.replace(max_new_tokens=len(steps) + state.config.max_new_tokens, min_new_tokens=floor)
        parent = state.shown.number
        if self.app.runner.start([pane], keep_seeds=True, prefix=[s.token_id for s in steps], prefix_steps=steps,
                          prompt=state.prompt, configs=[config]):
            state.branched_at, state.parent, state.cursor = None, parent, None  # a continuation, not a branch
            pane.refresh_view()

    def turn(self, delta: int) -> None:
        """{ and }: show the previous or next turn of every pane's conversation."""
        if self.running:
            self.notify("A run is in progress: wait for it, or Esc to cancel it.", severity="warning")
            return
        panes = self.panes()
        moved = [p for p in panes if p.state.step_turn(delta)]
        if not moved:
            where = "first" if delta < 0 else "newest"
            self.notify(f"This is the {where} turn of every pane's conversation.", severity="warning")
            return
        box = self.prompt_box
        if delta < 0 and self.ws.draft is None:
            self.ws.draft = box.text  # what was typed for the next turn comes back with }
        shown = next(p for p in moved)
        if self.showing_earlier_turn(panes):
            box.text = shown.state.user or ""
        elif self.ws.draft is not None:
            box.text, self.ws.draft = self.ws.draft, None
        for pane in panes:
            pane.diverge_at = None
        self.app.panes_part.refresh()
        self.notify(f"Turn {len(shown.state.turns) + 1} of {len(shown.state.turns) + 1 + len(shown.state.later)}"
                    + (": edit the message and ctrl+r makes a new version of this turn in every pane"
                       if shown.state.later else ""), timeout=5)
