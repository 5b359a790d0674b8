"""Export a pane's config for another stack (shift+e, or the palette): the CLI's `presets export` targets.

The list says, per target, how many settings it drops; Enter shows the export and every note on what is NOT
carried over; there y copies it, w writes it to a file (never over one without asking), esc goes back a step.
"""

from __future__ import annotations

import os

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from decodelab.engine.config import DecodingConfig
from decodelab.engine.dialects import EXPORT_NAMES, FORMATS, export_text

from .ask import ShowText


def export_file_name(config: DecodingConfig, fmt: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in (config.name or "pane")) or "pane"
    return EXPORT_NAMES[fmt][2].format(name=safe)


class ExportPicker(ModalScreen[str | None]):
    """Which stack to export to; each entry says what it drops."""
    HELP_NAME = "export a config"
    """What the help (F1) calls this screen."""

    DEFAULT_CSS = """
    ExportPicker { align: center middle; }
    ExportPicker > Vertical {
        width: 90%; max-width: 100; height: auto; max-height: 90%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    ExportPicker OptionList { height: auto; max-height: 12; }
    ExportPicker .export-hint { color: $text-muted; }
    """
    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, config: DecodingConfig, title: str, highlighted: str | None = None) -> None:
        super().__init__()
        self.config, self.title_text, self.start = config, title, highlighted

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"Export {self.title_text} for:", markup=False)
            options = []
            for fmt in FORMATS:
                stack, what, _ = EXPORT_NAMES[fmt]
                try:
                    _, notes = export_text(self.config, fmt)
                    said = f"{len(notes)} note{'s' if len(notes) != 1 else ''}" if notes else "all carried"
                except Exception as exc:  # noqa: BLE001 - one target that cannot take it must not hide the rest
                    said = f"cannot: {exc}"
                options.append(Option(Text.assemble((f"{stack:<22}", "bold"), f"{what:<23} {said}"), id=fmt))
            yield OptionList(*options, id="targets")
            yield Static("Enter shows it, with its notes on what does not carry over (y copies, w writes a file) · "
                         "esc cancels", classes="export-hint", markup=False)

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        options.highlighted = FORMATS.index(self.start) if self.start in FORMATS else 0
        options.focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ShowExport(ShowText):
    """The export and its notes; y copies the export (not the notes), w writes it, esc back to the targets."""

    BINDINGS = [("escape", "back", "Back"), ("y", "copy", "Copy"), ("w", "write", "Write to a file"),
                ("q", "close", "Close")]

    def __init__(self, config: DecodingConfig, fmt: str, title: str) -> None:
        self.config, self.fmt = config, fmt
        self.export, self.notes = export_text(config, fmt)
        stack, what, _ = EXPORT_NAMES[fmt]
        body = self.export.rstrip("\n")
        if self.notes:
            body += "\n\nNOT carried over, or changed (read before you use it):\n" + "\n".join(f"- {n}"
                                                                                      for n in self.notes)
        else:
            body += f"\n\n{stack} takes every setting this pane changes."
        super().__init__(f"{title} → {stack} ({what})", body)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(".show-title", Static).update(Text.assemble(
            (self.title_text, "bold"), ("  y copies · w writes a file · esc back", "dim")))

    def action_back(self) -> None:
        self.dismiss("back")

    def action_close(self) -> None:
        self.dismiss(None)

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.export)
        self.app.notify("Copied the export (through the terminal, OSC 52).")

    def action_write(self, path: str | None = None) -> None:
        from .ask import AskText

        default = path or os.path.join(os.getcwd(), export_file_name(self.config, self.fmt))
        self.app.push_screen(AskText(f"Write the {EXPORT_NAMES[self.fmt][0]} export to:", default), self.write)

    def write(self, path: str | None) -> None:
        from .ask import save_asking

        if path:
            save_asking(self.app, path, self.export, "export file", self.action_write, self.written)

    def written(self, path: str) -> None:
        more = f" ({len(self.notes)} note{'s' if len(self.notes) != 1 else ''} on what it drops: shown here)" \
            if self.notes else ""
        self.app.notify(f"Wrote {path}{more}")
