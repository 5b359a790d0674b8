"""The row of panes: as many whole panes as fit side by side, with a sign of how many more are to each side."""

from __future__ import annotations

from textual import events
from textual.containers import HorizontalScroll

from .pane import Pane

MIN_PANE_WIDTH = 32
"""Narrower than this, a pane's text wraps too often to read: fewer panes show, the rest scroll."""


def pane_widths(available: int, count: int) -> list[int]:
    """Widths for `count` panes so that whole panes fill `available` columns exactly (the rest scroll).

    The widths repeat with a period of the number that fit, so any run of that many adjacent panes
    fills the view without a clipped sliver of the next one.
    """
    if count == 0 or available <= 0:
        return []
    fit = max(1, min(count, available // MIN_PANE_WIDTH))
    base, extra = divmod(available, fit)
    return [base + (1 if i % fit < extra else 0) for i in range(count)]


class PaneStrip(HorizontalScroll, can_focus=False):
    """Lays its panes out again whenever its size, its panes, or the scroll position change."""

    DEFAULT_CSS = """
    PaneStrip {
        width: 1fr;
        height: 1fr;
        scrollbar-size-horizontal: 0;
    }
    """

    def panes(self) -> list[Pane]:
        return list(self.query_children(Pane))

    def on_resize(self, event: events.Resize) -> None:
        self.layout_panes()

    def layout_panes(self) -> None:
        panes = self.panes()
        for number, (pane, width) in enumerate(zip(panes, pane_widths(self.scrollable_content_region.width,
                                                                         len(panes))), start=1):
            pane.styles.width = width
            pane.number = number
            pane.refresh_title()
        self.call_after_refresh(self.mark_hidden)

    def show_whole(self, pane: Pane) -> None:
        """Scroll so that `pane` and its neighbours show whole, starting at a pane's edge: Textual centres a
        focused widget, which cut both neighbours in half."""
        panes = self.panes()
        if pane not in panes:
            return
        width = self.scrollable_content_region.width
        x, right = pane.virtual_region.x, pane.virtual_region.right
        starts = [p.virtual_region.x for p in panes]
        fits = [start for start in starts if start <= x and start + width >= right]
        target = min(fits, key=lambda start: abs(start - self.scroll_x)) if fits else x
        if round(self.scroll_x) != target:
            self.scroll_to(x=target, animate=False, immediate=True)

    def watch_scroll_x(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_x(old_value, new_value)
        if round(old_value) != round(new_value):
            self.call_after_refresh(self.mark_hidden)

    def visible_panes(self) -> list[Pane]:
        """The panes wholly on screen."""
        left_edge = self.scroll_x
        right_edge = left_edge + self.scrollable_content_region.width
        return [p for p in self.panes()
                if p.virtual_region.x >= left_edge - 1 and p.virtual_region.right <= right_edge + 1]

    def mark_hidden(self) -> None:
        """Tell the first and last wholly visible panes how many panes are hidden beyond them."""
        panes, visible = self.panes(), self.visible_panes()
        for pane in panes:
            pane.more = ""
        if visible:
            first, last = panes.index(visible[0]), panes.index(visible[-1])
            if first:
                visible[0].more = f"◀ {first} more"
            if last < len(panes) - 1:
                right = f"{len(panes) - 1 - last} more ▶"
                visible[-1].more = f"{visible[-1].more} · {right}" if visible[-1].more else right
        for pane in panes:
            pane.refresh_subtitle()
