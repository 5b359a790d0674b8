"""`decodelab sweep`: grid, random or Bayesian search over decoding settings, scored by automatic metrics."""

from __future__ import annotations

import click
from decodelab.engine.config import ConfigError
from decodelab.render.pictures import grid_picture, scatter_text
from decodelab.render.tables import results_table

from .common import handle_errors, load_with_progress, model_options, model_spec, parse_set, warn


def build_spec(presets, sets, grid, ranges, strategy, trials, seeds, prompt, prompt_file, objective, direction,
               sweep_file):
    from decodelab.engine.config import DecodingConfig
    from decodelab.engine.experiments.sweep import (
        PromptCase,
        SweepSpec,
        load_sweep_file,
        parse_grid,
        parse_objective,
        parse_ranges,
        read_prompt_cases,
    )
    from decodelab.engine.library.fileio import load_document
    from decodelab.engine.library.presets import find_preset

    data = load_sweep_file(load_document(sweep_file, "sweep file"), sweep_file) if sweep_file else {}
    base_name = presets[0] if presets else data.get("base")
    base = find_preset(base_name) if base_name else DecodingConfig(name="sweep", do_sample=True)
    if len(presets) > 1:
        raise click.UsageError("a sweep starts from one base preset (-p NAME)")
    base = base.replace(**parse_set(sets)) if sets else base
    if prompt is not None and prompt_file is not None:
        raise click.UsageError("give --prompt or --prompt-file, not both")
    if prompt_file:
        cases = read_prompt_cases(load_document(prompt_file, "prompt file"), prompt_file)
    elif prompt is not None:
        cases = [PromptCase(prompt)]
    else:
        raise click.UsageError("give a prompt with --prompt TEXT or --prompt-file FILE")
    file_objective = dict(data.get("objective", {}))
    file_direction = file_objective.pop("direction", data.get("direction"))
    return SweepSpec(
        base=base,
        grid={**{k: list(v) for k, v in data.get("grid", {}).items()}, **parse_grid(grid)},
        ranges={**{k: tuple(v) for k, v in data.get("ranges", {}).items()}, **parse_ranges(ranges)},
        strategy=strategy or data.get("strategy", "grid"),
        trials=trials if trials is not None else data.get("trials"),
        seeds=seeds if seeds is not None else data.get("seeds", 3),
        seed=data.get("seed", 0),
        prompts=cases,
        objective=parse_objective(objective) if objective else (file_objective or {"mean_logprob": 1.0}),
        direction=direction or file_direction or "maximize",
    )


def show_results(console, results, spec) -> None:
    from decodelab.engine.experiments.sweep import best
    from decodelab.themes.heatmap import colour

    names = spec.swept()
    console.print(results_table(results, spec))
    if len(names) >= 2 and spec.strategy == "grid":
        console.print(grid_picture(results, names[0], names[1], spec.direction, colour))
    scatter(console, results)
    top = best(results, spec.direction)
    if top is not None:
        console.print(f"best: {top.config.summary()}  objective {top.objective:.4f}")


def scatter(console, results) -> None:
    picture = scatter_text(results, console.width)
    if picture is not None:
        console.print(picture)


@click.command()
@model_options
@click.option("--preset", "-p", "presets", multiple=True, metavar="NAME|PATH", help="The base config (default: neutral sampling).")
@click.option("--set", "sets", multiple=True, metavar="FIELD=VALUE", help="Fix a field of the base config.")
@click.option("--grid", multiple=True, metavar="FIELD=V1,V2,...", help="Values to try (repeatable).")
@click.option("--range", "ranges", multiple=True, metavar="FIELD=LOW:HIGH", help="A range for random/bayes (repeatable).")
@click.option("--strategy", type=click.Choice(["grid", "random", "bayes"]), default=None,
              help="grid (every combination), random, or bayes (optuna TPE). Default grid.")
