"""Pick the model to load: the list `decodelab models` prints, or any folder, hub id, .gguf file or URL typed in."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option


class ModelPicker(ModalScreen[str | None]):
    HELP_NAME = "load a model"
    """What the help (F1) calls this screen."""
    DEFAULT_CSS = """
    ModelPicker { align: center middle; }
    ModelPicker > Vertical {
        width: 90%; max-width: 120; height: 80%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    ModelPicker OptionList { height: 1fr; }
    ModelPicker #model-hint { color: $text-muted; }
    """
    BINDINGS = [("escape", "cancel", "Cancel"), ("delete", "delete_conversion", "Delete a converted copy")]

    def __init__(self, current: str = "") -> None:
        super().__init__()
        self.current = current
        self.names: list[str] = []
        self.entries: list = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Load a model: pick one (↓, Enter) or type a folder, hub id, .gguf or URL · Delete on a "
                         "converted GGUF removes its cached copy", markup=False)  # wraps at 80 columns
            yield Input(self.current, placeholder="path, hub id, FILE.gguf, http://host:port/v1", id="model-path")
            yield OptionList(Option("looking for models…", disabled=True), id="models")
            yield Label("", id="model-hint", markup=False)

    def on_mount(self) -> None:
        self.query_one("#model-path", Input).focus()
        self.find_models()

    @work(thread=True, exclusive=True)
    def find_models(self) -> None:
        from decodelab.engine.backends.catalog import available_models

        try:
            entries = available_models()
        except Exception as exc:  # noqa: BLE001 - a listing problem must not block typing a path
            self.app.call_from_thread(self.show_problem, str(exc))
            return
        self.app.call_from_thread(self.fill, entries)

    def fill(self, entries) -> None:
        from decodelab.engine.backends.catalog import format_size

        options = self.query_one("#models", OptionList)
        options.clear_options()
        self.entries = list(entries)
        self.names = [e.name for e in entries]
        width = max(len(n) for n in self.names) if self.names else 10
        for i, e in enumerate(entries):
            options.add_option(Option(f"{e.name:<{width}}  {e.kind:<8} {format_size(e.size_bytes):>9}  {e.detail}",
                                      id=str(i)))
        if self.current in self.names:
            options.highlighted = self.names.index(self.current)
        hint = "" if any(e.kind == "hf-cache" for e in entries) else "No models in the local Hugging Face cache."
        self.query_one("#model-hint", Label).update(hint)

    def show_problem(self, message: str) -> None:
        self.query_one("#models", OptionList).clear_options()
        self.query_one("#model-hint", Label).update(f"could not list models: {message}")

    @on(Input.Submitted, "#model-path")
    def _typed(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        self.dismiss(value or None)

    def on_key(self, event) -> None:
        if event.key in ("down", "up") and self.focused is self.query_one("#model-path", Input):
            self.query_one("#models", OptionList).focus()

    @on(OptionList.OptionSelected, "#models")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.names[int(event.option.id)])

    def action_delete_conversion(self) -> None:
        """Delete on a converted GGUF: remove its cached copy (after asking; the GGUF file itself stays)."""
        options = self.query_one("#models", OptionList)
        if self.focused is not options or options.highlighted is None or options.highlighted >= len(self.entries):
            self.app.notify("Pick a converted GGUF in the list (↓), then Delete removes its cached copy.",
                            severity="warning")
            return
        entry = self.entries[options.highlighted]
        if entry.conversion is None:
            self.app.notify(f"{entry.name} is not a converted copy: only cached GGUF conversions can be deleted "
                            "here.", severity="warning")
            return
        from decodelab.engine.backends.catalog import format_size

        from .ask import Confirm

        self.app.push_screen(Confirm(f"Delete the converted copy {entry.conversion} ({format_size(entry.size_bytes)})"
                                     "? The GGUF file stays; loading it again converts it again.", "Delete"),
                             lambda yes: self.delete(entry) if yes else None)

    def delete(self, entry) -> None:
        from decodelab.engine.backends.catalog import format_size
        from decodelab.engine.backends.gguf import GGUFError, remove_conversion

        try:
            remove_conversion(entry.conversion)
        except (OSError, GGUFError) as exc:
            self.app.notify(f"Not deleted: {exc}", severity="error", timeout=10)
            return
        self.app.notify(f"Deleted {entry.conversion}: {format_size(entry.size_bytes)} freed.")
        self.find_models()

    def action_cancel(self) -> None:
        self.dismiss(None)
