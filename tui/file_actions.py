"""The Files part: presets (s), copying (c, y), a pane's whole config (f), and sessions (ctrl+s, ctrl+o)."""

from __future__ import annotations

from decodelab.engine.config import ConfigError

from .parts import Part


class Files(Part):
    # -- saving and copying -----------------------------------------------------------------------------
    def save_preset(self, pane, name: str | None = None, pinned: bool = False, description: str | None = None) -> None:
        """s: name the preset and choose whether it pins the last run's seed (it keeps seed=auto by default)."""
        from .screens.save_preset import SavePreset

        state = pane.state
        ran = state.completion.config if state.completion is not None else None
        # the last run's seed repeats its output only under the settings it ran with: after an edit it is not offered
        same = ran is not None and ran.replace(seed=None) == state.config.replace(seed=None)
        self.push_screen(SavePreset(state.config, state.seed if same else None, name, pinned, description),
                         lambda request: self.write_preset(request, pane))

    def write_preset(self, request, pane, overwrite: bool = False) -> None:
        from decodelab.engine.library.presets import PresetExistsError, save_user_preset

        from .screens.ask import Confirm

        if request is None:
            return
        try:
            path = save_user_preset(request.config, request.name, overwrite=overwrite)
        except PresetExistsError:
            pinned = request.config.seed is not None and pane.state.config.seed is None

            def answer(yes: bool) -> None:  # no (or esc) goes back to the name, as typed
                if yes:
                    self.write_preset(request, pane, True)
                else:
                    self.save_preset(pane, request.name, pinned, request.config.description)

            self.push_screen(Confirm(f"You already have a preset named {request.name!r}. Overwrite it?",
                                     "Overwrite"), answer)
            return
        except ConfigError as exc:
            self.notify(str(exc), severity="error")
            return
        seed = "auto" if request.config.seed is None else request.config.seed
        said = f" (seed={seed})" if request.config.samples else ""  # greedy has no seed to speak of
        self.notify(f"Saved preset {request.name}{said} → {path}")

    def export(self, pane, highlighted: str | None = None) -> None:
        """shift+e: the pane's config for another stack (transformers, vLLM, OpenAI, llama.cpp, the webui)."""
        from .screens.export import ExportPicker, ShowExport

        title = f"pane {pane.number} {pane.state.config.name}"
        config = pane.state.config

        def chosen(fmt: str | None) -> None:
            if fmt is None:
                return
            try:
                screen = ShowExport(config, fmt, title)
            except ConfigError as exc:
                self.notify(f"Cannot export to {fmt}: {exc}", severity="error", timeout=10)
                return
            self.push_screen(screen, lambda result: self.export(pane, fmt) if result == "back" else None)

        self.push_screen(ExportPicker(config, title, highlighted), chosen)

    def copy_text(self, pane) -> None:
        self.app.copy_to_clipboard(pane.state.text)
        self.notify("Copied the pane's text (where the terminal supports OSC 52).")

    def show_config(self, pane) -> None:
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

    def copy_config(self, pane) -> None:
        from decodelab.engine.library.presets import dumps_preset

        self.app.copy_to_clipboard(dumps_preset(pane.state.config))
        self.notify("Copied the pane's config as TOML (through the terminal, OSC 52: under tmux it needs "
                    "set-clipboard on). f shows it here.")

    def save_session(self) -> None:
        from decodelab.engine.library.sessions import dumps_session, new_session_path

        from .screens.ask import AskText, save_asking

        text = dumps_session(self.ws.record(self.prompt_box.text, self.shelf.spec))

        def saved(path: str) -> None:
            self.ws.last_session = path
            self.notify(f"Saved session → {path}")

        def save(path: str | None) -> None:
            if path:
                save_asking(self.app, path, text, "session file", ask, saved)

        def ask(default: str) -> None:
            self.push_screen(AskText("Save the session (prompts, configs, seeds, every turn and version) to:",
                                     default), save)

        ask(self.ws.last_session or str(new_session_path()))

    def open_session_dialog(self) -> None:
        from decodelab.engine.library.sessions import last_session_path

        from .screens.ask import AskText

        default = self.ws.set_aside or self.ws.last_session or str(last_session_path() or "")
        read: dict = {}

        def check(path: str) -> str | None:
            """The file is read (and checked) while the dialog is open, so a mistake leaves the path to put right."""
            if self.running:
                return "A run is in progress: Esc (twice) cancels it."
            try:
                read[path] = self.read_session(path)
            except ConfigError as exc:
                return str(exc)
            return None

        self.push_screen(AskText("Open a session file:", default, check=check),
                         lambda path: self.open_session(path, read.get(path)) if path else None)

    def read_session(self, path: str):
        """The session in a file, checked as apply_session would (ConfigError naming what is wrong)."""
        import os

        from decodelab.engine.library.sessions import load_session

        session = load_session(os.path.expanduser(path))
        self.ws.states_from(session, f"session {path}")
        return session

    def open_session(self, path: str, session=None) -> None:
        if self.running:
            self.notify("A run is in progress: Esc cancels it.", severity="warning")
            return
        try:
            self.apply_session(session if session is not None else self.read_session(path), f"session {path}")
        except ConfigError as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return
        self.ws.last_session, self.ws.set_aside = path, None
        self.notify(f"Opened {path}")

    def apply_session(self, session, where: str) -> None:
        """Replace the workspace with a session record's (ConfigError, with nothing changed, when it is damaged)."""
        states = self.ws.states_from(session, where)
        self.prompt_box.text = session.prompt
        self.ws.system_prompt, self.ws.draft = session.system, None
        for pane in self.panes():
            pane.remove()
        opened = []
        for state in states:
            opened.append(self.app.panes_part.mount(state))
        if opened:  # the first pane is the current one and has focus (not the prompt: the keys act on panes)
            self.app.panes_part.current = opened[0]
            self.later(opened[0].focus)
        if self.ws.clear_reference():
            self.app.panes_part.update_legend()
        if session.reference is not None:  # its figures are measured again once the models are in
            self.ws.reference = states[session.reference]
            self.notify(f"Pane {session.reference + 1} is the reference (★): the others are measured against it "
                        "again once the models are in.", timeout=8)
            self.later(self.app.compare.measure)
        self.later(self.app.panes_part.refresh)
        for spec in dict.fromkeys(s.model_spec for s in states if s.model_spec is not None):
            self.shelf.load_pane_model(spec)  # the panes' own models load now; their panes run once they are in
        self.later(self.shelf.models_changed)
        model = session.model.get("path")
        if model and model != self.shelf.spec.path:
            self.notify(f"This session was made with model {model!r}; press m to load it.", timeout=10)
        if self.shelf.loaded is not None:
            self.app.update_model_bar()  # its system prompt
