"""The OpenAI API: the sampling fields of a chat or completions request."""

from __future__ import annotations

import json

from ...config import DecodingConfig
from .common import MODERN, Converted, id_biases, unsupported


def to_openai(config: DecodingConfig) -> Converted:
    """OpenAI-compatible request parameters (chat or completions)."""
    data = {
        "temperature": config.temperature if config.samples else 0.0,
        "top_p": config.top_p,
        "frequency_penalty": config.frequency_penalty,
        "presence_penalty": config.presence_penalty,
        "max_tokens": config.max_new_tokens,
    }
    if config.stop_strings:
        data["stop"] = list(config.stop_strings)
    if config.seed is not None:
        data["seed"] = config.seed
    notes = unsupported(config, "the OpenAI API", {
        "top_k": 0, "min_p": 0.0, "typical_p": 1.0, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
        "num_beams": 1, "length_penalty": 1.0, "min_new_tokens": 0, **MODERN, "regex": "", "choice": (),
        "grammar": ""})
    if config.json_schema:
        schema = json.loads(config.json_schema)
        data["response_format"] = {"type": "json_object"} if schema in ({}, True) else {
            "type": "json_schema", "json_schema": {"name": "decodelab", "schema": schema, "strict": True}}
        if schema not in ({}, True):
            notes.append("OpenAI's strict mode also wants every property listed in required and "
                         "additionalProperties: false; decodelab closes objects without additionalProperties too")
    biases = id_biases(config, "the OpenAI API", notes, -100.0, 100.0)
    if biases:
        data["logit_bias"] = {str(t): b for t, b in biases.items()}
    if data["temperature"] > 2:
        notes.append(f"OpenAI accepts temperature 0-2; {data['temperature']} will be rejected")
    if len(config.stop_strings) > 4:
        notes.append(f"OpenAI accepts at most 4 stop strings; this preset has {len(config.stop_strings)}")
    if config.seed is not None:
        notes.append("OpenAI treats seed as best effort: outputs may still vary")
    return Converted(data, notes)
