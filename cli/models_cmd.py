"""`decodelab models`: what can be loaded here without a network."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap

import click

from .common import handle_errors


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON list.")
@click.option("--hf-cache", default=None, type=click.Path(file_okay=False),
              help="The Hugging Face cache folder to scan (default: HF_HUB_CACHE or ~/.cache/huggingface/hub).")
@handle_errors
def models(as_json, hf_cache):
    """List the models you can pass to --model: SmolLM2 (when installed), the bundled demo model, models in
    the local Hugging Face cache, and GGUF files converted earlier. Nothing is downloaded.

    \b
    Examples:
      decodelab models
      decodelab --model "$(decodelab models --json | jq -r '.[0].name')"
    """
    from decodelab.engine.backends.catalog import available_models, format_size

    entries = available_models(hf_cache)
    if as_json:
        click.echo(json.dumps([e.to_dict() for e in entries], ensure_ascii=False))
        return
    width = max([len("MODEL (--model)")] + [len(e.name) for e in entries])
    rows = [(e.name, f"{e.kind:<8}  {format_size(e.size_bytes):>9}  {e.detail}") for e in entries]
    if width + 2 + max(len(rest) for _, rest in rows) <= shutil.get_terminal_size().columns:
        click.echo(f"{'MODEL (--model)':<{width}}  {'KIND':<8}  {'SIZE':>9}  DETAIL")
        for name, rest in rows:
            click.echo(f"{name:<{width}}  {rest}")
    else:  # too wide for the terminal (long paths at 80 columns): the name on its own line, the rest below it
        columns = max(40, shutil.get_terminal_size().columns)
        for name, rest in rows:
            click.echo(name)
            click.echo(textwrap.fill(rest, columns, initial_indent="    ", subsequent_indent="    ",
                                     break_long_words=True, break_on_hyphens=False))
    if not any(e.kind == "hf-cache" for e in entries):
        sys.stdout.flush()  # the rows first, then the hint, also when stdout is a pipe
        click.echo("(no models in the local Hugging Face cache; download one elsewhere with `hf download ORG/NAME`)",
                   err=True)
