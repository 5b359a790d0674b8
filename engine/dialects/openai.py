"""The OpenAI API: the sampling fields of a chat or completions request."""

from __future__ import annotations

import json

from ..config import DecodingConfig
from .base import Dialect
from .common import Converted, id_biases

OPENAI = Dialect("openai", "the OpenAI API", greedy_temperature=0.0)


def response_format(config: DecodingConfig) -> dict | None:
    """The config's JSON schema as OpenAI's response_format (None without one)."""
    if not config.json_schema:
        return None
    schema = json.loads(config.json_schema)
    if schema in ({}, True):
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": "decodelab", "schema": schema, "strict": True}}


def to_openai(config: DecodingConfig) -> Converted:
    """OpenAI-compatible request parameters (chat or completions)."""
    data = {k: v for k, v in OPENAI.fields(config).items() if v not in (None, [])}  # OpenAI's defaults stand in
    notes = OPENAI.notes(config, handled={"json_schema", "logit_bias"})
    form = response_format(config)
    if form is not None:
        name = OPENAI.name("json_schema")
        assert name is not None  # the table names it for OpenAI
        data[name] = form
        if form["type"] == "json_schema":
            notes.append("OpenAI's strict mode also wants every property listed in required and "
                         "additionalProperties: false; decodelab closes objects without additionalProperties too")
    biases = id_biases(config, "the OpenAI API", notes, -100.0, 100.0)
    if biases:
        data["logit_bias"] = {str(t): b for t, b in biases.items()}
    if data["temperature"] > 2:
        notes.append(f"OpenAI accepts temperature 0-2; {data['temperature']} will be rejected")
    if len(config.stop_strings) > 4:
        notes.append(f"OpenAI accepts at most 4 stop strings; this preset has {len(config.stop_strings)}")
    return Converted(data, notes)
