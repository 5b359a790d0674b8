"""Checking one setting's value against its row of the settings table (engine/config.py), and ConfigError.

Each kind of setting (text, bool, int, float, strings, seed, choice, bias, tokens, json) has one check that
returns the value normalised (ints for whole floats, tuples for lists) or raises ConfigError naming the
field and the rule it broke.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from .config import Setting

SEED_MAX = 2**63 - 1  # TOML integers are signed 64-bit
CONSTRAINT_FIELDS = ("json_schema", "regex", "choice", "grammar")
"""The settings that constrain the output (structured output, engine/grammars.py); a config sets at most one."""


class ConfigError(ValueError):
    """A decoding setting (or a preset holding one) is invalid; the message says what to change.

    field names the setting at fault when there is one (front ends point at it; the server maps it to
    the request field the client sent)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


# -- checking one value against its row -----------------------------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def fail(name: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{name}={value!r} is invalid: {allowed}", field=name)


def _text(s: Setting, value: Any) -> str:
    if not isinstance(value, str):
        raise fail(s.name, value, "it must be a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise fail(s.name, value, "it must be valid Unicode text (no lone surrogates)") from None
    return value


def _bool(s: Setting, value: Any) -> bool:
    if not isinstance(value, bool):
        raise fail(s.name, value, "it must be true or false")
    return value


def _float(s: Setting, value: Any) -> float:
    if not _is_number(value) or not math.isfinite(value):
        raise fail(s.name, value, "it must be a finite number; " + s.allowed)
    if not s.in_range(value):
        raise fail(s.name, value, s.allowed)
    return float(value)


def _int(s: Setting, value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not _is_int(value) or not s.in_range(value):
        raise fail(s.name, value, s.allowed)
    return value


def _strings(s: Setting, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise fail(s.name, value, "it must be a list of non-empty strings")
    for item in value:
        if not isinstance(item, str) or not item:
            raise fail(s.name, value, "every entry must be a non-empty string")
        _text(s, item)
    return tuple(value)


def _seed(s: Setting, value: Any) -> int | None:
    if value is not None and not (_is_int(value) and 0 <= value <= SEED_MAX):
        raise fail(s.name, value, s.allowed)
    return value


def _choice(s: Setting, value: Any) -> bool | str:  # early_stopping: true, false or "never"
    if not (isinstance(value, bool) or value == "never"):
        raise fail(s.name, value, s.allowed)
    return value


def _bias(s: Setting, value: Any) -> tuple[tuple[int | str, float], ...]:
    pairs = list(value.items()) if isinstance(value, dict) else value
    if isinstance(pairs, str) or not isinstance(pairs, (list, tuple)):
        raise fail(s.name, value, 'it must map token ids or texts to biases, e.g. {"50256" = -100}')
    out = []
    for pair in pairs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise fail(s.name, value, "every entry must be a (token id or text, bias) pair")
        key, bias = pair
        if isinstance(value, dict) and isinstance(key, str) and key.strip().isdigit():
            key = int(key)  # OpenAI / llama.cpp JSON: a digit-only key is a token id
        if not (_is_int(key) and key >= 0) and not (isinstance(key, str) and key):
            raise fail(s.name, value, f"key {key!r} must be a token id >= 0 or a non-empty text")
        if isinstance(key, str):
            _text(s, key)
        if isinstance(bias, str) and bias.strip().lower() == "-inf":  # JSON has no -inf: sessions and --json write it so
            bias = -math.inf
        if not _is_number(bias) or math.isnan(bias) or bias == math.inf:
            raise fail(s.name, value, f"the bias for {key!r} must be a number (-inf bans the token)")
        out.append((key, float(bias)))
    return tuple(out)


def _tokens(s: Setting, value: Any) -> tuple[int | str, ...]:
    """Token ids (ints >= 0) or texts; a text must be one token, which the run checks against the tokenizer."""
    if isinstance(value, (str, int)) or not isinstance(value, (list, tuple)):
        raise fail(s.name, value, 'it must be a list of token ids or texts, e.g. [" Yes", " No"] or [9642, 2360]')
    out = []
    for item in value:
        if isinstance(item, str) and item.strip().isdigit():
            item = int(item)  # a digit-only entry typed in a text field is a token id, as in logit_bias
        if not ((_is_int(item) and item >= 0) or (isinstance(item, str) and item)):
            raise fail(s.name, value, f"{item!r} must be a token id >= 0 or a non-empty text")
        if isinstance(item, str):
            _text(s, item)
        out.append(item)
    if len(out) > 64:
        raise fail(s.name, value, "it may name at most 64 tokens")
    return tuple(dict.fromkeys(out))


def _json(s: Setting, value: Any) -> str:
    """A JSON Schema given as JSON text, a TOML/JSON table or true/false -> its compact JSON text ('' = off)."""
    if isinstance(value, str):
        if not value.strip():
            return ""
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{s.name} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
                              field=s.name) from None
    if not isinstance(value, (dict, bool)):
        raise ConfigError(f"{s.name} must be a JSON Schema: an object such as {{\"type\": \"object\"}} ({{}} = any "
                          f"JSON value), not {type(value).__name__}", field=s.name)
    if json_depth(value) > MAX_JSON_DEPTH:
        raise ConfigError(f"{s.name} nests more than {MAX_JSON_DEPTH} JSON levels deep; decodelab takes schemas nested at "
                          f"most {MAX_JSON_DEPTH} levels (each object or array counts, so a property's schema inside "
                          "'properties' is two: about 50 nested properties): flatten it, or use $defs", field=s.name)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


MAX_JSON_DEPTH = 100
"""How deeply a JSON Schema may nest (llguidance and Python's own recursion give out in the hundreds)."""


def json_depth(value: Any) -> int:
    """How many objects and arrays deep a JSON value nests (counted without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if depth <= MAX_JSON_DEPTH:  # past the limit the answer is known
            stack += [(child, depth + 1) for child in children]
    return deepest


CHECKS = {"text": _text, "bool": _bool, "float": _float, "int": _int, "strings": _strings, "seed": _seed,
           "choice": _choice, "bias": _bias, "tokens": _tokens, "json": _json}
ANNOTATIONS = {"text": "str", "bool": "bool", "float": "float", "int": "int", "strings": "tuple[str, ...]",
               "seed": "int | None", "choice": "bool | str", "bias": "tuple[tuple[int | str, float], ...]",
               "tokens": "tuple[int | str, ...]", "json": "str"}
"""Each kind's type, as DecodingConfig's declared fields write it (scripts/config_class.py)."""
FIELDS_START = "    # -- fields: written by scripts/config_class.py from SETTINGS; tests/test_config.py keeps them in step --"
FIELDS_END = "    # -- end of the written fields --"


def fields_block(settings: Iterable[Setting]) -> str:
    """DecodingConfig's field declarations for these settings, between their markers."""
    lines = [FIELDS_START]
    for s in settings:
        lines.append(f"    {s.name}: {ANNOTATIONS[s.kind]} = {s.default!r}")
    return "\n".join(lines + [FIELDS_END])


def with_fields(source: str, settings: Iterable[Setting]) -> str:
    """config.py's source with its written fields replaced by those of these settings."""
    start, end = source.index(FIELDS_START), source.index(FIELDS_END) + len(FIELDS_END)
    return source[:start] + fields_block(settings) + source[end:]


