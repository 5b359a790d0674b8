"""Pick a preset from the library (built-ins and the user's), with a filter."""

from __future__ import annotations

from pathlib import Path

from decodelab.engine.config import ConfigError, DecodingConfig
from decodelab.engine.library.presets import PresetEntry, list_presets, load_preset
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option


class PresetPicker(ModalScreen[DecodingConfig | None]):
    HELP_NAME = "add a pane from a preset"
    """What the help (F1) calls this screen."""
    DEFAULT_CSS = """
    PresetPicker { align: center middle; }
    PresetPicker > Vertical {
        width: 80%; max-width: 90; height: 80%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    PresetPicker OptionList { height: 1fr; text-wrap: nowrap; text-overflow: ellipsis; }
    """
    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, model_defaults=None) -> None:
        super().__init__()
        self.model_defaults = model_defaults
        """The loaded model's generation_config.json settings (engine.model_defaults), listed first."""

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Add a pane from a preset (type to filter, Enter to add)", markup=False)
            yield Input(placeholder="filter…", id="filter")
            yield OptionList(id="presets")

    def on_mount(self) -> None:
        self.entries = []
        if self.model_defaults is not None:
            entry = PresetEntry(self.model_defaults.config.name, "model", Path(self.model_defaults.origin))
            self.entries.append((entry, self.model_defaults.config))
        for entry in list_presets():
            try:
                config = load_preset(entry.path)
            except ConfigError as exc:
                self.notify(f"skipped {entry.name}: {exc}", severity="warning")
                continue
            self.entries.append((entry, config))
        self.fill("")
        self.query_one("#filter", Input).focus()

    def fill(self, text: str) -> None:
        options = self.query_one(OptionList)
        options.clear_options()
        for i, (entry, config) in enumerate(self.entries):
            if text.lower() in entry.name.lower() or text.lower() in config.description.lower():
                origin = f"  from {entry.path}" if entry.source == "model" else ""
                row = Text(f"{entry.name:<18} {entry.source:<8} {config.summary()}{origin}", no_wrap=True,
                           overflow="ellipsis")  # one row per preset; a long summary ends in … (not wrapped)
                options.add_option(Option(row, id=str(i)))
        if options.option_count:
            options.highlighted = 0

    @on(Input.Changed, "#filter")
    def _filter(self, event: Input.Changed) -> None:
        self.fill(event.value)

    @on(Input.Submitted, "#filter")
    def _submit(self) -> None:
        options = self.query_one(OptionList)
        if options.highlighted is not None:
            self.dismiss(self.entries[int(options.get_option_at_index(options.highlighted).id)][1])

    def on_key(self, event) -> None:
        if event.key in ("down", "up") and self.focused is self.query_one("#filter", Input):
            self.query_one(OptionList).focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.entries[int(event.option.id)][1])

    def action_cancel(self) -> None:
        self.dismiss(None)
