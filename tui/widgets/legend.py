"""The heatmap legend: which measure colours the tokens, and the scale from low to high."""

from __future__ import annotations

from decodelab.themes.heatmap import MEASURES, colour
from rich.text import Text
from textual.widgets import Static


class Legend(Static):
    def show(self, measure: str, extra: str = "") -> None:
        info = MEASURES[measure]
        text = Text("heatmap: ", style="bold")
        text.append(info.label)
        if measure != "off":
            text.append(f"  {info.low} ")
            for i in range(9):
                text.append(" ", style=f"on {colour(i / 8)}")
            text.append(f" {info.high}")
        if extra:
            text.append(f"   {extra}", style="dim")
        self.update(text)
