"""Save a pane's config as a preset: a name (warned when it shadows a built-in) and whether to pin the seed."""

from __future__ import annotations

from dataclasses import dataclass

from decodelab.engine.config import ConfigError, DecodingConfig
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Static


@dataclass(frozen=True)
class SaveRequest:
    name: str
    config: DecodingConfig


def builtin_names() -> set[str]:
    from decodelab.engine.library.presets import builtin_preset_dir

    return {p.stem for p in builtin_preset_dir().glob("*.toml")}


def suggested_name(config: DecodingConfig) -> str:
    """The pane's name, unless that is a built-in's: saving under it would shadow the built-in everywhere."""
    return f"my-{config.name}" if config.name in builtin_names() else config.name


def edited_since(config: DecodingConfig) -> list[str]:
    """The fields the pane changed from the preset it is named after (none when no preset has its name)."""
    from decodelab.engine.library.presets import list_presets, load_preset

    entry = next((e for e in list_presets() if e.name == config.name), None)
    if entry is None:
        return []
    try:
        base = load_preset(entry.path).to_dict()
    except ConfigError:
        return []
    now = config.to_dict()
    return [k for k in now if k not in ("name", "description", "seed") and now[k] != base.get(k)]


def suggested_description(config: DecodingConfig) -> str:
    """The pane's description, marked edited (with what changed) when the pane no longer is the preset it was."""
    changed = edited_since(config)
    if not changed or not config.description:
        return config.description
    listed = ", ".join(changed[:4]) + (" …" if len(changed) > 4 else "")
    return f"{config.description} (edited: {listed})"


class PinBox(Checkbox, inherit_bindings=False):
    """Space ticks it; Enter saves the dialog, as it does from the name."""

    BINDINGS = [Binding("space", "toggle_button", "Toggle", show=False)]


class SavePreset(ModalScreen[SaveRequest | None]):
    """The seed stays auto (a fresh one each run) unless the user ticks "pin the last run's seed"."""
    HELP_NAME = "save a preset"
    """What the help (F1) calls this screen."""

    DEFAULT_CSS = """
    SavePreset { align: center middle; }
    SavePreset > Vertical {
        width: 80%; max-width: 90; height: auto;
        border: thick $primary; background: $surface; padding: 1 2;
    }
    SavePreset .save-title { text-style: bold; }
    SavePreset #save-note { color: $warning; height: auto; }
    SavePreset .save-hint { color: $text-muted; height: auto; }
    SavePreset #save-error { color: $error; height: auto; }
    SavePreset Horizontal { height: 3; align-horizontal: right; }
    """
    BINDINGS = [("escape", "cancel", "Cancel"), ("enter", "save", "Save")]

    def __init__(self, config: DecodingConfig, last_seed: int | None, name: str | None = None,
                 pinned: bool = False, description: str | None = None) -> None:
        """name, pinned: what the dialog showed before (an overwrite question answered no comes back to them)."""
        super().__init__()
        self.config = config
        self.last_seed = last_seed if config.seed is None and config.samples else None
        self.typed = name
        self.pinned = pinned
        self.description = suggested_description(config) if description is None else description

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Save this pane's config as a preset named:", classes="save-title", markup=False)
            yield Input(self.typed or suggested_name(self.config), id="save-name")
            yield Static("", id="save-note", markup=False)
            yield Input(self.description, placeholder="a description: what this config is for (optional)",
                        id="save-description")
            if self.last_seed is not None:
                yield PinBox(f"pin the last run's seed ({self.last_seed})", self.pinned, id="save-pin")
                yield Static("Unticked, the preset keeps seed=auto: a fresh seed every run. Ticked, every run "
                             "repeats the output you just saw.", classes="save-hint", markup=False)
            yield Static("", id="save-error", markup=False)
            with Horizontal():
                yield Button("Save", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#save-name", Input).focus()
        self.note()

    @on(Input.Changed, "#save-name")
    def note(self) -> None:
        name = self.query_one("#save-name", Input).value.strip()
        shadow = name in builtin_names()
        self.query_one("#save-note", Static).update(
            f"⚠ {name!r} is a built-in preset: your copy would replace it everywhere "
            f"(`decodelab presets delete {name}` brings it back)" if shadow else "")

    def chosen_config(self) -> DecodingConfig:
        pinned = self.last_seed is not None and self.query_one("#save-pin", Checkbox).value
        config = self.config.replace(description=self.query_one("#save-description", Input).value.strip())
        return config.replace(seed=self.last_seed) if pinned else config

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def action_save(self) -> None:
        from decodelab.engine.library.presets import check_preset_name

        name = self.query_one("#save-name", Input).value.strip()
        try:
            check_preset_name(name)
        except ConfigError as exc:
            self.query_one("#save-error", Static).update(str(exc))
            return
        self.dismiss(SaveRequest(name, self.chosen_config()))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
