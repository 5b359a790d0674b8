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
@click.option("--prune", is_flag=True,
              help="Delete the cached GGUF conversions (and tokenizer copies) whose GGUF file is gone, and unfinished "
                   "ones, listing each with its size.")
@click.option("--dry-run", "dry_run", is_flag=True, help="With --prune: list what it would delete, delete nothing.")
@handle_errors
def models(as_json, hf_cache, prune, dry_run):
    """List the models you can pass to --model: SmolLM2 (when installed), the bundled demo model, models in
    the local Hugging Face cache, and GGUF files converted earlier. Nothing is downloaded.

    \b
    Examples:
      decodelab models
      decodelab models --prune --dry-run     # what old conversions take, and what --prune frees
      decodelab --model "$(decodelab models --json | jq -r '.[0].name')"
    """
    from decodelab.engine.backends.catalog import available_models, format_size

    if dry_run and not prune:
        raise click.UsageError("--dry-run goes with --prune")
    if prune:
        return prune_conversions(dry_run, as_json)

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


def prune_conversions(dry_run: bool, as_json: bool) -> None:
    from decodelab.engine.backends.catalog import format_size
    from decodelab.engine.backends.gguf import cache_root, prunable, remove_conversion

    found = prunable()
    done, failed = [], []
    for folder, size, why in found:
        if dry_run:
            done.append((folder, size, why))
            continue
        try:
            remove_conversion(folder)
            done.append((folder, size, why))
        except OSError as exc:
            failed.append((folder, size, f"{why}; not deleted: {exc.strerror or exc}"))
    total = sum(size for _, size, _ in done)
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, "freed_bytes": 0 if dry_run else total,
                               "folders": [{"folder": str(f), "bytes": n, "why": w, "deleted": not dry_run}
                                           for f, n, w in done]
                                          + [{"folder": str(f), "bytes": n, "why": w, "deleted": False}
                                             for f, n, w in failed]}))
    else:
        for folder, size, why in done + failed:
            click.echo(f"{format_size(size):>9}  {folder}\n           {why}")
        verb = "would free" if dry_run else "freed"
        if found:
            click.echo(f"{len(done)} folder{'s' if len(done) != 1 else ''} in {cache_root()}: {verb} "
                       f"{format_size(total)}" + (" (run without --dry-run to delete them)" if dry_run else ""))
        else:
            click.echo(f"nothing to prune in {cache_root()}: every conversion's GGUF file is still there")
    if failed:
        raise SystemExit(1)
