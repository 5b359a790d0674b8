"""The main screen's footer: Textual's, keeping only the keys that fit whole (Help always), so a narrow terminal
never shows a key cut mid-word. Every key is still in the help screen (? or F1) and the palette (ctrl+p)."""

from __future__ import annotations

from rich.cells import cell_len
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

KEEP = ("help",)
"""Actions whose key stays in the footer however narrow it is."""


def key_width(key: FooterKey) -> int:
    """Cells a key takes in the (non-compact) footer: its key and description, with their padding."""
    return cell_len(key.key_display) + cell_len(key.description) + 3


class FittingFooter(Footer):
    def compose(self):
        items = list(super().compose())
        keys = [w for w in items if isinstance(w, FooterKey) and not w.has_class("-command-palette")]
        rest = [w for w in items if w not in keys]
        room = (self.size.width or self.app.size.width) - sum(key_width(w) for w in rest if isinstance(w, FooterKey))
        room -= sum(key_width(w) for w in keys if w.action in KEEP)
        kept = []
        for key in keys:
            if key.action in KEEP:
                kept.append(key)
            elif key_width(key) <= room:
                kept.append(key)
                room -= key_width(key)
            else:
                room = -1  # keep the order: no later, shorter key jumps the queue
        self.styles.grid_size_columns = len(kept)
        yield from kept + rest

    def on_resize(self) -> None:
        self.call_after_refresh(self.recompose)
