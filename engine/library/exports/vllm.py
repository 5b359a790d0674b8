"""vLLM: SamplingParams fields as JSON (what `vllm serve` requests and `SamplingParams(**...)` take)."""

from __future__ import annotations

import json

from ...config import DecodingConfig
from .common import MODERN, Converted, id_biases, unsupported, without


def to_vllm(config: DecodingConfig) -> Converted:
    """vLLM SamplingParams keyword arguments."""
    data = {
        "temperature": config.temperature if config.samples else 0.0,
        "top_p": config.top_p,
        "top_k": config.top_k if config.top_k else -1,
        "min_p": config.min_p,
        "repetition_penalty": config.repetition_penalty,
        "frequency_penalty": config.frequency_penalty,
        "presence_penalty": config.presence_penalty,
        "max_tokens": config.max_new_tokens,
        "min_tokens": config.min_new_tokens,
        "stop": list(config.stop_strings),
        "seed": config.seed,
    }
    notes = unsupported(config, "vLLM SamplingParams",
                         {"typical_p": 1.0, "no_repeat_ngram_size": 0, "num_beams": 1, "length_penalty": 1.0,
                          **without(MODERN, "banned_strings", "logprob_tokens")})
    if config.logprob_tokens:
        ids = [t for t in config.logprob_tokens if isinstance(t, int)]
        data["logprob_token_ids"] = ids
        if len(ids) < len(config.logprob_tokens):
            notes.append("vLLM's logprob_token_ids takes token ids: the texts in logprob_tokens are NOT carried "
                         "over (name their ids instead)")
    guided = {"json_schema": ("guided_json", json.loads), "regex": ("guided_regex", str),
              "choice": ("guided_choice", list), "grammar": ("guided_grammar", str)}
    for name, (field, convert) in guided.items():
        if getattr(config, name) not in ("", ()):
            data[field] = convert(getattr(config, name))
            note = f"newer vLLM takes {field} as structured_outputs={{\"{field[7:]}\": ...}}"
            if name == "json_schema":
                note += "; objects without additionalProperties are closed by both (xgrammar's strict mode)"
            notes.append(note)
    biases = id_biases(config, "vLLM", notes)
    if biases:
        data["logit_bias"] = {str(t): b for t, b in biases.items()}
    if config.banned_strings:
        data["bad_words"] = list(config.banned_strings)
        notes.append("vLLM's bad_words also bans each word with a leading space; decodelab bans exactly the "
                     "tokens of the text given")
    notes.append("vLLM applies penalties -> temperature -> min-p -> top-k/top-p; decodelab (like HF) applies "
                 "top-k -> top-p -> min-p, so combined filters can keep slightly different tokens")
    return Converted(data, notes)
