"""The sampler chain: every stage, in its default order, on one screen.

    constraints (always first)   logit_bias -> banned_strings -> min_new_tokens
    reorderable (sampler_order)  penalties -> dry -> no_repeat_ngram
                                 -- greedy rows stop here: warpers are neutral for them (HF) --
                                 -> temperature (+ dynatemp) -> top_n_sigma -> top_k -> top_p -> min_p
                                 -> typical_p -> epsilon_cutoff -> eta_cutoff -> xtc
    selection (always last)      mirostat -> pick (argmax, or argmax + the row's own Gumbel noise)

The default order is HF transformers 5.x's for the processors it has (repetition penalty ->
no-repeat-ngram -> bad words -> min-new-tokens -> temperature -> top-k -> top-p -> min-p ->
typical-p -> epsilon -> eta). Masks (bans, min-new-tokens) commute with the penalties, so running
them first changes nothing. A stage no row uses is skipped and costs nothing; every neutral value
is an exact no-op, so rows never influence each other.
"""

from __future__ import annotations

import torch

from engine.config import SAMPLER_STAGES
from engine.sampling import adaptive, filters, penalties, repetition
from engine.sampling.noise import gumbel_noise

CONSTRAINTS = {"logit_bias": penalties.logit_bias, "banned_strings": penalties.banned_strings,
               "min_new_tokens": penalties.min_new_tokens}
REORDERABLE = {
    "penalties": penalties.penalties,  # repetition (HF, optional last-N window), frequency/presence (OpenAI)
    "dry": repetition.dry,  # llama.cpp DRY
    "no_repeat_ngram": repetition.no_repeat_ngram,  # HF
    "temperature": adaptive.temperature,  # HF temperature, llama.cpp dynamic temperature
    "top_n_sigma": filters.top_n_sigma,  # llama.cpp
    "top_k": filters.top_k,  # HF
    "top_p": filters.top_p,  # HF
    "min_p": filters.min_p,  # HF
    "typical_p": filters.typical_p,  # HF
    "epsilon_cutoff": filters.epsilon_cutoff,  # HF
    "eta_cutoff": filters.eta_cutoff,  # HF
    "xtc": filters.xtc,  # llama.cpp
}
SELECTION = {"mirostat": adaptive.mirostat}  # llama.cpp; ends the chain as in llama.cpp
assert tuple(REORDERABLE) == SAMPLER_STAGES, "engine.config.SAMPLER_STAGES must list the same stages"


def process(logits: torch.Tensor, s, state, step: int, eos_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Every row's constraints, penalties, temperature and filters on float32 logits [N, V]."""
    if eos_ids is not None:
        state.eos_ids = eos_ids
    x = logits.float()
    if not s.groups:
        return _chain(x, s, state, step, s.order)
    out = x.clone()
    for rows, sub in s.groups:  # rows whose sampler_order differs run their own chain
        out[rows] = _chain(x[rows], sub, state.take(rows), step, sub.order)
    return out


def _chain(x, s, state, step, order):
    for name, stage in CONSTRAINTS.items():
        if name in s.uses:
            x = stage(x, s, state, step)
    for name in order:
        if name in s.uses:
            x = REORDERABLE[name](x, s, state, step)
    for name, stage in SELECTION.items():
        if name in s.uses:
            x = stage(x, s, state, step)
    return x


def pick(processed: torch.Tensor, s, step: int, token_hash: torch.Tensor) -> torch.Tensor:
    """Greedy rows take the argmax; sampling rows the argmax after adding their own Gumbel noise."""
    tokens = processed.argmax(dim=-1)
    if "sample" not in s.uses:
        return tokens
    rows = s.rows["sample"]
    noise = gumbel_noise(s.seed_lo[rows], s.seed_hi[rows], step, token_hash)
    tokens[rows] = (processed[rows] + noise).argmax(dim=-1)
    return tokens
