"""Edit a pane's config: every DecodingConfig field, validated as you type with the engine's own messages."""

from __future__ import annotations

from typing import Callable

from decodelab.engine.config import FIELD_HELP, FIELD_NAMES, ConfigError, DecodingConfig
from decodelab.engine.fieldtext import format_text, parse_text
from textual.content import Content  # a title with [brackets] is text, not markup
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static, Switch


class ConfigEditor(ModalScreen[DecodingConfig | None]):
    """A form over every field. Save is disabled while the config is invalid, and the reason is shown."""
    HELP_NAME = "the settings editor"
    """What the help (F1) calls this screen."""

    DEFAULT_CSS = """
    ConfigEditor { align: center middle; }
    ConfigEditor > Vertical {
        width: 90%; max-width: 100; height: 90%;
        border: thick $primary; background: $surface;
    }
    ConfigEditor .row { height: 3; }
    ConfigEditor .row > Label { width: 22; padding: 1 1 0 0; text-align: right; }
    ConfigEditor .row > Input { width: 1fr; }
    ConfigEditor .help { color: $text-muted; padding: 0 0 0 23; height: auto; }
    ConfigEditor #editor-error { color: $error; height: auto; padding: 0 1; }
    ConfigEditor #editor-error.-ok { color: $success; }
    ConfigEditor #buttons { height: 3; align-horizontal: right; }
    ConfigEditor #editor-keys { color: $text-muted; padding: 0 1; height: auto; }
    ConfigEditor #find { margin: 0 1; }
    ConfigEditor.-compact > Vertical { height: 100%; width: 100%; max-width: 100; border: round $primary; }
    ConfigEditor.-compact .row { height: 1; }
    ConfigEditor.-compact .row > Label { padding: 0 1 0 0; }
    ConfigEditor.-compact .row > Input { border: none; height: 1; padding: 0 1; background: $boost; }
    ConfigEditor.-compact .row > Input:focus { background: $primary 35%; }
    ConfigEditor.-compact .row > Switch { border: none; height: 1; padding: 0; }
    ConfigEditor.-compact .help { display: none; }
    ConfigEditor.-compact .help.-current { display: block; color: $text; }
    ConfigEditor.-compact #find { border: none; height: 1; margin: 0 1; padding: 0 1; background: $boost; }
    ConfigEditor.-compact #buttons { height: 1; }
    ConfigEditor.-compact #buttons > Button { height: 1; border: none; min-width: 10; }
    """
    COMPACT_BELOW = 50
    """Screens fewer rows high get one line per field, with only the focused field's help (80x24 shows ~12)."""

    BINDINGS = [("escape", "cancel", "Cancel"), ("ctrl+s", "save", "Apply"), ("ctrl+f", "find", "Find a field")]

    def __init__(self, config: DecodingConfig, check: Callable[[DecodingConfig], str | None] | None = None) -> None:
        """check(config) says why a valid config still cannot run on the loaded model (e.g. its context)."""
        super().__init__()
        self.original = config
        self.check = check
        self.result: DecodingConfig | None = config

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = Content(f"edit {self.original.name or 'pane'}")
            yield Static("Enter or ctrl+s applies · Esc cancels · Tab / shift+Tab move between fields · "
                         "ctrl+f finds a field", id="editor-keys", markup=False)
            yield Input(placeholder="find a field: part of its name, then Enter (max, top_p, dry…)",
                        id="find")
            with VerticalScroll():
                for name in FIELD_NAMES:
                    with Horizontal(classes="row"):
                        yield Label(name, markup=False)
                        if name == "do_sample":
                            yield Switch(value=self.original.do_sample, id="f-do_sample")
                        else:
                            yield Input(format_text(self.original, name), id=f"f-{name}")
                    yield Static(FIELD_HELP[name], classes="help", id=f"h-{name}", markup=False)
            yield Static("", id="editor-error", markup=False)
            with Horizontal(id="buttons"):
                yield Button("Apply", variant="primary", id="apply")
                yield Button("Cancel", id="cancel")

    def on_resize(self, event) -> None:
        self.set_class(event.size.height < self.COMPACT_BELOW, "-compact")

    def on_descendant_focus(self, event) -> None:
        """The focused field's help shows (in the compact layout only that one does)."""
        name = (event.widget.id or "").removeprefix("f-")
        for help_line in self.query(".help"):
            help_line.set_class(help_line.id == f"h-{name}", "-current")

    def on_mount(self) -> None:
        self.set_class(self.app.size.height < self.COMPACT_BELOW, "-compact")
        self.query_one("#find", Input).focus()  # type part of a field's name and Enter jumps there
        self.validate_form()

    def matches(self, text: str) -> list[str]:
        """Fields whose name (or, failing that, help) holds every word typed, best first."""
        words = text.lower().replace("-", "_").split()
        if not words:
            return []
        by_name = [n for n in FIELD_NAMES if all(w in n for w in words)]
        by_name.sort(key=lambda n: (not n.startswith(words[0]), FIELD_NAMES.index(n)))  # the form's order
        return by_name or [n for n in FIELD_NAMES if all(w in FIELD_HELP[n].lower() for w in words)]

    @on(Input.Changed, "#find")
    def _find_changed(self, event: Input.Changed) -> None:
        found = self.matches(event.value)
        if found:
            self.query_one(f"#f-{found[0]}").scroll_visible(animate=False, top=True)

    def action_find(self) -> None:
        find = self.query_one("#find", Input)
        find.value = ""
        self.set_focus(find)  # at once (focus() waits a refresh): keys typed next go here, not into the field left

    def read_form(self) -> DecodingConfig:
        values = {}
        for name in FIELD_NAMES:
            if name == "do_sample":
                values[name] = self.query_one("#f-do_sample", Switch).value
            else:
                values[name] = parse_text(name, self.query_one(f"#f-{name}", Input).value)
        return DecodingConfig(**values)

    def validate_form(self) -> DecodingConfig | None:
        message = self.query_one("#editor-error", Static)
        try:
            config = self.read_form()
        except ConfigError as exc:
            return self.refuse(str(exc))
        problem = self.check(config) if self.check else None
        if problem:
            return self.refuse(problem)
        self.result = config
        message.update(f"✓ {config.summary()}")
        message.add_class("-ok")
        self.query_one("#apply", Button).disabled = False
        return config

    def refuse(self, reason: str) -> None:
        self.result = None
        message = self.query_one("#editor-error", Static)
        message.update(f"✗ {reason}")
        message.remove_class("-ok")
        self.query_one("#apply", Button).disabled = True

    @on(Input.Changed)
    @on(Switch.Changed)
    def _changed(self) -> None:
        self.validate_form()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "find" or not event.value.strip():
            self.action_save()
            return
        found = self.matches(event.value)
        if not found:
            self.notify(f"No field matches {event.value!r}.", severity="warning")
            return
        field = self.query_one(f"#f-{found[0]}")
        self.set_focus(field)
        field.scroll_visible(animate=False, top=True)
        if len(found) > 1:
            self.notify(f"Also: {', '.join(found[1:6])}{' …' if len(found) > 6 else ''} (ctrl+f, a longer name)",
                        timeout=5)

    @on(Button.Pressed, "#apply")
    def action_save(self) -> None:
        config = self.validate_form()
        if config is None:
            self.notify("This config is invalid; fix the field named in red first.", severity="error")
            return
        self.dismiss(config)

    def changed_fields(self) -> list[str]:
        """The fields whose text (or switch) differs from what the editor opened with."""
        changed = []
        for name in FIELD_NAMES:
            if name == "do_sample":
                if self.query_one("#f-do_sample", Switch).value != self.original.do_sample:
                    changed.append(name)
            elif self.query_one(f"#f-{name}", Input).value != format_text(self.original, name):
                changed.append(name)
        return changed

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        """Esc or Cancel: with changes, ask first (no, or esc again, goes back to the fields)."""
        changed = self.changed_fields()
        if not changed:
            self.dismiss(None)
            return
        from .ask import Confirm

        n = len(changed)
        names = ", ".join(changed[:4]) + (" …" if n > 4 else "")
        self.app.push_screen(Confirm(f"Discard {n} change{'s' if n > 1 else ''} ({names})?", "Discard"),
                             lambda yes: self.dismiss(None) if yes else None)


__all__ = ["ConfigEditor"]
