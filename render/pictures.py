"""Pictures of a sweep both front ends draw: the objective over two parameters, quality against diversity."""

from __future__ import annotations

import math

from .tables import fmt


def grid_picture(results, x_name, y_name, direction, colour):
    """The objective over two swept parameters as a coloured grid (mean over the other parameters)."""
    from rich.table import Table

    cells: dict[tuple, list[float]] = {}
    for r in results:
        cells.setdefault((r.params[x_name], r.params[y_name]), []).append(r.objective)
    xs = sorted({k[0] for k in cells})
    ys = sorted({k[1] for k in cells})
    values = [v for vs in cells.values() for v in vs if math.isfinite(v)]
    if len(xs) > 12 or len(ys) > 12 or not values:  # continuous (random/bayes) sweeps: the scatter says more
        return f"({x_name} × {y_name}: too many distinct values for a grid; see the table)"
    low, high = min(values), max(values)
    table = Table(title=f"objective by {y_name} (rows) × {x_name} (columns); bright = better", title_justify="left")
    table.add_column(y_name, justify="right")
    for x in xs:
        table.add_column(fmt(x), justify="center")
    for y in ys:
        row = [fmt(y)]
        for x in xs:
            vs = [v for v in cells.get((x, y), []) if math.isfinite(v)]
            if not vs:
                row.append("")
                continue
            v = sum(vs) / len(vs)
            level = (v - low) / (high - low) if high > low else 1.0
            level = level if direction == "maximize" else 1 - level
            row.append(f"[black on {colour(level)}] {v:.3g} [/]")
        table.add_row(*row)
    return table


def scatter_text(results, width: int = 80):
    """Quality (mean logprob) against diversity (distinct-2) as a plotext scatter; None with < 2 points."""
    import plotext as plt
    from rich.text import Text

    pts = [(r.metrics.get("distinct_2"), r.metrics.get("mean_logprob")) for r in results]
    pts = [(x, y) for x, y in pts if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
    if len(pts) < 2:
        return None
    plt.clear_figure()
    plt.plotsize(max(30, min(width, 80) - 2), 15)
    plt.theme("clear")
    plt.scatter([p[0] for p in pts], [p[1] for p in pts], marker="dot")
    plt.xlabel("diversity: distinct-2")
    plt.ylabel("quality: mean logprob")
    return Text.from_ansi(plt.build())
