"""Bridges to HF transformers' own generate: matching kwargs, and an OpenAI-style penalty processor."""

from __future__ import annotations

from typing import Any

import torch

from ..config import DecodingConfig


class FrequencyPresencePenalty:
    """A transformers LogitsProcessor for OpenAI/vLLM frequency and presence penalties.

    It counts only generated tokens (those after prompt_length), as OpenAI and vLLM do.
    """

    def __init__(self, frequency: float, presence: float, prompt_length: int) -> None:
        self.frequency = frequency
        self.presence = presence
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        generated = input_ids[:, self.prompt_length :]
        counts = torch.zeros_like(scores)
        if generated.numel():
            counts.scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
        return scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)


def hf_generate_kwargs(config: DecodingConfig, prompt_length: int, tokenizer: Any = None) -> dict[str, Any]:
    """Keyword arguments for `model.generate` that reproduce this config's settings.

    Neutral values are written explicitly (top_k=0, not HF's hidden 50). Seeds are left to the caller
    (HF needs a global torch seed). With a tokenizer, stop strings, logit-bias texts and banned strings
    are passed too (the caller must then also pass tokenizer= to generate for stop strings).
    """
    from transformers import LogitsProcessorList

    kwargs: dict[str, Any] = {
        "do_sample": config.samples,
        "max_new_tokens": config.max_new_tokens,
        "min_new_tokens": (config.max_new_tokens if config.ignore_eos else config.min_new_tokens) or None,
        "repetition_penalty": config.repetition_penalty,
        "no_repeat_ngram_size": config.no_repeat_ngram_size,
        "num_beams": config.num_beams,
        "length_penalty": config.length_penalty,
    }
    if config.samples:
        kwargs.update(temperature=config.temperature, top_k=config.top_k, top_p=config.top_p,
                      min_p=config.min_p or None, typical_p=config.typical_p)
    else:
        kwargs.update(temperature=None, top_k=None, top_p=None)
    if config.num_beams > 1:
        kwargs["early_stopping"] = config.early_stopping
    if config.samples:
        kwargs.update(epsilon_cutoff=config.epsilon_cutoff or None, eta_cutoff=config.eta_cutoff or None)
    if config.logit_bias:
        kwargs["sequence_bias"] = token_biases(config, tokenizer)
    if config.banned_strings:
        kwargs["bad_words_ids"] = [_ids(tokenizer, text) for text in config.banned_strings]
    if config.stop_strings and tokenizer is not None:
        kwargs["stop_strings"] = list(config.stop_strings)
    if config.frequency_penalty or config.presence_penalty:
        kwargs["logits_processor"] = LogitsProcessorList(
            [FrequencyPresencePenalty(config.frequency_penalty, config.presence_penalty, prompt_length)]
        )
    return kwargs


def _ids(tokenizer: Any, text: str) -> list[int]:
    if tokenizer is None:
        raise ValueError(f"{text!r} is text: turning it into token ids needs the tokenizer")
    return list(tokenizer.encode(text, add_special_tokens=False))


def token_biases(config: DecodingConfig, tokenizer: Any = None) -> dict[tuple[int], float]:
    """logit_bias as HF's sequence_bias: one-token sequences; a text biases each of its tokens (repeats add up)."""
    out: dict[tuple[int], float] = {}
    for key, bias in config.logit_bias:
        for token in [key] if isinstance(key, int) else _ids(tokenizer, key):
            out[(token,)] = out.get((token,), 0.0) + bias
    return out
