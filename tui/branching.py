"""The Tokens part: walking a pane's tokens, the inspector, branching, and each pane's history of versions.

The inspector belongs to the pane whose token it shows (its owner): Enter on an alternative, or b,
branches that pane and no other. Every refused action says why.
"""

from __future__ import annotations

from decodelab.engine.grammars import constraint_of
from decodelab.engine.results import TokenStep
from textual.widgets import OptionList

from .parts import Part
from .widgets.inspector import Inspector, removed_by
from .widgets.pane import Pane, stats_text
from .widgets.pane_strip import PaneStrip
from .widgets.token_view import TokenView


class Tokens(Part):
    # -- walking tokens -----------------------------------------------------------------------------
    def toggle_inspector(self) -> None:
        """i: the token inspector on or off."""
        inspector = self.app.query_one(Inspector)
        inspector.toggle_class("-visible")
        self.later(self.app.layout_panes)
        pane = self.pane()
        if inspector.has_class("-visible") and pane is not None and pane.state.cursor is None and pane.state.steps:
            pane.state.cursor = 0
            pane.refresh_view()
        self.refresh_inspector()

    def token(self, delta: int) -> None:
        """← → in the inspector: walk the current pane's tokens."""
        if self.pane() is not None:
            self.walk(self.pane(), delta)

    def walk(self, pane: Pane, delta: int) -> None:
        """← → Home End in a pane: select another of its tokens."""
        if not pane.state.steps:
            self.notify(f"{_name(pane)} has no tokens yet: ctrl+r runs every pane.", severity="warning")
            return
        last, cursor = len(pane.state.steps) - 1, pane.state.cursor
        if cursor is None:  # nothing selected yet: → and Home start at the first token, ← and End at the last
            cursor = 0 if delta in (1, -100000) else last
        else:
            cursor = max(0, min(last, cursor + delta))
        self.select_token(pane, cursor)

    def select_token(self, pane: Pane, index: int) -> None:
        pane.state.cursor = index
        pane.refresh_view()
        self.app.panes_part.current = pane
        if not self.app.query_one(Inspector).has_class("-visible"):
            self.app.query_one(Inspector).add_class("-visible")
            self.later(self.app.layout_panes)
        self.refresh_inspector()

    def token_selected(self, event: TokenView.Selected) -> None:
        pane = next((p for p in event.view.ancestors if isinstance(p, Pane)), None)
        if pane is not None:
            self.select_token(pane, event.index)

    def refresh_inspector(self) -> None:
        """Show the current pane's selected token; never a token of an output that is gone."""
        inspector = self.app.query_one(Inspector)
        pane = self.pane()
        if pane is None:
            inspector.clear()
            return
        state = pane.state
        if state.cursor is None or state.cursor >= len(state.steps):
            why = "running…" if state.running else "no token selected: ← → in the pane" if state.steps else "no output yet"
            inspector.clear(pane, why)
            return
        inspector.show(pane, state.cursor, state.steps[state.cursor], pane.token_bytes,
                       stats_text(state, pane.diverge_at))

    # -- into the alternatives and back -------------------------------------------------------------
    def open_alternatives(self, pane: Pane) -> None:
        """↓ (or i) in a pane: into the inspector's alternatives for its selected token."""
        if not pane.state.steps:
            self.notify(f"{_name(pane)} has no tokens yet: ctrl+r runs every pane.", severity="warning")
            return
        self.select_token(pane, pane.state.cursor or 0)
        options = self.app.query_one(Inspector).query_one(OptionList)
        step = pane.state.steps[pane.state.cursor]
        chosen = next((i for i, alt in enumerate(step.top, start=1) if alt.token_id == step.token_id), None)
        # on the token it chose (row 0 is the header), else the first alternative; ↓ ↑ go to its neighbours
        options.highlighted = chosen if chosen is not None else (1 if step.top else None)
        self.app.screen.set_focus(options)

    def back_to_pane(self) -> None:
        """i or Esc in the alternatives: back to the pane they belong to. A run goes on (Esc cancelled it once, and a
        newcomer lost the branch they had just started from the list); Esc in the pane cancels it."""
        if self.running:
            self.notify("The run goes on: Esc again cancels it.", timeout=4)
        owner = self.app.query_one(Inspector).owner
        if owner is not None and owner in self.panes():
            self.app.screen.set_focus(owner, scroll_visible=False)  # show_whole scrolls
        elif self.pane() is not None:
            self.app.screen.set_focus(self.pane(), scroll_visible=False)

    def focused(self, event) -> None:
        """A pane that takes focus becomes the current one, and the inspector shows its token."""
        node = event.widget
        while node is not None and not isinstance(node, Pane):
            node = node.parent
        if node is not None:
            self.app.panes_part.current = node
            self.refresh_inspector()
            strip = self.app.query_one(PaneStrip)
            self.later(strip.show_whole, node)  # after Textual's own (centring) focus scroll

    # -- branching ----------------------------------------------------------------------------------
    def branch(self) -> None:
        """b in the alternatives: branch the pane they belong to."""
        inspector = self.app.query_one(Inspector)
        pane = inspector.owner if inspector.owner in self.panes() else self.pane()
        if pane is not None:
            self.branch_pane(pane)

    def branch_pane(self, pane: Pane) -> None:
        """b: branch the pane at its selected token, to the alternative highlighted in the inspector."""
        inspector = self.app.query_one(Inspector)
        options = inspector.query_one(OptionList)
        if pane.state.cursor is None or not inspector.has_class("-visible") or inspector.owner is not pane:
            self.notify(f"{_name(pane)} has no selected token: walk its tokens with ← →, then ↓ for the alternatives.",
                        severity="warning")
            return
        if options.highlighted is None:
            self.notify("Pick an alternative first: ↓ moves into the inspector's list.", severity="warning")
            return
        option = options.get_option_at_index(options.highlighted)
        if option.id is not None:
            self.branch_to(int(option.id))

    def branch_to(self, token_id: int) -> None:
        """Rerun the inspector's pane forcing its tokens up to the cursor, then the chosen alternative."""
        inspector = self.app.query_one(Inspector)
        pane = inspector.owner if inspector.owner in self.panes() else None
        why = self.branch_refusal(pane, token_id)
        if why:
            self.notify(why, severity="warning")
            return
        state = pane.state
        cursor = state.cursor
        step = state.steps[cursor]
        rank, alt = next((r, a) for r, a in enumerate(step.top) if a.token_id == token_id)
        forced = TokenStep(token_id, "" if "\ufffd" in alt.text else alt.text, alt.logprob, alt.logprob_processed,
                           rank, step.entropy, step.entropy_processed, step.top)
        prefix_steps = list(state.steps[:cursor]) + [forced]
        prompt = state.prompt
        typed = self.prompt_box.text
        if prompt is not None and typed.strip() and typed != state.user:  # an empty box is a conversation's normal
            self.notify("Branching from the message this output was made with (the prompt box has changed since).")
        # the branch reuses the seed of the output it continues, for that run only: a seed=auto pane stays auto
        self.app.runner.start([pane], keep_seeds=True, prefix=[s.token_id for s in prefix_steps],
                              prefix_steps=prefix_steps, prompt=prompt)

    def branch_refusal(self, pane: Pane | None, token_id: int) -> str | None:
        """Why a branch cannot start, in words the user can act on (None when it can)."""
        if pane is None or pane.state.cursor is None or pane.state.cursor >= len(pane.state.steps):
            return "No token is selected: walk a pane's tokens with ← →, then ↓ for the alternatives."
        state = pane.state
        step = state.steps[state.cursor]
        if self.running:
            return "A run is in progress: wait for it, or Esc to cancel it, then branch."
        backend = self.shelf.backend_for(state)
        if backend is None:
            return f"{_name(pane)}'s model is not loaded yet: wait for it, then branch."
        if not backend.can("branch"):
            return "Branching from a token needs the local engine; this model is a remote server."
        if self.shelf.written_by_other(state):
            return (f"{_name(pane)} was written by {state.model}, and it runs on {self.shelf.label(backend)} now: "
                    "its tokens mean nothing to this model. Rerun the pane (.) first, then branch.")
        if state.config.num_beams > 1:
            return "Beam panes cannot be branched; duplicate it (d) and edit it (e) to a greedy pane first."
        if token_id == step.token_id:
            return f"{_name(pane)} already chose that token: pick another alternative (↑ ↓)."
        if all(alt.token_id != token_id for alt in step.top):
            return "That token is not among this step's alternatives."
        rank = next(r for r, alt in enumerate(step.top) if alt.token_id == token_id)
        if removed_by(step, rank) == "grammar":
            field = (constraint_of(state.config) or ("constraint",))[0]
            return (f"{_name(pane)}'s {field} does not allow that token at token {state.cursor} (✗constr): pick "
                    "one it allows, or edit the pane (e) to drop the constraint.")
        if state.cursor + 1 >= state.config.max_new_tokens:
            return (f"Token {state.cursor} is the last one max_new_tokens={state.config.max_new_tokens} allows: "
                    "raise it (e) to branch there.")
        return None

    # -- history --------------------------------------------------------------------------------------
    def show_version(self, pane: Pane, delta: int) -> None:
        """[ and ]: step through the pane's earlier versions (runs, reruns, branches)."""
        why = pane.state.step_history(delta)
        if why:
            self.notify(f"{_name(pane)}: {why}.", severity="warning")
            return
        pane.diverge_at = None
        self.app.panes_part.refresh()
        shown = pane.state.shown
        children = "".join(f"; v{v.number} branched from it @{v.branched_at}" for v in pane.state.children())
        self.notify(f"{_name(pane)}: showing {shown.label} of {pane.state.history[-1].number}{children}", timeout=4)


def _name(pane: Pane) -> str:
    return f"Pane {pane.number} ({pane.state.config.name})" if pane.number else f"Pane {pane.state.config.name}"
