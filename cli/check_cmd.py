"""`decodelab check`: checks of a model or server; `check determinism` asks whether a seeded request gives the same
tokens alone and among concurrent others (engine/experiments/determinism.py)."""

from __future__ import annotations

import json
import sys

import click

from .common import handle_errors, load_with_progress, model_options, model_spec


@click.group()
def check() -> None:
    """Checks of a model or server (each has its own --help)."""


@check.command()
@model_options
@click.option("--concurrency", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Requests at once in the busy runs: the probe and this many minus one others (1: the probe twice).")
@click.option("--rounds", type=click.IntRange(1, 100), default=3, show_default=True,
              help="How many times the probe runs alone and then among the others.")
@click.option("--max-new-tokens", type=click.IntRange(1, 4096), default=32, show_default=True,
              help="Tokens per request.")
@click.option("--prompt", default=None, help="The probe's prompt (default: a short instruction).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--strict", is_flag=True, help="Exit 1 when any round's tokens differ.")
@handle_errors
def determinism(concurrency, rounds, max_new_tokens, prompt, as_json, strict, **model):
    """Does a seeded request give the same tokens alone and among others?

    The probe (a seeded sampling config) runs alone, then beside CONCURRENCY - 1 other requests (other prompts
    and settings): in one batch on a local model, as simultaneous requests on a server (--model URL: decodelab
    serve, vLLM, llama.cpp's server, any OpenAI-compatible one). Each round says whether the tokens were equal,
    where they first parted, and the largest logprob difference before that.

    \b
    Examples:
      decodelab check determinism --model demo
      decodelab check determinism --model http://localhost:8080/v1 --concurrency 4 --strict
      decodelab check determinism --model http://gpu-node:8000/v1 --server-kind vllm --json
    """
    from decodelab.engine.experiments.determinism import PROBE_PROMPT, check_determinism

    backend = load_with_progress(model_spec(**model), quiet=as_json, api_key=model.get("api_key"))
    say = None if as_json else (lambda message: click.echo(message, err=True))
    report = check_determinism(backend, concurrency=concurrency, rounds=rounds, max_new_tokens=max_new_tokens,
                               prompt=prompt or PROBE_PROMPT, progress=say)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        from rich.console import Console

        from decodelab.render.tables import determinism_table

        Console().print(determinism_table(report))
        click.echo(verdict(report))
    if strict and not report.deterministic:
        sys.exit(1)



def verdict(report) -> str:
    if report.deterministic:
        return "deterministic: the probe gave the same tokens alone and among others in every round"
    parted = [r for r in report.rounds if not r.equal]
    if all(r.cut_short for r in parted):
        return ("NOT deterministic as served: the server cut the probe short while other requests came in (it "
                "stops a running request for a new one; llama-cpp-python's server does so unless started with "
                "--interrupt_requests false), so its tokens could not be compared")
    return "NOT deterministic: the probe's tokens changed when other requests ran beside it"
