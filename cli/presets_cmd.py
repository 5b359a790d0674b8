"""`decodelab presets`: list, show, save, delete, diff, path, export and import."""

from __future__ import annotations

from pathlib import Path

import click
from decodelab.engine.config import DEFAULTS, FIELD_NAMES, ConfigError

from .common import handle_errors, parse_set


def save_forcing(config, name: str, force: bool):
    """Save into the library; an existing preset is kept unless --force, and the error says so."""
    from decodelab.engine.library.presets import PresetExistsError, save_user_preset

    try:
        return save_user_preset(config, name, overwrite=force)
    except PresetExistsError:
        from decodelab.engine.library.presets import user_preset_dir

        raise ConfigError(f"your preset {name!r} already exists ({user_preset_dir() / (name + '.toml')}); "
                          "pass --force to overwrite it, or choose another name") from None


def note_shadowing(name: str) -> None:
    from decodelab.engine.library.presets import builtin_preset_dir

    if (builtin_preset_dir() / f"{name}.toml").is_file():
        click.echo(f"note: your {name!r} now shadows the built-in preset of that name everywhere "
                   f"(`decodelab presets delete {name}` brings the built-in back)", err=True)


@click.group()
def presets():
    """Manage decoding presets: the built-ins and your own library."""


@presets.command("list")
@handle_errors
def list_cmd():
    """List every preset by name (your presets shadow built-ins of the same name)."""
    from decodelab.engine.library.presets import list_presets, load_preset

    for entry in list_presets():
        try:
            summary = load_preset(entry.path).summary()
        except ConfigError as exc:
            summary = f"(invalid: {exc})"
        click.echo(f"{entry.name:<20} {entry.source:<8} {summary}")


@presets.command()
@click.argument("name")
@handle_errors
def show(name):
    """Print a preset as TOML."""
    from decodelab.engine.library.presets import dumps_preset, find_preset

    click.echo(dumps_preset(find_preset(name)), nl=False)


@presets.command()
@click.argument("name")
@click.option("--from", "base", default=None, metavar="NAME|PATH", help="Start from this preset (default: neutral).")
@click.option("--set", "sets", multiple=True, metavar="FIELD=VALUE", help="Set a field (repeatable).")
@click.option("--force", is_flag=True, help="Overwrite an existing user preset of that name.")
@handle_errors
def save(name, base, sets, force):
    """Save a preset into your library."""
    from decodelab.engine.config import DecodingConfig
    from decodelab.engine.library.presets import find_preset

    config = find_preset(base) if base else DecodingConfig()
    changes = parse_set(sets)
    if base and "description" not in changes:  # the description was the old preset's, not this one's
        changes["description"] = ""
    config = config.replace(**changes, name=name)
    click.echo(f"saved {name} -> {save_forcing(config, name, force)}")
    note_shadowing(name)
    from decodelab.engine.experiments.stage_use import inert_notes

    for note in inert_notes(config):  # e.g. p_less on a greedy preset: saved as asked, and said
        click.echo(f"note: {note}", err=True)


@presets.command()
@click.argument("name")
@handle_errors
def delete(name):
    """Delete one of your presets (built-ins stay)."""
    from decodelab.engine.library.presets import delete_user_preset

    click.echo(f"deleted {delete_user_preset(name)}")


@presets.command()
@click.argument("a")
@click.argument("b")
@handle_errors
def diff(a, b):
    """Show the fields where two presets differ."""
    from decodelab.engine.library.presets import find_preset

    left, right = find_preset(a), find_preset(b)
    rows = [(f, getattr(left, f), getattr(right, f)) for f in FIELD_NAMES
            if f not in ("name", "description") and getattr(left, f) != getattr(right, f)]
    if not rows:
        click.echo(f"{a} and {b} decode the same way")
        return
    def shown(field, value) -> str:
        return f"{value!r}" + (" (default)" if value == getattr(DEFAULTS, field) else "")

    lefts = [shown(f, x) for f, x, _ in rows]
    width = max(len(f) for f, _, _ in rows + [("field", 0, 0)])
    middle = max(len(text) for text in lefts + [a])
    click.echo(f"{'field':<{width}}  {a:<{middle}}  ->  {b}")
    for (field, _, y), left in zip(rows, lefts):
        click.echo(f"{field:<{width}}  {left:<{middle}}  ->  {shown(field, y)}")


@presets.command()
@handle_errors
def path():
    """Print the folder that holds your presets."""
    from decodelab.engine.library.presets import user_preset_dir

    click.echo(str(user_preset_dir()))


@presets.command("export")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["hf", "vllm", "openai", "llamacpp", "webui"]), required=True,
              help="hf: generation_config.json; vllm: SamplingParams kwargs; openai: request params; "
                   "llamacpp: command-line flags; webui: a text-generation-webui preset (YAML).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write to this file (never overwritten unless --force) instead of stdout.")
@click.option("--force", is_flag=True, help="Overwrite --output if it exists.")
@handle_errors
def export_cmd(name, fmt, output, force):
    """Export a preset for another stack; settings it lacks are listed on stderr."""
    from decodelab.engine.dialects import export_text
    from decodelab.engine.library.fileio import save_document
    from decodelab.engine.library.presets import find_preset

    text, notes = export_text(find_preset(name), fmt)
    if output:
        save_document(output, text, "output file", overwrite=force, hint="pass --force to overwrite it")
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)
    for note in notes:
        click.echo(f"note: {note}", err=True)


@presets.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--name", default=None, help="The preset's name (default: the file name).")
@click.option("--save/--no-save", default=True, show_default=True, help="Save into your library.")
@click.option("--force", is_flag=True, help="Overwrite an existing user preset of that name.")
@handle_errors
def import_cmd(file, name, save, force):
    """Import a transformers generation_config.json or a text-generation-webui YAML preset."""
    from decodelab.engine.dialects import import_preset_text, preset_name
    from decodelab.engine.library.fileio import load_document
    from decodelab.engine.library.presets import check_preset_name, dumps_preset

    text = load_document(file, "file")
    stem = Path(file).stem
    default = Path(file).parent.name if stem == "generation_config" else stem
    name = check_preset_name(name or preset_name(default))  # "Verbose (Beam Search).yaml" -> Verbose-Beam-Search
    converted = import_preset_text(text, file, name)
    for note in converted.notes:
        click.echo(f"note: {note}", err=True)
    if save:
        click.echo(f"saved {name} -> {save_forcing(converted.data, name, force)}")
        note_shadowing(name)
    else:
        click.echo(dumps_preset(converted.data), nl=False)
