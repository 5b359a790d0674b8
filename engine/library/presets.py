"""TOML decoding presets: text and file round trips, the built-in presets, and the user's library."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import tomli_w

from ..config import ConfigError, DecodingConfig, unknown_key_error
from .fileio import load_document, save_document

SCHEMA_VERSION = 1
HEADER = "# decodelab decoding preset\n"
MODEL_OPTIONS = {"trust_remote_code", "model", "path", "dtype", "device", "device_map", "quantization",
                 "low_cpu_mem_usage", "revision"}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class PresetExistsError(ConfigError):
    """Saving would overwrite an existing preset and overwrite was not asked for."""


def dumps_preset(config: DecodingConfig) -> str:
    """TOML text for a config: a comment header, the schema key, then only the non-default fields."""
    body = {"schema": SCHEMA_VERSION, **config.to_dict(only_changed=True)}
    return HEADER + f"# {config.summary()}\n" + tomli_w.dumps(body)


def loads_preset(text: str, *, default_name: str | None = None, where: str = "preset") -> DecodingConfig:
    """Parse preset text. Every problem raises ConfigError with a message that says what to fix."""
    if not isinstance(text, str):
        raise ConfigError(f"{where} must be text, not {type(text).__name__}")
    if "\x00" in text:
        raise ConfigError(f"{where} is binary data, not TOML text")
    if not text.strip():
        raise ConfigError(f"{where} is empty: a preset needs at least 'schema = {SCHEMA_VERSION}'")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}") from None
    schema = data.pop("schema", SCHEMA_VERSION)
    if schema != SCHEMA_VERSION or isinstance(schema, bool):
        raise ConfigError(
            f"{where} has schema = {schema!r}; this decodelab reads schema {SCHEMA_VERSION}. "
            "Upgrade decodelab or rewrite the preset."
        )
    for key, value in data.items():
        if key in MODEL_OPTIONS:
            raise ConfigError(
                f"{where} sets {key!r}: presets hold decoding settings only. "
                "Model-loading options belong in a model profile or on the command line."
            )
        if isinstance(value, dict) and key not in ("logit_bias", "json_schema"):
            raise ConfigError(f"{where}: [{key}] tables are not part of a preset; put fields at the top level")
    if "name" not in data and default_name:
        data["name"] = default_name
    try:
        return DecodingConfig.from_dict(data, where=where)
    except ConfigError as exc:
        if where in str(exc):
            raise
        raise ConfigError(f"{where}: {exc}", field=exc.field) from None


def load_preset(path: str | os.PathLike) -> DecodingConfig:
    """Read a preset file; its name defaults to the file name without .toml."""
    path = Path(path)
    return loads_preset(load_document(path, "preset"), default_name=path.stem, where=f"preset {path}")


def save_preset(config: DecodingConfig, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a preset atomically. An existing file is kept unless overwrite is true."""
    return save_document(path, dumps_preset(config), "preset", overwrite=overwrite, exists_error=PresetExistsError)


# -- the library: built-ins shipped in the package, and the user's own -----------------------------

@dataclass(frozen=True)
class PresetEntry:
    """One preset found in the library."""

    name: str
    source: str  # "user" or "builtin"
    path: Path


def user_preset_dir() -> Path:
    """Where the user's presets live: $DECODELAB_CONFIG_DIR/presets, else the platform config dir."""
    override = os.environ.get("DECODELAB_CONFIG_DIR")
    if override:
        return Path(override) / "presets"
    import platformdirs

    return Path(platformdirs.user_config_dir("decodelab", appauthor=False)) / "presets"


def builtin_preset_dir() -> Path:
    return Path(str(resources.files("decodelab.engine.library") / "builtin_presets"))


def list_presets() -> list[PresetEntry]:
    """All presets by name; a user preset shadows a built-in of the same name."""
    found: dict[str, PresetEntry] = {}
    for source, folder in (("builtin", builtin_preset_dir()), ("user", user_preset_dir())):
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                found[path.stem] = PresetEntry(path.stem, source, path)
    return sorted(found.values(), key=lambda e: (e.source != "builtin", e.name))


def check_preset_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfigError(
            f"preset name {name!r} is invalid: use 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit"
        )
    return name


def find_preset(name_or_path: str | os.PathLike) -> DecodingConfig:
    """Look up a preset by library name (user first) or by file path."""
    text = str(name_or_path)
    entries = {e.name: e for e in list_presets()}
    if text in entries:
        return load_preset(entries[text].path)
    if text.endswith(".toml") or os.sep in text or Path(text).is_file():
        return load_preset(text)
    import difflib

    close = difflib.get_close_matches(text, list(entries), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"no preset named {text!r}.{hint} Known presets: {', '.join(sorted(entries))}")


def check_user_preset_free(name: str, overwrite: bool = False) -> None:
    """PresetExistsError now (before an hour-long sweep, say) when saving under name later would be refused."""
    name = check_preset_name(name)
    if not overwrite and (user_preset_dir() / f"{name}.toml").exists():
        raise PresetExistsError(f"you already have a preset named {name!r}: pass --force to overwrite it, or "
                                "choose another name")


def save_user_preset(config: DecodingConfig, name: str | None = None, *, overwrite: bool = False) -> Path:
    """Save a config into the user's library under name (default: its own name)."""
    name = check_preset_name(name or config.name)
    if config.name != name:
        config = config.replace(name=name)
    return save_preset(config, user_preset_dir() / f"{name}.toml", overwrite=overwrite)


def delete_user_preset(name: str) -> Path:
    """Remove a preset from the user's library. Built-ins cannot be deleted."""
    path = user_preset_dir() / f"{check_preset_name(name)}.toml"
    if not path.is_file():
        if (builtin_preset_dir() / f"{name}.toml").is_file():
            raise ConfigError(f"{name!r} is a built-in preset and cannot be deleted")
        raise ConfigError(f"no user preset named {name!r} in {path.parent}")
    path.unlink()
    return path


__all__ = [
    "SCHEMA_VERSION", "PresetEntry", "PresetExistsError", "builtin_preset_dir", "check_preset_name",
    "delete_user_preset", "dumps_preset", "find_preset", "list_presets", "load_preset", "loads_preset",
    "save_preset", "save_user_preset", "unknown_key_error", "user_preset_dir",
]
