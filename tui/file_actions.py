"""The app's saving, copying and session actions (a mixin for DecodelabApp)."""

from __future__ import annotations

import dataclasses

from decodelab.engine.config import ConfigError
from textual.widgets import TextArea


class FileActions:
    # -- saving and copying -----------------------------------------------------------------------------
    def save_pane_preset(self, pane) -> None:
        """s: name the preset and choose whether it pins the last run's seed (it keeps seed=auto by default)."""
        from .screens.save_preset import SavePreset

        self.push_screen(SavePreset(pane.state.config, pane.state.seed), self.write_preset)

    def write_preset(self, request, overwrite: bool = False) -> None:
        from decodelab.engine.library.presets import PresetExistsError, save_user_preset

        from .screens.ask import Confirm

        if request is None:
            return
        try:
            path = save_user_preset(request.config, request.name, overwrite=overwrite)
        except PresetExistsError:
            self.push_screen(Confirm(f"You already have a preset named {request.name!r}. Overwrite it?", "Overwrite"),
                             lambda yes: self.write_preset(request, True) if yes else self.notify("Not saved."))
            return
        except ConfigError as exc:
            self.notify(str(exc), severity="error")
            return
        seed = "auto" if request.config.seed is None else request.config.seed
        self.notify(f"Saved preset {request.name} (seed={seed}) → {path}")

    def copy_pane_text(self, pane) -> None:
        self.copy_to_clipboard(pane.state.text)
        self.notify("Copied the pane's text (where the terminal supports OSC 52).")

    def show_pane_config(self, pane) -> None:
        """f: the pane's whole config on screen (every field it changes, as TOML), however narrow the pane."""
        import tomli_w

        changed = pane.state.config.to_dict(only_changed=True)
        changed.pop("name", None)
        body = tomli_w.dumps(changed).strip() if changed else "(every field at its default: greedy)"
        from decodelab.engine.experiments.stage_use import inert_notes, stage_report

        completion = pane.state.completion
        uses = stage_report(completion) if completion is not None and completion.config == pane.state.config else []
        inert = inert_notes(pane.state.config)
        if any(u.steps for u in uses):
            body += "\n\nover the last run:\n" + "\n".join(("dead: " if u.dead else "") + u.note for u in uses)
        elif inert:
            body += "\n\n" + "\n".join(inert)
        from .screens.ask import ShowText

        self.push_screen(ShowText(f"Pane {pane.number} {pane.state.config.name}", body))

    def copy_pane_config(self, pane) -> None:
        from decodelab.engine.library.presets import dumps_preset

        self.copy_to_clipboard(dumps_preset(pane.state.config))
        self.notify("Copied the pane's config as TOML (through the terminal, OSC 52: under tmux it needs "
                    "set-clipboard on). f shows it here.")

    def action_save_session(self) -> None:
        from decodelab.engine.library.sessions import Session, new_session_path, save_session

        from .screens.ask import AskText, Confirm

        from .state import conversation_record

        panes = self.panes()
        session = Session(prompt=self.query_one("#prompt", TextArea).text, model=dataclasses.asdict(self.spec),
                          configs=[p.state.config for p in panes], completions=[p.state.completion for p in panes],
                          system=self.system_prompt, conversations=[conversation_record(p.state) for p in panes],
                          pane_models=[dataclasses.asdict(p.state.model_spec) if p.state.model_spec else None
                                       for p in panes])

        def save(path: str | None, overwrite: bool = False) -> None:
            if not path:
                return
            try:
                save_session(session, path, overwrite=overwrite)
            except ConfigError as exc:
                if "already exists" in str(exc) and not overwrite:
                    self.push_screen(Confirm(f"{path} exists. Overwrite it?", "Overwrite"),
                                     lambda yes: save(path, True) if yes else None)
                    return
                self.notify(str(exc), severity="error")
                return
            self.last_session = path
            self.notify(f"Saved session → {path}")

        default = self.last_session or str(new_session_path())
        self.push_screen(AskText("Save the session (prompts, configs, seeds, every turn and version) to:", default),
                         save)

    def action_open_session(self) -> None:
        from decodelab.engine.library.sessions import last_session_path

        from .screens.ask import AskText

        default = self.last_session or str(last_session_path() or "")
        self.push_screen(AskText("Open a session file:", default),
                         lambda path: self.open_session(path) if path else None)

    def open_session(self, path: str) -> None:
        from decodelab.engine.library.sessions import load_session

        if self.running:
            self.notify("A run is in progress: Esc cancels it.", severity="warning")
            return
        try:
            session = load_session(path)
        except ConfigError as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return
        from .state import PaneState, restore_conversation

        from decodelab.engine.backends.loading import ModelSpec

        states = []
        models = list(session.pane_models) + [None] * (len(session.configs) - len(session.pane_models))
        for i, (config, completion, record) in enumerate(zip(session.configs, session.completions,
                                                              session.conversations or [None] * len(session.configs))):
            state = PaneState(config)
            try:
                state.model_spec = ModelSpec(**models[i]) if models[i] else None
                if record is not None:
                    restore_conversation(state, record, f"session {path}")
                elif completion is not None:  # a schema-1 file: one output, on the session's prompt
                    state.prompt = session.prompt
                    state.finish(completion)
            except ConfigError as exc:
                self.notify(str(exc), severity="error", timeout=10)
                return
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                self.notify(f"session {path} is damaged: pane {i + 1}'s conversation or model "
                            f"({type(exc).__name__}: {exc})", severity="error", timeout=10)
                return
            states.append(state)
        self.query_one("#prompt", TextArea).text = session.prompt
        self.system_prompt, self.draft = session.system, None
        for pane in self.panes():
            pane.remove()
        opened = []
        for state in states:
            pane = self.add_pane(state.config)
            pane.state = state
            opened.append(pane)
        self.last_session = path
        if opened:  # the first pane is the current one and has focus (not the prompt: the keys act on panes)
            self.current_pane = opened[0]
            self.call_after_refresh(opened[0].focus)
        self.reference = None  # sessions keep outputs, not the reference: the kl colours go with it
        if self.measure == "kl":
            self.measure = "prob"
            self.update_legend()
        self.call_after_refresh(self.refresh_panes)
        for spec in dict.fromkeys(s.model_spec for s in states if s.model_spec is not None):
            self.load_pane_model(spec)  # the panes' own models load now; their panes run once they are in
        self.call_after_refresh(self.models_changed)
        model = session.model.get("path")
        if model and model != self.spec.path:
            self.notify(f"This session was made with model {model!r}; press m to load it.", timeout=10)
        if self.loaded is not None:
            self.update_model_bar()  # its system prompt
        self.notify(f"Opened {path}")
