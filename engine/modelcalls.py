"""Model-calling helpers shared by the batched decoder and beams: the EOS set and logits-trimmed forwards.

They live below both engine/generation.py and engine/beams.py so neither has to import the other for them.
"""

from __future__ import annotations

import torch


def eos_token_ids(loaded) -> list[int]:
    ids: set[int] = set()
    for source in (loaded.model.generation_config, loaded.model.config, loaded.tokenizer):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(v for v in value if isinstance(v, int))
    return sorted(ids)


def forward_last(model, input_ids: torch.Tensor, keep: int, **kwargs):
    """A forward pass computing logits for the last `keep` positions only, where the model supports it
    (older or remote-code models without `logits_to_keep` compute them all; the result is the same)."""
    try:
        return model(input_ids=input_ids, logits_to_keep=keep, **kwargs)
    except TypeError as exc:
        if "logits_to_keep" not in str(exc):
            raise
        out = model(input_ids=input_ids, **kwargs)
        out.logits = out.logits[:, -keep:, :]
        return out
