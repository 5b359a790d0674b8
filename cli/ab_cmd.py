"""`decodelab ab`: blind A/B voting between configs in the terminal, with a tally saved after every vote."""

from __future__ import annotations

from pathlib import Path

import click
from decodelab.engine.config import ConfigError
from decodelab.render.tables import tally_table

from .common import handle_errors, load_with_progress, model_options, model_spec, resolve_configs


def read_prompts(prompt: str | None, prompt_file: str | None) -> list[str]:
    from decodelab.engine.experiments.sweep import read_prompt_cases
    from decodelab.engine.library.fileio import load_document

    if prompt is not None and prompt_file is not None:
        raise click.UsageError("give --prompt or --prompt-file, not both")
    if prompt_file:
        cases = read_prompt_cases(load_document(prompt_file, "prompt file"), prompt_file)
        if not cases:
            raise ConfigError(f"prompt file {prompt_file} holds no prompts")
        return [c.text for c in cases]
    if prompt is None:
        raise click.UsageError("give a prompt with --prompt TEXT or --prompt-file FILE")
    return [prompt]


@click.command()
@model_options
@click.option("--preset", "-p", "presets", multiple=True, metavar="NAME|PATH", help="A contender (2 or more).")
@click.option("--set", "sets", multiple=True, metavar="FIELD=VALUE", help="Override a field in every contender.")
@click.option("--prompt", default=None, help="The prompt for every round.")
@click.option("--prompt-file", type=click.Path(dir_okay=False), default=None,
              help="Prompts, one per line (or .jsonl with a 'prompt' key); rounds cycle through them.")
@click.option("--rounds", type=click.IntRange(1, 10_000), default=None, help="Rounds to play (default: one per prompt, at least 5).")
@click.option("--tally", "tally_path", type=click.Path(dir_okay=False), default="decodelab-ab.json", show_default=True,
              help="Where the tally is saved after every vote; an existing one is resumed.")
@click.option("--new", is_flag=True, help="Start a new tally even if the file exists (it is replaced).")
@click.option("--save-winner", default=None, metavar="NAME", help="At the end, save the leader as a preset.")
@click.option("--force", is_flag=True, help="Overwrite the --save-winner preset if it exists.")
@handle_errors
def ab(presets, sets, prompt, prompt_file, rounds, tally_path, new, save_winner, force, **model):
    """Blind A/B voting: shuffled outputs labelled A, B, C; vote with one key; a saved tally.

    Keys: a/b/c... the best one, t tie, s skip, q quit. Identities are revealed after each vote,
    and the tally (wins, ties, win rate with a 95% Wilson interval, Bradley-Terry rating) is saved.
    """
    from decodelab.engine.experiments.arena import Tally, load_tally, play_rounds, save_tally
    from rich.columns import Columns
    from rich.console import Console
    from rich.panel import Panel

    from decodelab.engine.library.presets import check_user_preset_free

    if save_winner:
        check_user_preset_free(save_winner, overwrite=force)  # refused now, not after the voting
    console = Console()
    prompts = read_prompts(prompt, prompt_file)
    if Path(tally_path).exists() and not new:
        tally = load_tally(tally_path)
        if presets and [c.name for c in resolve_configs(presets, sets, None)] != [c.name for c in tally.configs]:
            raise ConfigError(f"{tally_path} holds a tally of {', '.join(tally.names)}; pass --new to replace it "
                              "or --tally to use another file")
        console.print(f"resuming {tally_path}: {len(tally.votes)} votes so far")
    else:
        if len(presets) < 2:
            raise ConfigError("blind A/B needs at least 2 presets: -p A -p B")
        tally = Tally(resolve_configs(presets, sets, None))
    loaded = load_with_progress(model_spec(**model), api_key=model.get("api_key"))
    total = rounds or max(5, len(prompts))
    start = len(tally.votes)
    for rnd in play_rounds(loaded, tally, prompts, start, total):  # rounds decode 8 prompts at a time
        number, text = rnd.number, rnd.prompt
        console.rule(f"round {number + 1}")
        console.print(f"[b]prompt:[/b] {text.strip()[:300]}")
        console.print(Columns([Panel(body or "(empty)", title=f"[b]{label}[/b]") for label, body in rnd.shown()],
                              equal=True, expand=True))
        keys = [label.lower() for label in rnd.labels]
        console.print(f"vote: {'/'.join(keys)} best · t tie · s skip · q quit > ", end="")
        key = ""
        while key not in keys + ["t", "s", "q"]:
            key = click.getchar().lower()
        console.print(key)
        if key == "q":
            break
        choice = {"t": "tie", "s": "skip"}.get(key, key.upper())
        tally.record(rnd, choice)
        save_tally(tally, tally_path)
        console.print("revealed: " + " · ".join(tally.reveal(rnd)))
        console.print(tally_table(tally))
    leader = tally.leader()
    if leader is not None:
        console.print(f"leader: [b]{tally.names[leader]}[/b] — {tally.describe(leader)}")
        if save_winner:
            from decodelab.engine.library.presets import save_user_preset

            config = tally.configs[leader].replace(description=tally.describe(leader))
            console.print(f"saved {save_winner} -> {save_user_preset(config, save_winner, overwrite=force)}")
    console.print(f"tally saved in {tally_path}")
