"""What the transformers runner reads off a model: the EOS set, the cache keyword, trimmed forwards, KV sizes."""

from __future__ import annotations

import inspect
from typing import Any

import torch


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The ids HF `generate` stops on: generation_config's eos_token_id; the model config's, then the
    tokenizer's, only when the generation_config has none (never their union). Used for stops,
    min_new_tokens and beams alike."""
    for source in (getattr(model, "generation_config", None), model.config, tokenizer):
        ids = _token_ids(getattr(source, "eos_token_id", None))
        if ids:
            return ids
    return []


def _token_ids(value: object) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value] if value >= 0 else []
    if isinstance(value, (list, tuple)):
        return sorted({v for v in value if isinstance(v, int) and not isinstance(v, bool) and v >= 0})
    return []


def forward_last(model: Any, input_ids: torch.Tensor, keep: int, **kwargs: Any) -> Any:
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


def cache_keyword(model: Any) -> str:
    """The forward keyword that takes a key/value cache back: `cache` from transformers 5.24 on (where
    `past_key_values` is deprecated), `past_key_values` before."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def kv_bytes_per_token(model: Any) -> int | None:
    """Bytes of key/value cache one row keeps per token: layers x 2 x key/value heads x head size x the
    dtype's size; None when the config does not say (the budget is then not enforced)."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    elements = kv_elements_per_token(config)
    return elements * model.dtype.itemsize if elements else None


def kv_elements_per_token(config: Any) -> int | None:
    """Key/value elements one row keeps per token (layers x 2 x key/value heads x head size), from a model config
    (an object, or a config.json read as a SimpleNamespace); None when it does not say."""
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", None)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None)
    head_dim = getattr(config, "head_dim", None) or (hidden // heads if hidden and heads else None)
    if not (isinstance(layers, int) and isinstance(kv_heads, int) and isinstance(head_dim, int)):
        return None
    return layers * 2 * kv_heads * head_dim
