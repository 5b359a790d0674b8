"""The Panes part: the pane widgets (which is current, add, duplicate, remove, undo, move, edit, = on all), how
they are drawn (heatmap, diff, legend, theme), and the experiments started from them (A/B, sweep)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from decodelab.engine.config import SETTING, ConfigError, DecodingConfig
from decodelab.themes.heatmap import ORDER

from .parts import Part
from .state import PaneState, first_divergence
from .widgets.legend import Legend
from .widgets.pane import Pane
from .workspace import FieldSet, Removed, TurnsSetAside

if TYPE_CHECKING:
    from .app import DecodelabApp

DIFF_MODES = ("off", "greedy", "left")


class Panes(Part):
    def __init__(self, app: DecodelabApp) -> None:
        super().__init__(app)
        self.current: Pane | None = None
        """The pane the palette's pane commands and the inspector act on (the last one focused)."""

    # -- which pane --------------------------------------------------------------------------------------
    def the_pane(self) -> Pane | None:
        panes = self.panes()
        if self.current in panes:
            return self.current
        return panes[0] if panes else None

    def focus(self, index: int) -> None:
        """1-9: focus that pane."""
        panes = self.panes()
        if index < len(panes):
            self.app.screen.set_focus(panes[index], scroll_visible=False)  # on_descendant_focus shows it and its
            # neighbours whole; Textual's own centring, scheduled later, raced it and cut them in half

    def focus_prompt(self) -> None:
        """p: back to the prompt from a pane or the inspector (Esc leaves it again); a message already run is
        selected, so typing the next one replaces it."""
        box = self.prompt_box
        self.app.screen.set_focus(box)  # at once (focus() waits a refresh): the next keys are text, not commands
        if box.text.strip() and any(s.user == box.text for s in self.ws.panes):
            box.select_all()  # a message already run: typing replaces it (the next turn); → keeps it to edit
        else:
            box.move_cursor(box.document.end)  # typing goes on from the end of what is there

    def refresh(self) -> None:
        """Redraw every pane (its heatmap, diff mark, title) and the inspector."""
        panes = self.panes()
        for i, pane in enumerate(panes):
            pane.measure = self.ws.measure
            pane.diverge_at = self._divergence(panes, i)
            pane.refresh_view()
        self.app.tokens.refresh_inspector()

    def _divergence(self, panes: list[Pane], i: int) -> int | None:
        if self.ws.diff_mode == "left":
            return first_divergence(panes[i - 1].state.token_ids, panes[i].state.token_ids) if i else None
        if self.ws.diff_mode == "greedy":
            ref = next((p for p in panes if p.state.config.greedy and p is not panes[i]), None)
            return first_divergence(ref.state.token_ids, panes[i].state.token_ids) if ref else None
        return None

    # -- panes ---------------------------------------------------------------------------------------------
    def mount(self, state: PaneState, after: Pane | None = None, before: Pane | None = None) -> Pane:
        """A pane for this state on the strip (at the end, or after/before a pane); it becomes the current one."""
        pane = Pane(state)
        container = self.app.query_one("#panes")
        if after is not None:
            container.mount(pane, after=after)
        elif before is not None:
            container.mount(pane, before=before)
        else:
            container.mount(pane)
        pane.measure = self.ws.measure
        self.later(self.app.layout_panes)
        self.current = pane
        return pane

    def add_pane(self, config: DecodingConfig, after: Pane | None = None) -> Pane:
        return self.mount(PaneState(config), after=after)

    def add(self) -> None:
        """a: a pane from a preset (the model's own recommended settings first, where it has some)."""
        from decodelab.engine.library.model_defaults import model_defaults

        from .screens.preset_picker import PresetPicker

        def chosen(config: DecodingConfig | None) -> None:
            if config is not None:
                self.add_pane(config).focus()

        defaults = model_defaults(self.shelf.loaded) if self.shelf.loaded is not None else None
        self.push_screen(PresetPicker(model_defaults=defaults), chosen)

    def duplicate(self, pane: Pane) -> None:
        copy = self.add_pane(pane.state.config.replace(name=pane.state.config.name + "-copy"), after=pane)
        copy.state.model_spec = pane.state.model_spec  # on the same model
        copy.focus()

    def remove(self, pane: Pane) -> None:
        """x: remove the pane; u brings it back with its output."""
        if pane.state.running:
            self.notify("This pane is running: k stops it, Esc stops the whole run.", severity="warning")
            return
        panes = self.panes()
        index = panes.index(pane)
        self.ws.remember(Removed(index, pane.state))
        rest = [p for p in panes if p is not pane]
        pane.remove()
        self.current = None
        if rest:  # focus stays among the panes (so u works), on the neighbour
            self.current = rest[min(index, len(rest) - 1)]
            self.current.focus()
        self.later(self.app.layout_panes)
        self.later(self.shelf.models_changed)  # a model no pane uses any more is unloaded
        turns = len(pane.state.turns) + 1 + len(pane.state.later)
        held = (f" and its {turns} turns" if turns > 1 else f" and its {len(pane.state.steps)} tokens") \
            if pane.state.steps or turns > 1 else ""
        how = "press u" if rest else "ctrl+p, then 'Undo'"
        self.notify(f"Removed pane {pane.state.config.name}{held}: {how} to undo.")

    def undo(self) -> None:
        """u: undo the last removal (x), field set on every pane (=) or new conversation (shift+n)."""
        if not self.ws.undo:
            self.notify("Nothing to undo (u undoes x, = and shift+n).", severity="warning")
            return
        entry = self.ws.undo.pop()
        if isinstance(entry, TurnsSetAside):
            for state, kept in entry.kept:
                state.restore_turns(kept)
            self.refresh()
            self.notify("The conversation is back: every pane has its earlier turns again.")
        elif isinstance(entry, FieldSet):
            shown = {id(p.state): p for p in self.panes()}
            for state, config in entry.before:
                state.config = config
                if id(state) in shown:
                    shown[id(state)].refresh_view()
            self.notify(f"Undid {entry.text}: each pane has its own value back.")
        else:
            panes = self.panes()
            pane = self.mount(entry.state, before=panes[entry.index] if entry.index < len(panes) else None)
            self.later(pane.focus)
            self.later(self.shelf.models_changed)  # its model is a live pane's again (the bar says so)
            self.notify(f"Restored pane {entry.state.config.name}.")

    def set_everywhere(self) -> None:
        """=: set one field on every pane (FIELD=VALUE, as --set takes it), checked like the editor; u undoes it."""
        from .screens.ask import AskText

        panes = self.panes()
        if not panes:
            self.notify("No panes to change: press a to add one.", severity="warning")
            return
        if self.running:
            self.notify("A run is in progress: wait for it, or Esc to cancel it.", severity="warning")
            return

        def chosen(text: str | None) -> None:
            if text and not self.running:
                self._set_on(panes, text)

        self.push_screen(AskText("Set a field on every pane, as FIELD=VALUE (e.g. max_new_tokens=32, top_p=0.9, "
                                 "seed=auto); u undoes it:", "", check=lambda text: self.set_error(panes, text)),
                         chosen)

    def set_error(self, panes: list[Pane], text: str) -> str | None:
        """Why FIELD=VALUE cannot be set on these panes (None when it can)."""
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
        loaded = self.shelf.loaded
        length, _ = prompt_tokens(loaded, self.prompt_box.text)
        for pane, config in zip(panes, configs):
            problem = context_error(loaded, length, config.max_new_tokens) or vocab_error(loaded, config)
            if problem:
                return f"pane {pane.number} ({config.name}): {problem}"
        return None

    def _set_on(self, panes: list[Pane], text: str) -> None:
        from decodelab.engine.fieldtext import parse_assignment

        key, value = parse_assignment(text, where="FIELD=VALUE")
        before = [(p.state, p.state.config) for p in panes]
        for pane in panes:
            pane.state.config = pane.state.config.replace(**{key: value})
            pane.refresh_view()
        self.ws.remember(FieldSet(before, text))
        idle = [f"{p.number}" for p in panes if SETTING[key].warper and not p.state.config.samples]
        note = f" (greedy pane{'s' if len(idle) > 1 else ''} {', '.join(idle)} ignore{'s' if len(idle) == 1 else ''} " \
               f"{key}: it only shapes sampling)" if idle else ""
        self.notify(f"Set {text} on {len(panes)} pane{'s' if len(panes) > 1 else ''}{note}: u undoes it, "
                    "ctrl+r runs them.")

    def move(self, pane: Pane, delta: int) -> None:
        """< >: move the pane left or right (the digit keys follow the new order)."""
        panes = self.panes()
        index = panes.index(pane) + delta
        if 0 <= index < len(panes):
            container = self.app.query_one("#panes")
            if delta < 0:
                container.move_child(pane, before=panes[index])
            else:
                container.move_child(pane, after=panes[index])
            self.later(self.app.layout_panes)
            self.later(self.refresh)

    def edit(self, pane: Pane) -> None:
        """e: the config editor, checked against the model and the prompt as it stands."""
        from .preflight import context_error, prompt_tokens, vocab_error
        from .screens.config_editor import ConfigEditor

        loaded = self.shelf.loaded
        length, _ = prompt_tokens(loaded, self.prompt_box.text)

        def edited(config: DecodingConfig | None) -> None:
            if config is not None:
                pane.state.config = config
                pane.refresh_view()

        self.push_screen(ConfigEditor(pane.state.config, check=lambda c: context_error(loaded, length, c.max_new_tokens)
                                      or vocab_error(loaded, c)), edited)

    # -- how the panes are drawn ----------------------------------------------------------------------------
    def heatmap(self) -> None:
        """h: the next heatmap measure (constraint only when a pane has one, kl only with a reference pane)."""
        from decodelab.engine.grammars import constraint_of

        constrained = any(constraint_of(s.config) for s in self.ws.panes)
        order = [m for m in ORDER if (m != "constraint" or constrained)
                 and (m != "kl" or self.ws.reference is not None)]
        ws = self.ws
        ws.measure = order[(order.index(ws.measure) + 1) % len(order)] if ws.measure in order else order[0]
        self.update_legend()
        self.refresh()

    def diff(self) -> None:
        """v: mark where panes part (off, vs greedy, vs the left neighbour)."""
        self.ws.diff_mode = DIFF_MODES[(DIFF_MODES.index(self.ws.diff_mode) + 1) % len(DIFF_MODES)]
        self.update_legend()
        self.refresh()

    def update_legend(self) -> None:
        """The heatmap legend, plus the diff mode and, for a remote server, what its logprobs are."""
        notes = []
        if self.ws.diff_mode != "off":
            notes.append(f"diff vs {self.ws.diff_mode} (underlined: first different token)")
        loaded = self.shelf.loaded
        if loaded is not None and not loaded.can("raw_logprobs"):
            from decodelab.engine.backends.remote import KINDS

            notes.append(f"logprobs: {KINDS[loaded.kind].logprobs}")
        self.app.query_one(Legend).show(self.ws.measure, " · ".join(notes))

    def toggle_theme(self) -> None:
        self.app.theme = "decodelab-light" if self.app.theme == "decodelab-dark" else "decodelab-dark"

    # -- experiments from the panes ----------------------------------------------------------------------------
    def arena(self) -> None:
        """shift+a: blind A/B between the panes' configs."""
        from decodelab.engine.library.sessions import user_data_dir

        from .screens.arena import ArenaScreen
        from .screens.ask import AskText

        configs = [s.config for s in self.ws.panes]
        if self.shelf.loaded is None or len(configs) < 2:
            self.notify("Blind A/B needs a loaded model and at least 2 panes.", severity="warning")
            return
        prompt = self.comparison_prompt()
        screens: dict = {}

        def check(path: str) -> str | None:
            """The tally is opened while the dialog is up: one of other panes leaves the path to change."""
            try:
                screens[path] = ArenaScreen(self.shelf.loaded, configs, prompt, path)
            except ConfigError as exc:
                return str(exc)
            return None

        def start(path: str | None) -> None:
            if not path or path not in screens:
                return
            self.push_screen(screens[path])
            if isinstance(prompt, list):
                from decodelab.engine.conversation import last_user

                from .autosave import plural

                pane = self.the_pane()
                users = sum(m["role"] == "user" for m in prompt)
                self.notify(f"A/B on pane {pane.number if pane else 1}'s conversation "
                            f"({plural(users, 'user message')}), answering: {last_user(prompt)[:60]}", timeout=8)

        self.push_screen(AskText("Blind A/B between the current panes. Tally file (resumed if it exists):",
                                 str(user_data_dir("ab") / "decodelab-ab.json"), check=check), start)

    def sweep(self, pane: Pane) -> None:
        """shift+s: a sweep around this pane's config."""
        from .screens.sweep import SweepScreen

        if self.shelf.loaded is None:
            self.notify("A sweep needs a loaded model and a pane to start from.", severity="warning")
            return
        self.push_screen(SweepScreen(self.shelf.backend_for(pane.state) or self.shelf.loaded, pane.state.config,
                                     self.comparison_prompt(pane)))

    def comparison_prompt(self, pane: Pane | None = None) -> Any:
        """What A/B and sweeps run on: the prompt box (with the system prompt), or in a conversation the pane's
        own turns up to its live one (the current pane's, as each pane's history differs)."""
        pane = pane or self.the_pane()
        box = self.prompt_box.text
        if pane is None:
            from decodelab.engine.conversation import build

            return build(box, self.ws.system_prompt)
        return pane.state.prompt_for(self.app.runner.turn_message(pane.state, box), self.ws.system_prompt)
