"""Heatmap measures and colour-blind-safe colour scales, shared by the TUI and the CLI.

The scales are sampled from perceptually uniform, colour-blind-safe colour maps (viridis and
cividis, as published with matplotlib), so "more likely" always reads as "brighter".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Nine stops from dark to bright.
VIRIDIS = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725"]
CIVIDIS = ["#00224e", "#123570", "#3b496c", "#575d6d", "#707173", "#8a8678", "#a59c74", "#c3b369", "#fee838"]
SCALES = {"viridis": VIRIDIS, "cividis": CIVIDIS}


@dataclass(frozen=True)
class Measure:
    key: str
    label: str
    low: str
    high: str


MEASURES = {
    "off": Measure("off", "off", "", ""),
    "prob": Measure("prob", "probability", "unlikely", "likely"),
    "prob_processed": Measure("prob_processed", "probability after processing", "unlikely", "likely"),
    "rank": Measure("rank", "rank (0 = top choice)", "rank 20+", "rank 0"),
    "entropy": Measure("entropy", "entropy (model's uncertainty)", "uncertain", "certain"),
    "surprisal": Measure("surprisal", "surprisal (-log2 p)", "surprising", "expected"),
    "constraint": Measure("constraint", "constraint (▁ forced)", "overruled", "agreed"),
    "kl": Measure("kl", "KL of each pane's model from ★'s, on its own tokens", "KL 10", "KL 0.001"),
}
ORDER = list(MEASURES)


def level(step, measure: str) -> float | None:
    """Where a TokenStep sits on the scale: 0.0 (dark, bad) .. 1.0 (bright, good); None = not shown.

    None also when the measure was not reported (a remote server without logprobs gives NaN).
    """
    value = _level(step, measure)
    return None if value is None or math.isnan(value) else value


def _level(step, measure: str) -> float | None:
    nan = float("nan")
    if measure == "off":
        return None
    if measure == "prob":
        return math.exp(step.logprob)
    if measure == "prob_processed":
        lp = step.logprob_processed
        return nan if math.isnan(lp) else math.exp(lp)  # exp(-inf) = 0: filtered out
    if measure == "rank":
        return nan if step.rank < 0 else max(0.0, 1.0 - math.log1p(step.rank) / math.log1p(20))
    if measure == "entropy":
        return nan if math.isnan(step.entropy) else max(0.0, 1.0 - step.entropy / 6.0)
    if measure == "surprisal":
        return nan if math.isnan(step.logprob) else max(0.0, 1.0 - (-step.logprob / math.log(2)) / 12.0)
    if measure == "kl":  # per pane, from the agreement figures (kl_level), not from the step itself
        return None
    if measure == "constraint":  # json_schema, regex, choice, grammar: needs the traced stages
        removed = step.constraint_removed
        return nan if removed is None else 1.0 - removed
    raise ValueError(f"unknown heatmap measure {measure!r}")


def kl_level(kl: float | None) -> float | None:
    """Where a KL (nats) sits on the scale: 0.001 or less is bright (the models agree), 10 or more dark; log scale."""
    if kl is None or math.isnan(kl):
        return None
    return max(0.0, min(1.0, 1.0 - math.log10(max(kl, 1e-3) / 1e-3) / 4.0))


def colour(value: float, scale: str = "viridis") -> str:
    stops = SCALES[scale]
    index = min(len(stops) - 1, max(0, int(round(value * (len(stops) - 1)))))
    return stops[index]


def relative_luminance(hex_colour: str) -> float:
    """WCAG 2.x relative luminance of an sRGB colour written as #rrggbb."""
    def channel(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(int(hex_colour[i : i + 2], 16)) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: str, b: str) -> float:
    """WCAG contrast ratio between two #rrggbb colours: 1 (none) .. 21 (black on white)."""
    la, lb = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def text_colour_for(background: str) -> str:
    """Black or white, whichever has the higher WCAG contrast on the background (always >= 4.58:1)."""
    return "#000000" if contrast_ratio("#000000", background) >= contrast_ratio("#ffffff", background) else "#ffffff"
