"""Structured output: a config's constraint (json_schema, regex, choice or grammar) as an llguidance grammar.

llguidance (llama.cpp's optional grammar backend) compiles the constraint and keeps one matcher per row;
sampling/constraints.py turns its token masks into the batch's first mask. This module needs no torch:
DecodingConfig checks a constraint here when it is built, so a bad schema or grammar is an error that
names the field (and the line and column, for GBNF) before anything runs.
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any, Iterable

from .checks import CONSTRAINT_FIELDS, ConfigError

if TYPE_CHECKING:
    from llguidance import LLMatcher
    from llguidance._lib import JsonCompileOptions

    from .config import DecodingConfig

JSON_STYLE: JsonCompileOptions = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
"""JSON as Python's json.dumps writes it: no free whitespace, which a model fills with newlines and tabs (a
schema's own "x-guidance" options override this, as in llguidance)."""


def _set(config: DecodingConfig) -> list[str]:
    """The constraint fields this config sets (empty text or list = not set)."""
    return [name for name in CONSTRAINT_FIELDS if getattr(config, name) not in ("", ())]


def constraint_of(config: DecodingConfig) -> tuple[str, Any] | None:
    """(field, value) of the config's constraint, or None."""
    names = _set(config)
    return (names[0], getattr(config, names[0])) if names else None


def choice_gbnf(choices: Iterable[str]) -> str:
    """A choice as a GBNF grammar (for llama.cpp and the webui, which take grammars, not lists)."""
    return "root ::= " + " | ".join(json.dumps(c, ensure_ascii=False) for c in choices)


def closed(schema: Any) -> Any:
    """The schema with objects closed where it says nothing: an object with "properties" but no
    "additionalProperties" (or pattern/unevaluated properties) takes no other keys. That is what llama.cpp's
    json-schema-to-grammar and vLLM's default (xgrammar's strict mode) do, and what OpenAI's strict mode asks
    for; llguidance alone would let the model add any key after the listed ones. allOf members stay as they are,
    since closing one would refuse the others' properties."""
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: (value if key in ("allOf", "const", "enum", "default", "examples") else
                 {k: closed(v) for k, v in value.items()} if key in ("properties", "$defs", "definitions")
                 and isinstance(value, dict) else closed(value))
           for key, value in schema.items()}
    if "properties" in out and not {"additionalProperties", "patternProperties", "unevaluatedProperties"} & out.keys():
        out["additionalProperties"] = False
    return out


def check_constraint(config: DecodingConfig) -> None:
    """At most one constraint, and one that compiles; ConfigError naming the field otherwise."""
    names = _set(config)
    if len(names) > 1:
        raise ConfigError(f"{names[0]} and {names[1]} are both set: a config takes at most one constraint (keep "
                          f"one, or set the other to empty)", field=names[1])
    if names:
        grammar(names[0], getattr(config, names[0]))


@functools.lru_cache(maxsize=256)
def grammar(name: str, value: Any) -> str:
    """The llguidance grammar for one constraint (cached per constraint: compiling a schema once is enough)."""
    from llguidance import LLMatcher
    from llguidance.gbnf_to_lark import gbnf_to_lark

    try:
        if name == "json_schema":
            text = LLMatcher.grammar_from_json_schema(closed(json.loads(value)), defaults=JSON_STYLE)
        elif name == "regex":
            text = LLMatcher.grammar_from_regex(value)
        elif name == "choice":
            text = LLMatcher.grammar_from_lark("start: " + " | ".join(json.dumps(c, ensure_ascii=False)
                                                                      for c in value))
        else:
            text = LLMatcher.grammar_from_lark(gbnf_to_lark(value))
    except Exception as exc:  # noqa: BLE001 - llguidance's parsers raise plain exceptions with the reason
        raise ConfigError(f"{name} does not compile: {_reason(exc)}", field=name) from None
    failed, messages = LLMatcher.validate_grammar_with_warnings(text)
    if failed:
        raise ConfigError(f"{name} does not compile: {_reason(messages[0] if messages else 'unknown error')}",
                          field=name)
    return text


def _reason(exc: Any) -> str:
    """llguidance's message on one line: its first line, and the line that names the error when there is one."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    said = next((line for line in lines[1:] if line.startswith("error:")), None)
    return lines[0] + (f" ({said})" if said else "") if lines else "unknown error"


@functools.lru_cache(maxsize=8)
def _tokenizer(tokenizer, vocab_size: int, eos: tuple[int, ...]):
    from llguidance.hf import from_tokenizer

    return from_tokenizer(tokenizer, n_vocab=vocab_size, eos_token=list(eos))


def complete(name: str, value: Any, tokenizer: Any, vocab_size: int, eos: tuple[int, ...], ids: Iterable[int]) -> bool:
    """Whether the tokens make a whole text of the constraint (a text cut at max_new_tokens often does not)."""
    m = matcher(name, value, tokenizer, vocab_size, eos)
    for token in ids:
        if m.is_stopped() or not m.consume_token(int(token)):
            break
    return bool(m.is_accepting() or m.is_stopped())


def matcher(name: str, value: Any, tokenizer: Any, vocab_size: int, eos: tuple[int, ...]) -> LLMatcher:
    """A fresh llguidance matcher for one row (the tokenizer's table is built once, about a second)."""
    from llguidance import LLMatcher

    return LLMatcher(_tokenizer(tokenizer, vocab_size, eos), grammar(name, value))
