"""Rich tables both front ends draw: the blind A/B tally, a sweep's points (best first), the determinism check."""

from __future__ import annotations

import math


def fmt(value) -> str:
    """A number for a table cell: 4 significant digits, '-' for missing or not finite."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def tally_table(tally):
    """Wins, losses, ties, win rate with its 95% Wilson interval and the Bradley-Terry rating per config."""
    from rich.table import Table

    table = Table(title="tally", title_justify="left")
    for column in ("config", "wins", "losses", "ties", "win rate", "95% CI", "rating"):
        table.add_column(column, justify="left" if column == "config" else "right")
    for row in tally.summary():
        rate = "-" if row["win_rate"] is None else f"{row['win_rate']:.0%}"
        table.add_row(row["name"], f"{row['wins']:.0f}", f"{row['losses']:.0f}", f"{row['ties']:.0f}", rate,
                      f"{row['ci_low']:.0%}–{row['ci_high']:.0%}", f"{row['rating']:.0f}")
    return table


def results_table(results, spec, limit: int = 30):
    """A sweep's points, best first, with the swept parameters, the objective and the main metrics."""
    from rich.table import Table

    names = spec.swept()
    metrics = ["objective", "mean_logprob", "distinct_2", "repetition", "self_similarity"]
    if any("rouge_l" in r.metrics for r in results):
        metrics += ["rouge_l", "chrf"]
    table = Table(title=f"{len(results)} points · objective {spec.objective} ({spec.direction})", title_justify="left")
    for column in names + metrics:
        table.add_column(column, justify="right")
    ordered = sorted(results, key=lambda r: -r.objective if spec.direction == "maximize" else r.objective)
    for r in ordered[:limit]:
        values = [r.params[n] for n in names] + [r.objective] + [r.metrics.get(m) for m in metrics[1:]]
        table.add_row(*[fmt(v) for v in values])
    return table


def determinism_table(report):
    """`check determinism`: a row per round (engine/experiments/determinism.py's Report)."""
    from rich.table import Table

    table = Table(title=f"{report.target} · {report.concurrency} requests at once", title_justify="left")
    for name in ("round", "others", "tokens equal", "first difference", "tokens alone / busy", "max |Δ logprob|"):
        table.add_column(name, justify="right" if name != "tokens equal" else "center")
    for r in report.rounds:
        delta = "n/a" if math.isnan(r.max_logprob_difference) else f"{r.max_logprob_difference:.3g}"  # no logprobs
        equal = "yes" if r.equal else "[bold red]cut short[/]" if r.cut_short else "[bold red]NO[/]"
        table.add_row(str(r.number), str(r.others), equal,
                      "-" if r.first_difference is None else f"token {r.first_difference}",
                      f"{r.tokens_alone} / {r.tokens_busy}", delta)
    errors = dict.fromkeys(r.error for r in report.rounds if r.error)
    if errors:
        table.caption = "the server: " + "; ".join(errors)
        table.caption_justify = "left"
    return table
