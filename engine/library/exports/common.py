"""What every export and import shares: the Converted result and the notes about what does not carry over."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ...config import CONSTRAINT_FIELDS, SETTING, DecodingConfig

# The modern samplers most stacks lack, with their neutral values (for "NOT carried over" notes).
MODERN = {"top_n_sigma": 0.0, "xtc_probability": 0.0, "dry_multiplier": 0.0, "mirostat": 0, "dynatemp_range": 0.0,
          "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "repetition_penalty_last_n": 0, "banned_strings": (),
          "sampler_order": (), "smoothing_factor": 0.0, "top_h": 0.0, "tfs": 1.0, "top_a": 0.0,
          "adaptive_target": -1.0, "logprob_tokens": (), "guidance_scale": 1.0, "negative_prompt": ""}


CONSTRAINTS = {name: SETTING[name].default for name in CONSTRAINT_FIELDS}
"""Structured output's settings with their neutral values."""


def without(fields: dict, *names: str) -> dict:
    return {k: v for k, v in fields.items() if k not in names}



def id_biases(config: DecodingConfig, target: str, notes: list[str], low=None, high=None) -> dict[int, float]:
    """logit_bias entries keyed by token id; text keys and out-of-range biases noted."""
    out = {}
    for key, bias in config.logit_bias:
        if not isinstance(key, int):
            notes.append(f"{target} takes token ids in logit_bias: the text key {key!r} is NOT carried over "
                         "(bias its token ids instead)")
            continue
        if low is not None and not low <= bias <= high:
            notes.append(f"{target} accepts logit_bias in [{low}, {high}]: {bias} for token {key} is clamped")
            bias = min(max(bias, low), high)
        out[key] = out.get(key, 0.0) + bias
    return out



@dataclass
class Converted:
    """The converted preset (a dict, or command-line text for llama.cpp) and the notes a user must read."""

    data: object
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        return self.data if isinstance(self.data, str) else json.dumps(self.data, indent=2) + "\n"



def unsupported(config: DecodingConfig, target: str, fields: dict[str, object]) -> list[str]:
    """Notes for fields set away from neutral that the target cannot express."""
    return [f"{target} has no {name}: this preset's {name}={getattr(config, name)!r} is NOT carried over"
            for name, neutral in fields.items() if getattr(config, name) != neutral]
