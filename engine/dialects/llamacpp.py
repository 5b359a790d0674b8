"""llama.cpp: llama-cli / llama-server command-line flags, and llama-server's request fields (the remote client).

Both come from the settings table's llamacpp column: the server's field names, the flags where they are not
--name-with-dashes, and llama.cpp's own spellings (top_n_sigma -1 for off; a whole-context penalty window as
a count, since current llama.cpp refuses -1 and reads 0 as "off"; a seed of -1 for random).
"""

from __future__ import annotations

import shlex

from ..config import DecodingConfig
from ..grammars import choice_gbnf
from .base import Dialect
from .common import CONSTRAINTS, Converted, id_biases

LLAMACPP = Dialect("llamacpp", "llama.cpp", greedy_temperature=0.0,
                   inert_order=("dist", "infill", "mirostat", "mirostat_v2"))
LISTS = ("stop_strings", "dry_sequence_breakers")
"""Settings the command line takes as one flag per item."""


def llamacpp_samplers(config: DecodingConfig) -> str:
    """The config's chain in llama.cpp's --samplers names (adaptive-p last, where the config uses it)."""
    return ";".join(LLAMACPP.order(config))


def constraint_fields(config: DecodingConfig) -> dict:
    """The config's constraint as llama-server takes it: json_schema, or grammar (a choice as GBNF); {} for a
    regex, which llama.cpp has no field for."""
    if config.json_schema:
        import json

        return {LLAMACPP.name("json_schema"): json.loads(config.json_schema)}
    if config.grammar or config.choice:
        return {LLAMACPP.name("grammar"): config.grammar or choice_gbnf(config.choice)}
    return {}


def request_fields(config: DecodingConfig) -> dict:
    """llama-server's request fields for the config (every sampler field written out: its defaults are not
    neutral), the sampler order included."""
    data = LLAMACPP.fields(config)
    name = LLAMACPP.name("sampler_order")
    assert name is not None  # the table names it for llama.cpp
    data[name] = LLAMACPP.order(config)
    return data


def _flag(name: str) -> str:
    spell = LLAMACPP.spell(name)
    assert spell is not None and spell.name is not None  # called for settings llama.cpp names
    return spell.flag or "--" + spell.name.replace("_", "-")


def to_llamacpp(config: DecodingConfig) -> Converted:
    """llama.cpp command-line flags (llama-cli / llama-server), with llama.cpp's own defaults neutralised."""
    flags: list[str] = []
    values = LLAMACPP.fields(config, skip=LISTS)
    for name, theirs in LLAMACPP.names().items():
        if theirs in values and not (name == "seed" and values[theirs] == -1):
            value = values[theirs]
            if isinstance(value, bool):  # a switch (--ignore-eos): given when on, absent when off
                flags += [_flag(name)] if value else []
                continue
            flags += [_flag(name), f"{value:g}" if isinstance(value, float) else str(value)]
    flags += ["--samplers", llamacpp_samplers(config)]
    for stop in config.stop_strings:
        flags += [_flag("stop_strings"), stop]
    for breaker in config.dry_sequence_breakers or ("none",):
        flags += [_flag("dry_sequence_breakers"), breaker]
    notes = LLAMACPP.notes(config, handled=CONSTRAINTS | {"logit_bias", "sampler_order"})
    if config.json_schema:
        flags += ["--json-schema", config.json_schema]
    elif config.grammar or config.choice:
        flags += ["--grammar", config.grammar or choice_gbnf(config.choice)]
    elif config.regex:
        notes.append(f"llama.cpp has no regex constraint: this preset's regex={config.regex!r} is NOT carried "
                     "over (write it as a GBNF --grammar)")
    for token, bias in id_biases(config, "llama.cpp's --logit-bias", notes).items():
        flags += ["--logit-bias", f"{token}{'+' if bias >= 0 else '-'}{abs(bias):g}"]
    notes.append("llama.cpp's defaults (top-k 40, top-p 0.95, min-p 0.05, a 64-token penalty window, DRY and "
                 "XTC settings) are overridden explicitly; --samplers puts them in decodelab's order")
    return Converted(" ".join(shell_quote(f) for f in flags), notes)


def shell_quote(text: str) -> str:
    """One shell word; text with control characters (a newline stop string) as bash's $'…', so the command
    stays on one line and the newline is still a newline."""
    if text.isprintable():
        return shlex.quote(text)
    return "$'" + "".join(_ansi_c(c) for c in text) + "'"


_ANSI_C = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\", "'": "\\'"}


def _ansi_c(c: str) -> str:
    """One character inside bash's $'…'."""
    if c in _ANSI_C:
        return _ANSI_C[c]
    if c.isprintable():
        return c
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
