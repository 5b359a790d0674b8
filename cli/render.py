"""Rich rendering of completions for `decodelab run`: side-by-side panels, optionally heatmap-coloured."""

from __future__ import annotations

from decodelab.themes.heatmap import MEASURES, colour, level, text_colour_for
from rich.columns import Columns
from rich.console import Console, Group
from rich.panel import Panel
from rich.text import Text


def stats_line(c) -> str:
    ppl = f"ppl {c.perplexity:.2f}" if c.perplexity is not None else "ppl -"
    mean = f"mean logprob {c.mean_logprob:.2f}" if c.mean_logprob is not None else ""
    score = f" · score {c.sequence_score:.3f}" if c.sequence_score is not None else ""
    seed = f" · seed {c.seed}" if c.config.samples else ""  # greedy draws nothing: its seed means nothing
    return (f"{len(c.token_ids)} tok · {c.timings.tokens_per_s:.1f} tok/s · {mean} · {ppl} · "
            f"{c.stop_reason}{seed}{score}")


def heat_text(c, measure: str) -> Text:
    """The completion's text with each token's background coloured by the measure."""
    text = Text()
    remaining = len(c.text)
    for step in c.steps:
        piece = step.text[: max(remaining, 0)]
        remaining -= len(step.text)
        if not piece:
            continue
        value = level(step, measure)
        if value is None:
            text.append(piece)
        else:
            bg = colour(value)
            text.append(piece, style=f"{text_colour_for(bg)} on {bg}")
    return text


def legend(measure: str) -> Text:
    info = MEASURES[measure]
    text = Text(f"heatmap: {info.label}  {info.low} ")
    for i in range(9):
        text.append("  ", style=f"on {colour(i / 8)}")
    text.append(f" {info.high}")
    return text


def prompt_text(prompt) -> Text:
    """The prompt as the run's heading: the text, or each message of a conversation on its own line."""
    if isinstance(prompt, str):
        return Text("prompt: ", style="bold") + Text(prompt.strip()[:500])
    lines = Text()
    for i, message in enumerate(prompt):
        lines.append(("\n" if i else "") + f"{message['role']}: ", style="bold")
        lines.append(message["content"].strip()[:500])
    return lines


def stage_lines(c) -> list[Text]:
    """With traced stages: one line per setting at work, the dead ones marked."""
    from decodelab.engine.experiments.stage_use import stage_report

    return [Text(("dead: " if use.dead else "") + use.note, style="yellow" if use.dead else "dim")
            for use in stage_report(c)]


def print_completions(console: Console, prompt, completions, heatmap: str | None, models=None) -> None:
    """Every pane side by side (models: each pane's model, shown in its title when the panes' models differ)."""
    panels = []
    for i, c in enumerate(completions):
        body = heat_text(c, heatmap) if heatmap else Text(c.text)
        # The config's summary goes inside (it wraps), not on the border, where a narrow panel cut it.
        parts = [Text(c.config.summary(), style="dim"), body, Text(stats_line(c), style="dim")]
        parts += stage_lines(c)
        if c.extra.get("error"):
            parts.append(Text(f"⚠ {c.extra['error']}", style="yellow"))
        if c.extra.get("ignored"):
            parts.append(Text(f"⚠ the server ignores {', '.join(c.extra['ignored'])}", style="yellow"))
        title = f"[b]{c.config.name}[/b]" + (f" · {models[i]}" if models else "")
        panels.append(Panel(Group(*parts), title=title, title_align="left"))
    width = max(30, console.width // max(1, min(len(panels), max(1, console.width // 40))))
    console.print(prompt_text(prompt))
    console.print(Columns(panels, width=width - 1, equal=True))
    if heatmap:
        console.print(legend(heatmap))


def print_agreement(console: Console, agreement: dict) -> None:
    """The agreement figures (run with panes on several models) as a table under the panes."""
    from rich.table import Table

    table = Table(title=f"against pane {agreement['reference']} ({agreement['reference_name']} · "
                        f"{agreement['reference_model']}), teacher-forced on its tokens", title_justify="left",
                  show_edge=False)
    for column in ("pane", "KL/tok", "top-1", "top-1 differs", "outputs part", "ppl on ref", "ref ppl on pane"):
        table.add_column(column, justify="left" if column == "pane" else "right")

    def cell(value, fmt="{:.3f}"):
        return "-" if value is None else fmt.format(value)

    for entry in agreement["panes"]:
        if "kl_mean" not in entry:
            table.add_row(f"{entry['pane']} {entry['name']} · {entry['model']}", entry.get("note", "-"), "", "", "",
                          "", "")
            continue
        table.add_row(f"{entry['pane']} {entry['name']} · {entry['model']}", cell(entry["kl_mean"], "{:.4f}"),
                      cell(entry["top1_agreement"], "{:.0%}"), cell(entry["first_disagreement"], "token {}"),
                      cell(entry["first_divergence"], "token {}"),
                      cell(entry["perplexity_on_reference"], "{:.2f}"),
                      cell(entry["reference_perplexity_on_pane"], "{:.2f}"))
    console.print(table)
    notes = {e["note"] for e in agreement["panes"] if e.get("note") and "kl_mean" in e}
    for note in notes:
        console.print(Text(note, style="dim"))
