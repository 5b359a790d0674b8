"""The `decodelab` command: the TUI by default, plus headless run, presets and bench."""

from __future__ import annotations

import json
import threading

import click

from .common import (
    DEFAULT_PRESETS,
    CommandGroup,
    completion_record,
    handle_errors,
    load_with_progress,
    model_options,
    model_spec,
    read_conversation,
    read_prompt,
    resolve_configs,
    split_pane_models,
    warn,
)


@click.group(cls=CommandGroup, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@model_options
@click.option("--preset", "-p", "presets", multiple=True, metavar="NAME|PATH[@MODEL]",
              help="A pane's preset (repeat for more panes). Default: greedy, balanced, creative. NAME@MODEL puts the "
                   "pane on a model of its own, e.g. greedy@smollm2,dtype=bfloat16 (shift+m in the app).")
@click.option("--prompt", default=None, help="Prompt text; with it, the comparison runs at start.")
@click.option("--prompt-file", type=click.Path(dir_okay=False), default=None, help="Read the prompt from a file.")
@click.option("--system", default=None, metavar="TEXT", help="A system prompt (shift+p changes it in the app).")
@click.option("--set", "sets", multiple=True, metavar="FIELD=VALUE",
              help="Set a field in every pane (repeatable), e.g. --set max_new_tokens=32; = in the app does the same.")
@click.option("--no-stages", "no_stages", is_flag=True,
              help="Do not record what each sampler stage did (the inspector's chain, f's dead settings); "
                   "saves about a tenth of each decode step on a CPU.")
@click.option("--fresh", is_flag=True,
              help="Start with the default panes instead of restoring the last workspace (the app keeps it in an "
                   "autosave; it is set aside, and ctrl+o opens it).")
@click.option("--resume", is_flag=True,
              help="Restore the last workspace when there is one, even when the command line names panes or a prompt "
                   "(they are used only when there is nothing to restore). `make run` passes it.")
@click.pass_context
@handle_errors
def main(ctx, presets, prompt, prompt_file, system, sets, no_stages, fresh, resume, **model):
    """decodelab: one prompt, many decoding configs, side by side.

    With no command, opens the playground TUI on SmolLM2 when installed, else the demo model (or --model):
    ctrl+r runs every pane, ctrl+n sends the next message of a conversation, Esc cancels a run, ctrl+p lists
    every action, ? shows every key, ctrl+q quits. The workspace is autosaved and comes back on the next start
    (unless the command line names presets, a prompt, a system prompt or --set, or gives --fresh; --resume restores
    it even then). A workspace not restored is set aside, never overwritten: ctrl+o offers the last ten.
    Each command below has its own --help.
    """
    if ctx.invoked_subcommand is not None:
        return
    spec = model_spec(**model)
    names, pane_models = split_pane_models(presets)
    configs = resolve_configs(names, sets, None, DEFAULT_PRESETS)
    from decodelab.engine.backends.pool import load_key, spec_from_text

    specs = [spec_from_text(m, spec) if m else None for m in pane_models]
    specs = [s if s is None or load_key(s) != load_key(spec) else None for s in specs]
    text = read_prompt(prompt, prompt_file, required=False)
    from decodelab.engine.library.sessions import autosave_path
    from decodelab.tui.app import run_app

    if fresh and resume:
        raise click.UsageError("--fresh and --resume ask for opposite starts: give one of them")
    restore = not (fresh or presets or text is not None or system or sets)
    if resume and autosave_path().exists():  # the last workspace wins over the command line's panes and prompt
        restore, text = True, None
    run_app(spec=spec, configs=configs, prompt=text, run_at_start=text is not None, api_key=model.get("api_key"),
            system=system, trace_stages=not no_stages, pane_models=specs, restore=restore)


@main.command()
@model_options
@click.option("--prompt", default=None, help="Prompt text.")
@click.option("--prompt-file", type=click.Path(dir_okay=False), default=None, help="Read the prompt from a file.")
@click.option("--system", default=None, metavar="TEXT",
              help="A system prompt (through the model's chat template).")
@click.option("--messages", "messages_file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="A conversation in the OpenAI messages format (a JSON list, or an object with \"messages\"); "
                   "--prompt then adds a user message after it. A last assistant message is continued.")
@click.option("--preset", "-p", "presets", multiple=True, metavar="NAME|PATH[@MODEL]",
              help="A pane's preset (repeatable). NAME@MODEL runs the pane on a model of its own: anything --model "
                   "takes, then load settings after commas, e.g. greedy@smollm2,dtype=bfloat16, "
                   "greedy@smollm2,quantization=4bit, greedy@smollm2,engine=llama.cpp, greedy@demo.")
@click.option("--set", "sets", multiple=True, metavar="FIELD=VALUE",
              help="Override a field in every preset (repeatable); with no preset, builds an ad-hoc config.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=None, help="Seed every config with this.")
@click.option("--reference", default=None, metavar="PANE",
              help="With panes on several models: the pane (its name or number, from 1) the others are measured "
                   "against: KL per token, top-1 agreement, perplexities (default: the first pane).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--jsonl", "as_jsonl", is_flag=True, help="Print one JSON record per config.")
@click.option("--heatmap", type=click.Choice(["prob", "prob_processed", "rank", "entropy", "surprisal"]),
              default=None, is_flag=False, flag_value="prob", help="Colour tokens by a measure (default prob).")
@click.option("--top", type=click.IntRange(0, 50), default=5, show_default=True,
              help="Alternatives per token in JSON output.")
@click.option("--stages", is_flag=True,
              help="Trace every sampler stage: say which settings changed the outcome and which never did; "
                   "JSON gets each token's stage-by-stage probabilities and a stage_report per pane.")
@handle_errors
def run(prompt, prompt_file, system, messages_file, presets, sets, seed, reference, as_json, as_jsonl, heatmap, top,
        stages, **model):
    """Run the batched comparison without the TUI and print every pane.

    Exits 1 when any pane ended in an error (each is named on stderr).

    \b
    Examples:
      decodelab run --prompt "The for statement" -p greedy -p creative
      decodelab run --prompt "Once" --set temperature=0.9 --set top_p=0.95 --seed 7 --json
      decodelab run --system "Answer in one line." --prompt "Why is the sky blue?" -p greedy -p creative
      decodelab run --messages chat.json --prompt "And in winter?" --json   # JSON: each pane's messages
      decodelab run --prompt "Once" --set top_k=40 --set min_p=0.1 --stages    # which settings mattered
      decodelab run --prompt "Once" -p greedy -p greedy@smollm2,dtype=bfloat16 -p greedy@smollm2,engine=llama.cpp
    """
    if as_json and as_jsonl:
        raise click.UsageError("choose --json or --jsonl, not both")
    text = read_conversation(prompt, prompt_file, system, messages_file)
    names, pane_models = split_pane_models(presets)
    configs = resolve_configs(names, sets, seed)
    quiet = as_json or as_jsonl
    base = model_spec(**model)
    from decodelab.engine.backends.pool import spec_from_text, spec_label
    from decodelab.engine.session import Job, Session, completions_of

    specs = [spec_from_text(m, base) if m else base for m in pane_models] if names else [base] * len(configs)
    several = len(set(specs)) > 1
    index = pick_pane(reference, [c.name for c in configs])  # a wrong --reference is said before anything loads
    session = Session()
    backends = {}
    for spec in dict.fromkeys(specs):  # each distinct model once, in pane order
        rows = sum(s == spec for s in specs)
        backends[spec] = load_with_progress(spec, quiet=quiet, api_key=model.get("api_key"),
                                            loader=lambda sp, progress, api_key=None, rows=rows: session.model(
                                                sp, progress, api_key, rows=rows,
                                                tokens=max(c.max_new_tokens for c in configs) + 512))
    from decodelab.engine.experiments.stage_use import inert_notes

    for config in configs if not stages else ():  # with --stages the panels list them
        for note in inert_notes(config):
            warn(f"pane {config.name!r}: {note}")
    if stages and not all(b.can("stages") for b in backends.values()):
        warn("a remote server applies the sampler stages itself, so its panes have no trace")
    jobs = [Job(b, text, [c for c, s in zip(configs, specs) if s == spec]) for spec, b in backends.items()]
    for job in jobs:  # every mistake said before anything runs, in the engine's one wording
        session.check(job.backend, job.prompt, job.configs)
    outcomes = session.run(jobs, cancel=threading.Event(), top_alternatives=max(top, 10), trace_stages=stages)
    done = {spec: iter(completions_of(out)) for spec, out in zip(backends, outcomes)}
    completions = [next(done[spec]) for spec in specs]
    labels = [spec_label(s) for s in specs] if several else None
    agreement = pane_agreement(index, completions, specs, backends, text) if several or reference else None
    if as_json:
        doc = {"model": " | ".join(b.describe() for b in backends.values()), "prompt": text,
               "completions": [completion_record(text, c, top, label) for c, label in
                               zip(completions, labels or [None] * len(completions))]}
        if agreement is not None:
            doc["agreement"] = agreement
        click.echo(json.dumps(doc, ensure_ascii=False))
    elif as_jsonl:
        for c, label in zip(completions, labels or [None] * len(completions)):
            click.echo(json.dumps(completion_record(text, c, top, label), ensure_ascii=False))
        if agreement is not None:  # the last line: the figures against the reference pane
            click.echo(json.dumps({"agreement": agreement}, ensure_ascii=False))
    else:
        from rich.console import Console

        from .render import print_agreement, print_completions

        console = Console()
        print_completions(console, text, completions, heatmap, labels)
        if agreement is not None:
            print_agreement(console, agreement)
    for c in completions:
        if c.extra.get("incomplete"):
            warn(f"pane {c.config.name!r}: {c.extra['incomplete']}")
    failed = [c for c in completions if c.stop_reason == "error" or c.extra.get("error")]
    for c in failed:
        warn(f"pane {c.config.name!r} ended in an error: {c.extra.get('error') or 'no reason given'}")
    if failed:
        raise SystemExit(1)


def pane_agreement(index: int, completions, specs, backends, prompt) -> dict:
    """The agreement figures of every pane against the reference pane (experiments/agreement.py), as JSON."""
    from decodelab.engine.backends.pool import spec_label
    from decodelab.engine.experiments.agreement import compare, scorable

    ref_backend = backends[specs[index]]
    panes = []
    for i, (c, spec) in enumerate(zip(completions, specs)):
        if i == index:
            continue
        entry = {"pane": i + 1, "name": c.config.name, "model": spec_label(spec)}
        if not (scorable(ref_backend) and scorable(backends[spec])):
            entry["note"] = "a remote server gives no full distribution: no figures"
        elif c.stop_reason == "error" or completions[index].stop_reason == "error":
            entry["note"] = "a pane ended in an error: no figures"
        else:
            entry.update(compare(ref_backend, completions[index], backends[spec], c, prompt).to_dict())
            entry.update({"pane": i + 1, "name": c.config.name, "model": spec_label(spec)})
        panes.append(entry)
    return {"reference": index + 1, "reference_name": completions[index].config.name,
            "reference_model": spec_label(specs[index]), "panes": panes}


def pick_pane(reference, names: list[str]) -> int:
    """--reference: a pane's number (from 1) or its name, which must be one pane's."""
    if reference is None:
        return 0
    if reference.isdigit() and 1 <= int(reference) <= len(names):
        return int(reference) - 1
    if names.count(reference) > 1:
        raise click.BadParameter(f"{names.count(reference)} panes are called {reference!r}: give the pane's number "
                                 f"(1 to {len(names)})", param_hint="--reference")
    if reference in names:
        return names.index(reference)
    raise click.BadParameter(f"{reference!r} is not a pane: give a name ({', '.join(dict.fromkeys(names))}) or a "
                             f"number from 1 to {len(names)}", param_hint="--reference")


@main.command()
@model_options
@click.option("--shape", type=click.Choice(["cpu-40m", "llama-1b", "qwen-1.5b", "llama-8b"]), default=None,
              help="Benchmark a random-weight model of this shape (default: cpu-40m on CPU, llama-1b on GPU).")
@click.option("--real", is_flag=True,
              help="Benchmark the --model (default: SmolLM2 when installed) instead of a random-weight shape; "
                   "a GGUF model also times llama-cpp-python in-process on the same file.")
@click.option("--new-tokens", type=click.IntRange(1, 4096), default=64, show_default=True,
              help="Tokens each config generates per timed run.")
@click.option("--repeats", type=click.IntRange(1, 50), default=3, show_default=True,
              help="Timed runs per measurement; the report gives their median.")
@handle_errors
def bench(shape, real, new_tokens, repeats, **model):
    """Time one config alone, 8 batched and 8 sequential HF generate calls, and print the ratios.

    \b
    With --real on a GGUF model (SmolLM2 by default), also 8 sequential llama-cpp-python completions of
    the same configs on the same file, without and with top-10 logprobs.
    Example: decodelab bench --real --repeats 1
    """
    from decodelab.engine.experiments.benchmark import random_model, run_benchmark

    spec = model_spec(**model)
    if real:
        loaded = load_with_progress(spec, api_key=model.get("api_key"))
    else:
        from decodelab.engine.backends.loading import resolve_device

        device = resolve_device(spec)
        loaded = random_model(shape or ("llama-1b" if device.type == "cuda" else "cpu-40m"), str(device), spec.dtype)
    click.echo(f"benchmarking {loaded.describe()} ...", err=True)
    result = run_benchmark(loaded, new_tokens=new_tokens, repeats=repeats,
                           progress=lambda msg: click.echo(msg, err=True))
    click.echo(result.report())


from .ab_cmd import ab  # noqa: E402 - the commands live in their own modules
from .check_cmd import check  # noqa: E402
from .models_cmd import models  # noqa: E402
from .presets_cmd import presets  # noqa: E402
from .serve_cmd import serve  # noqa: E402
from .sweep_cmd import sweep  # noqa: E402

for command in (presets, ab, sweep, serve, models, check):
    main.add_command(command)
