"""What every export and import shares: the Converted result, token-id biases, the constraint fields."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..config import CONSTRAINT_FIELDS, DecodingConfig

CONSTRAINTS = frozenset(CONSTRAINT_FIELDS)


@dataclass
class Converted:
    """The converted preset (a dict, or command-line text for llama.cpp) and the notes a user must read."""

    data: object
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        return self.data if isinstance(self.data, str) else json.dumps(self.data, indent=2) + "\n"


def id_biases(config: DecodingConfig, target: str, notes: list[str], low: float | None = None,
              high: float | None = None) -> dict[int, float]:
    """logit_bias entries keyed by token id; text keys and out-of-range biases noted."""
    out: dict[int, float] = {}
    for key, bias in config.logit_bias:
        if not isinstance(key, int):
            notes.append(f"{target} takes token ids in logit_bias: the text key {key!r} is NOT carried over "
                         "(bias its token ids instead)")
            continue
        if low is not None and high is not None and not low <= bias <= high:  # both or neither are given
            notes.append(f"{target} accepts logit_bias in [{low}, {high}]: {bias} for token {key} is clamped")
            bias = min(max(bias, low), high)
        out[key] = out.get(key, 0.0) + bias
    return out
