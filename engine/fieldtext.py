"""One way to read and write a setting as text, for every front end (the TUI editor, --set, sweeps).

A value is TOML (0.7, true, "text"). Lists and logit_bias may be written with or without their
brackets: `"\\n\\n", "END"` or `["\\n\\n", "END"]`; `"50256" = -100, " the" = 2` or `{"50256" = -100}`.
Text that is not TOML is handed on as it is, so that DecodingConfig rejects it with the field's own
rule; every error names the field.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from .config import SETTING, ConfigError, DecodingConfig, logit_bias_dict, unknown_key_error


def parse_text(name: str, raw: str) -> Any:
    """The value typed for the setting `name` (not yet validated: DecodingConfig does that)."""
    if name not in SETTING:
        raise unknown_key_error(name, "the settings")
    kind = SETTING[name].kind
    if name in FILE_FIELDS and raw.strip().startswith("@"):
        return _read(name, raw.strip()[1:])
    if kind == "json":
        table = _maybe_toml(raw.strip())  # {type = "object"} as TOML; JSON text is not TOML and stays as typed
        return table if isinstance(table, (dict, str)) else raw
    if kind == "text":
        return _unquoted(raw)
    text = raw.strip()
    if kind == "seed" and text.lower() in ("", "auto", "none"):
        return None
    if kind == "strings":
        if not text:
            return []
        example = '"yes", "no"' if name == "choice" else '"\\n\\n", "END"'
        value = _toml(name, text if text.startswith("[") else f"[{text}]",
                      f'write quoted strings separated by commas, e.g. {example}')
        if name == "choice" and value == []:  # [] typed out would run unconstrained: said, not done
            raise ConfigError(f"choice={text} lists no choices, so nothing would constrain the output: give at "
                              f"least one (e.g. {example}), or leave choice out for no constraint", field=name)
        return value
    if kind == "tokens":
        if not text:
            return []
        return _toml(name, text if text.startswith("[") else f"[{text}]",
                     'write token ids or quoted texts separated by commas, e.g. " Yes", " No" or 9642, 2360')
    if kind == "bias":
        if not text:
            return {}
        table = _toml(name, text if text.startswith("{") else f"{{{text}}}",
                      'write "token id or text" = bias pairs, e.g. "50256" = -100, " the" = 2')
        for key in table if isinstance(table, dict) else ():
            if not key.isdigit() and toml_string(key) not in text and f"'{key}'" not in text:
                raise ConfigError(f"{name}: quote the token text {key!r}, as spaces count: write \" {key}\" = "
                                  f"{table[key]} for the word after a space, or \"{key}\" = {table[key]}", field=name)
        return table
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _maybe_toml(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return None


def _unquoted(raw: str) -> str:
    """Free text as typed, or the string inside quotes when it is quoted as TOML writes strings ("…" or '…'),
    as every other value is read: --set 'regex="[0-9]{4}"' is the regex [0-9]{4}, not one with quotes."""
    text = raw.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        value = _maybe_toml(text)
        if isinstance(value, str):
            return value
        if text[0] == '"':  # "\d+" is not a TOML string (\d is no escape): the quotes still go
            return text[1:-1]
    return raw


FILE_FIELDS = ("json_schema", "grammar")
"""Settings whose value may be @FILE: a schema or a GBNF grammar kept in a file."""


def _read(name: str, path: str) -> str:
    try:
        return Path(path).expanduser().read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{name}=@{path}: there is no such file", field=name) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{name}=@{path}: cannot read it ({exc})", field=name) from None


def _toml(name: str, text: str, how: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        raise ConfigError(f"{name}: {how}", field=name) from None


def format_text(config: DecodingConfig, name: str) -> str:
    """The setting's value as parse_text reads it back (lists and tables without their brackets)."""
    value = getattr(config, name)
    kind = SETTING[name].kind
    if kind == "seed":
        return "" if value is None else str(value)
    if kind == "strings":
        return ", ".join(toml_string(s) for s in value)
    if kind == "tokens":
        return ", ".join(toml_string(t) if isinstance(t, str) else str(t) for t in value)
    if kind == "bias":
        return ", ".join(f"{toml_string(k)} = {b:g}" for k, b in logit_bias_dict(value).items())
    if kind == "choice":
        return toml_string(value) if isinstance(value, str) else str(value).lower()
    if kind == "bool":
        return str(value).lower()
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return toml_string(value)  # so that parse_text does not take its own quotes off
    return value if isinstance(value, str) else f"{value:g}" if isinstance(value, float) else str(value)


def toml_string(text: str) -> str:
    """A TOML basic string: quoted, with escapes."""
    import tomli_w

    return tomli_w.dumps({"v": text})[4:].strip()


def parse_assignment(item: str, where: str = "--set") -> tuple[str, Any]:
    """`field=value` (as --set and sweep grids take it) -> (field, value)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"{where} {item!r} is not field=value (e.g. {where} temperature=0.7)")
    if key not in SETTING:
        raise unknown_key_error(key, where)
    return key, parse_text(key, raw)
