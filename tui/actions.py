"""The app's pane, inspector, preset and session actions (a mixin for DecodelabApp)."""

from __future__ import annotations

import dataclasses

from decodelab.engine.config import SETTING, ConfigError
from decodelab.themes.heatmap import ORDER
from textual.app import SystemCommand
from textual.widgets import TextArea

from .keys import palette
from .state import PaneState, first_divergence
from .widgets.legend import Legend
from .widgets.pane import Pane

DIFF_MODES = ("off", "greedy", "left")


class PaneActions:
    # -- which pane --------------------------------------------------------------------------------
    def pane(self) -> Pane | None:
        panes = self.panes()
        if self.current_pane in panes:
            return self.current_pane
        return panes[0] if panes else None

    def action_focus_pane(self, index: int) -> None:
        panes = self.panes()
        if index < len(panes):
            self.screen.set_focus(panes[index], scroll_visible=False)  # on_descendant_focus shows it and its
            # neighbours whole; Textual's own centring, scheduled later, raced it and cut them in half

    def refresh_panes(self) -> None:
        panes = self.panes()
        for i, pane in enumerate(panes):
            pane.measure = self.measure
            pane.diverge_at = self.divergence(panes, i)
            pane.refresh_view()
        self.refresh_inspector()

    def divergence(self, panes: list[Pane], i: int) -> int | None:
        if self.diff_mode == "left":
            return first_divergence(panes[i - 1].state.token_ids, panes[i].state.token_ids) if i else None
        if self.diff_mode == "greedy":
            ref = next((p for p in panes if p.state.config.greedy and p is not panes[i]), None)
            return first_divergence(ref.state.token_ids, panes[i].state.token_ids) if ref else None
        return None

    # -- panes ---------------------------------------------------------------------------------------
    def add_pane(self, config, after: Pane | None = None) -> Pane:
        pane = Pane(PaneState(config))
        container = self.query_one("#panes")
        container.mount(pane, after=after) if after is not None else container.mount(pane)
        pane.measure = self.measure
        self.call_after_refresh(self.layout_panes)
        self.current_pane = pane
        return pane

    def action_add_pane(self) -> None:
        from .screens.preset_picker import PresetPicker

        def chosen(config) -> None:
            if config is not None:
                self.add_pane(config).focus()

        from decodelab.engine.library.model_defaults import model_defaults

        defaults = model_defaults(self.loaded) if self.loaded is not None else None
        self.push_screen(PresetPicker(model_defaults=defaults), chosen)

    def duplicate_pane(self, pane: Pane) -> None:
        copy = self.add_pane(pane.state.config.replace(name=pane.state.config.name + "-copy"), after=pane)
        copy.state.model_spec = pane.state.model_spec  # on the same model
        copy.focus()

    def remove_pane(self, pane: Pane) -> None:
        """x: remove the pane; u brings it back with its output (the last 10 removals are kept)."""
        if pane.state.running:
            self.notify("This pane is running: k stops it, Esc stops the whole run.", severity="warning")
            return
        panes = self.panes()
        index = panes.index(pane)
        self.undo_stack = (self.undo_stack + [("remove", index, pane.state)])[-20:]
        rest = [p for p in panes if p is not pane]
        pane.remove()
        self.current_pane = None
        if rest:  # focus stays among the panes (so u works), on the neighbour
            self.current_pane = rest[min(index, len(rest) - 1)]
            self.current_pane.focus()
        self.call_after_refresh(self.layout_panes)
        self.call_after_refresh(self.models_changed)  # a model no pane uses any more is unloaded
        turns = len(pane.state.turns) + 1 + len(pane.state.later)
        held = (f" and its {turns} turns" if turns > 1 else f" and its {len(pane.state.steps)} tokens") \
            if pane.state.steps or turns > 1 else ""
        how = "press u" if rest else "ctrl+p, then 'Undo'"
        self.notify(f"Removed pane {pane.state.config.name}{held}: {how} to undo.")

    def action_undo(self) -> None:
        """u: undo the last removal (x), field set on every pane (=) or new conversation (shift+n)."""
        if not self.undo_stack:
            self.notify("Nothing to undo (u undoes x, = and shift+n).", severity="warning")
            return
        entry = self.undo_stack.pop()
        if entry[0] == "turns":
            for state, kept in entry[1]:
                state.restore_turns(kept)
            self.refresh_panes()
            self.notify("The conversation is back: every pane has its earlier turns again.")
            return
        if entry[0] == "set":
            _, changes, what = entry
            panes = {id(p.state): p for p in self.panes()}
            for state, config in changes:
                state.config = config
                if id(state) in panes:
                    panes[id(state)].refresh_view()
            self.notify(f"Undid {what}: each pane has its own value back.")
            return
        _, index, state = entry
        panes = self.panes()
        pane = Pane(state)
        container = self.query_one("#panes")
        if index < len(panes):
            container.mount(pane, before=panes[index])
        else:
            container.mount(pane)
        pane.measure = self.measure
        self.current_pane = pane
        self.call_after_refresh(self.layout_panes)
        self.call_after_refresh(pane.focus)
        self.notify(f"Restored pane {state.config.name}.")

    def action_set_everywhere(self) -> None:
        """=: set one field on every pane (FIELD=VALUE, as --set takes it), checked like the editor; u undoes it."""
        from .screens.ask import AskText

        panes = self.panes()
        if not panes:
            self.notify("No panes to change: press a to add one.", severity="warning")
            return
        if self.running:
            self.notify("A run is in progress: wait for it, or Esc to cancel it.", severity="warning")
            return

        def check(text: str) -> str | None:
            return self.set_everywhere_error(panes, text)

        def chosen(text: str | None) -> None:
            if text and not self.running:
                self.set_everywhere(panes, text)

        self.push_screen(AskText("Set a field on every pane, as FIELD=VALUE (e.g. max_new_tokens=32, top_p=0.9, "
                                 "seed=auto); u undoes it:", "", check=check), chosen)

    def set_everywhere_error(self, panes: list[Pane], text: str) -> str | None:
        from decodelab.engine.fieldtext import parse_assignment

        from .preflight import context_error, prompt_tokens, vocab_error

        if "=" not in text or not text.partition("=")[0].strip():
            return "Type FIELD=VALUE, e.g. max_new_tokens=32."
        try:
            key, value = parse_assignment(text, where="FIELD=VALUE")
        except ConfigError as exc:
            return str(exc)
        if key == "name":
            return "Every pane would get the same name: rename panes one at a time (e)."
        configs = []
        for pane in panes:
            try:
                configs.append(pane.state.config.replace(**{key: value}))
            except ConfigError as exc:  # a conflict with what this pane already has: say which pane
                return f"pane {pane.number} ({pane.state.config.name}): {exc}"
        length, _ = prompt_tokens(self.loaded, self.query_one("#prompt", TextArea).text)
        for pane, config in zip(panes, configs):
            problem = context_error(self.loaded, length, config.max_new_tokens) or vocab_error(self.loaded, config)
            if problem:
                return f"pane {pane.number} ({config.name}): {problem}"
        return None

    def set_everywhere(self, panes: list[Pane], text: str) -> None:
        from decodelab.engine.fieldtext import parse_assignment

        key, value = parse_assignment(text, where="FIELD=VALUE")
        changes = [(p.state, p.state.config) for p in panes]
        for pane in panes:
            pane.state.config = pane.state.config.replace(**{key: value})
            pane.refresh_view()
        self.undo_stack = (self.undo_stack + [("set", changes, text)])[-20:]
        idle = [f"{p.number}" for p in panes if SETTING[key].warper and not p.state.config.samples]
        note = f" (greedy pane{'s' if len(idle) > 1 else ''} {', '.join(idle)} ignore{'s' if len(idle) == 1 else ''} " \
               f"{key}: it only shapes sampling)" if idle else ""
        self.notify(f"Set {text} on {len(panes)} pane{'s' if len(panes) > 1 else ''}{note}: u undoes it, "
                    "ctrl+r runs them.")

    def move_pane(self, pane: Pane, delta: int) -> None:
        panes = self.panes()
        index = panes.index(pane) + delta
        if 0 <= index < len(panes):
            container = self.query_one("#panes")
            if delta < 0:
                container.move_child(pane, before=panes[index])
            else:
                container.move_child(pane, after=panes[index])
            self.call_after_refresh(self.layout_panes)  # renumbers: the digit keys follow the new order
            self.call_after_refresh(self.refresh_panes)

    def edit_pane(self, pane: Pane) -> None:
        from .preflight import context_error, prompt_tokens, vocab_error
        from .screens.config_editor import ConfigEditor

        length, _ = prompt_tokens(self.loaded, self.query_one("#prompt", TextArea).text)

        def edited(config) -> None:
            if config is not None:
                pane.state.config = config
                pane.refresh_view()

        self.push_screen(ConfigEditor(pane.state.config,
                                      check=lambda c: context_error(self.loaded, length, c.max_new_tokens)
                                      or vocab_error(self.loaded, c)), edited)

    def rerun_pane(self, pane: Pane) -> None:
        self.start_run([pane])

    # -- heatmap, diff, inspector, branching ------------------------------------------------------------
    def action_heatmap(self) -> None:
        from decodelab.engine.grammars import constraint_of

        constrained = any(constraint_of(pane.state.config) for pane in self.panes())
        order = [m for m in ORDER if (m != "constraint" or constrained)  # only when some pane has one
                 and (m != "kl" or self.reference is not None)]  # only with a reference pane (shift+r)
        self.measure = order[(order.index(self.measure) + 1) % len(order)] if self.measure in order else order[0]
        self.update_legend()
        self.refresh_panes()

    def action_diff(self) -> None:
        self.diff_mode = DIFF_MODES[(DIFF_MODES.index(self.diff_mode) + 1) % len(DIFF_MODES)]
        self.update_legend()
        self.refresh_panes()

    def update_legend(self) -> None:
        """The heatmap legend, plus the diff mode and, for a remote server, what its logprobs are."""
        notes = []
        if self.diff_mode != "off":
            notes.append(f"diff vs {self.diff_mode} (underlined: first different token)")
        if self.loaded is not None and not self.loaded.can("raw_logprobs"):
            from decodelab.engine.backends.remote import KINDS

            notes.append(f"logprobs: {KINDS[self.loaded.kind].logprobs}")
        self.query_one(Legend).show(self.measure, " · ".join(notes))

    # -- model, chat, theme -----------------------------------------------------------------------------
    def action_toggle_chat(self) -> None:
        if self.loaded is None:
            return
        has_template = not self.loaded.can("tokenizer") or bool(getattr(self.loaded.tokenizer, "chat_template", None))
        if not self.loaded.spec.chat and not has_template:
            self.notify(f"{self.loaded.name} has no chat template, so the prompt is sent as plain text.",
                        title="Chat template stays off", severity="warning", timeout=8)
            return
        spec = dataclasses.replace(self.loaded.spec, chat=not self.loaded.spec.chat)
        self.loaded = dataclasses.replace(self.loaded, spec=spec)
        self.spec = spec
        self.update_model_bar()
        self.notify(f"Chat template {'on' if spec.chat else 'off'}" + (
            "" if spec.chat else ": a plain prompt goes as text; a conversation or system prompt still goes "
            "through the template (shift+n starts anew)"))

    def chat_for_new_model(self) -> None:
        """A model picked with m keeps chat mode only if it has a chat template (demo after smollm2 has none)."""
        loaded = self.loaded
        if loaded.spec.chat and loaded.can("tokenizer") \
                and not getattr(getattr(loaded, "tokenizer", None), "chat_template", None):
            spec = dataclasses.replace(loaded.spec, chat=False)
            self.loaded = dataclasses.replace(loaded, spec=spec)
            self.spec = spec
            self.notify(f"{loaded.name} has no chat template: chat mode is off, the prompt goes as plain text.",
                        title="Chat template off", timeout=8)

    def action_change_model(self) -> None:
        from .screens.model_picker import ModelPicker  # the list `decodelab models` prints

        self.push_screen(ModelPicker(self.spec.path), lambda path: self.load_path(path) if path else None)

    def action_arena(self) -> None:
        from decodelab.engine.library.sessions import user_data_dir

        from .screens.arena import ArenaScreen
        from .screens.ask import AskText

        configs = [p.state.config for p in self.panes()]
        if self.loaded is None or len(configs) < 2:
            self.notify("Blind A/B needs a loaded model and at least 2 panes.", severity="warning")
            return
        prompt = self.comparison_prompt()

        def start(path: str | None) -> None:
            if not path:
                return
            try:
                self.push_screen(ArenaScreen(self.loaded, configs, prompt, path))
                if isinstance(prompt, list):
                    from decodelab.engine.conversation import last_user

                    pane = self.pane()
                    self.notify(f"A/B on pane {pane.number}'s conversation ({sum(m['role'] == 'user' for m in prompt)} "
                                f"user messages), answering: {last_user(prompt)[:60]}", timeout=8)
            except ConfigError as exc:
                self.notify(str(exc), severity="error", timeout=10)

        self.push_screen(AskText("Blind A/B between the current panes. Tally file (resumed if it exists):",
                                 str(user_data_dir("ab") / "decodelab-ab.json")), start)

    def sweep_pane(self, pane: Pane) -> None:
        from .screens.sweep import SweepScreen

        if self.loaded is None:
            self.notify("A sweep needs a loaded model and a pane to start from.", severity="warning")
            return
        self.push_screen(SweepScreen(self.backend_for(pane.state) or self.loaded, pane.state.config,
                                     self.comparison_prompt(pane)))

    def comparison_prompt(self, pane: Pane | None = None):
        """What A/B and sweeps run on: the prompt box (with the system prompt), or in a conversation the pane's
        own turns up to its live one (the current pane's, as each pane's history differs)."""
        pane = pane or self.pane()
        box = self.query_one("#prompt", TextArea).text
        if pane is None:
            from decodelab.engine.conversation import build

            return build(box, self.system_prompt)
        return pane.state.prompt_for(self.turn_message(pane.state, box), self.system_prompt)

    def action_toggle_theme(self) -> None:
        self.theme = "decodelab-light" if self.theme == "decodelab-dark" else "decodelab-dark"

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        for title, help_text, callback in palette(self):  # the same table as the key bindings (tui/keys.py)
            yield SystemCommand(title, help_text, callback)
