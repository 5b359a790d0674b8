"""vLLM: SamplingParams fields as JSON (what `vllm serve` requests and `SamplingParams(**...)` take)."""

from __future__ import annotations

import json
from typing import Any, Callable

from ..config import DecodingConfig
from .base import Dialect
from .common import CONSTRAINTS, Converted, id_biases

VLLM = Dialect("vllm", "vLLM SamplingParams", greedy_temperature=0.0)

GUIDED: dict[str, Callable[[Any], Any]] = {"json_schema": json.loads, "regex": str, "choice": list, "grammar": str}
"""How each constraint is written in its guided_* field (the table names the field)."""


def constraint_fields(config: DecodingConfig) -> dict:
    """The config's constraint in vLLM's guided_* field."""
    return {VLLM.name(name): convert(getattr(config, name)) for name, convert in GUIDED.items()
            if getattr(config, name) not in ("", ())}


def to_vllm(config: DecodingConfig) -> Converted:
    """vLLM SamplingParams keyword arguments."""
    data = VLLM.fields(config, skip={"logprob_tokens", "stop_token_ids"})
    notes = VLLM.notes(config, handled=CONSTRAINTS | {"logit_bias", "logprob_tokens"})
    if config.logprob_tokens:
        ids = [t for t in config.logprob_tokens if isinstance(t, int)]
        name = VLLM.name("logprob_tokens")
        assert name is not None  # the table names it for vLLM
        data[name] = ids
        if len(ids) < len(config.logprob_tokens):
            notes.append("vLLM's logprob_token_ids takes token ids: the texts in logprob_tokens are NOT carried "
                         "over (name their ids instead)")
    if config.stop_token_ids:  # ids only (the table's note says the texts stay behind)
        data[VLLM.name("stop_token_ids") or "stop_token_ids"] = [t for t in config.stop_token_ids if isinstance(t, int)]
    for field, value in constraint_fields(config).items():
        data[field] = value
        note = f"newer vLLM takes {field} as structured_outputs={{\"{field[7:]}\": ...}}"
        if field == VLLM.name("json_schema"):
            note += "; objects without additionalProperties are closed by both (xgrammar's strict mode)"
        notes.append(note)
    biases = id_biases(config, "vLLM", notes)
    if biases:
        data["logit_bias"] = {str(t): b for t, b in biases.items()}
    if config.samples and sum((config.top_k > 0, config.top_p < 1, config.min_p > 0)) >= 2:
        notes.append("vLLM applies penalties -> temperature -> min-p -> top-k/top-p; decodelab (like HF) applies "
                     "top-k -> top-p -> min-p, so combined filters can keep slightly different tokens")
    return Converted(data, notes)