@click.option("--trials", type=click.IntRange(1, 100_000), default=None, help="The budget of points (random, bayes).")
@click.option("--seeds", type=click.IntRange(1, 64), default=None, help="Seeds per point (default 3).")
@click.option("--prompt", default=None, help="One prompt.")
@click.option("--prompt-file", type=click.Path(dir_okay=False), default=None,
              help="Prompts, one per line, or .jsonl with 'prompt' and optional 'reference'.")
@click.option("--objective", default=None, metavar="METRIC[=W],...",
              help="Metric weights, e.g. distinct_2=1,mean_logprob=0.5 (default mean_logprob).")
@click.option("--direction", type=click.Choice(["maximize", "minimize"]), default=None,
              help="Whether a higher objective is better (maximize, the default) or a lower one (minimize).")
@click.option("--file", "sweep_file", type=click.Path(dir_okay=False), default=None, help="A TOML sweep file.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None, help="Write results as CSV.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Write results as JSON.")
@click.option("--force", is_flag=True, help="Overwrite --csv/--json files and the --save-best preset.")
@click.option("--save-best", default=None, metavar="NAME", help="Save the best point as a preset.")
@handle_errors
def sweep(presets, sets, grid, ranges, strategy, trials, seeds, prompt, prompt_file, objective, direction,
          sweep_file, csv_path, json_path, force, save_best, **model):
    """Search decoding settings (grid, random, Bayesian); every point is scored by metrics.

    \b
    Examples:
      decodelab sweep --prompt "The for statement" --grid temperature=0.3,0.7,1.1 --grid top_p=0.8,0.95
      decodelab sweep --prompt-file p.jsonl --strategy bayes --trials 24 --range temperature=0.1:1.5 \\
          --range min_p=0:0.3 --objective distinct_2=1,mean_logprob=0.3
    Ctrl-C stops early and keeps (and exports) the points done so far.
    """
    from decodelab.engine.experiments.sweep import best, run_sweep, to_csv, to_json
    from decodelab.engine.library.fileio import save_document
    from decodelab.engine.library.presets import check_user_preset_free

    if save_best:
        check_user_preset_free(save_best, overwrite=force)  # refused now, not after the whole sweep
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console()
    spec = build_spec(presets, sets, grid, ranges, strategy, trials, seeds, prompt, prompt_file, objective, direction,
                      sweep_file)
    spec.validate()
    if spec.strategy == "grid" and trials is not None:
        warn(f"--trials {trials} is ignored: a grid runs every combination ({spec.grid_size()} points); "
             "use --strategy random or bayes for a budget of points")
    for path in (csv_path, json_path):
        if path and not force:
            from pathlib import Path

            if Path(path).exists():
                raise ConfigError(f"{path} exists; pass --force to overwrite it")
    loaded = load_with_progress(model_spec(**model), api_key=model.get("api_key"))
    total = spec.grid_size() if spec.strategy == "grid" else spec.trials
    done = []
    interrupted = False
    with Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("points", total=total)

        def on_point(result):
            done.append(result)
            progress.advance(task)

        try:
            run_sweep(loaded, spec, on_point=on_point)
        except KeyboardInterrupt:
            interrupted = True
    if interrupted:
        console.print(f"[yellow]stopped early: keeping the {len(done)} points done so far[/]")
    if not done:
        raise ConfigError("no point finished, so there is nothing to show")
    show_results(console, done, spec)
    if csv_path:
        save_document(csv_path, to_csv(done, spec), "CSV", overwrite=force)
        console.print(f"wrote {csv_path}")
    if json_path:
        save_document(json_path, to_json(done, spec), "JSON", overwrite=force)
        console.print(f"wrote {json_path}")
    top = best(done, spec.direction)
    if save_best and top is not None:
        from decodelab.engine.library.presets import save_user_preset

        config = top.config.replace(seed=None, description=f"best of a {spec.strategy} sweep: objective "
                                    f"{spec.objective} = {top.objective:.4f} ({spec.direction})")
        console.print(f"saved {save_best} -> {save_user_preset(config, save_best, overwrite=force)}")
