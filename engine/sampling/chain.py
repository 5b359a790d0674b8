"""The sampler chain: every stage, in its default order, on one screen.

    constraints (always first)   logit_bias -> banned_strings -> min_new_tokens
    reorderable (sampler_order)  penalties -> dry -> no_repeat_ngram
                                 -- greedy rows stop here: warpers are neutral for them (HF) --
                                 -> temperature (+ dynatemp) -> top_n_sigma -> top_k -> top_p -> min_p
                                 -> typical_p -> epsilon_cutoff -> eta_cutoff -> xtc
    selection (always last)      mirostat -> pick (argmax, or a draw with the row's own seeded uniform)

The default order is HF transformers 5.x's for the processors it has (repetition penalty ->
no-repeat-ngram -> bad words -> min-new-tokens -> temperature -> top-k -> top-p -> min-p ->
typical-p -> epsilon -> eta). Masks (bans, min-new-tokens) commute with the penalties, so running
them first changes nothing. A stage no row uses is skipped and costs nothing; every neutral value
is an exact no-op, so rows never influence each other.
"""

from __future__ import annotations

import torch

from ..config import SAMPLER_STAGES
from . import adaptive, filters, penalties, repetition
from .filters import on_rows
from .noise import sample_uniforms

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
assert tuple(REORDERABLE) == SAMPLER_STAGES, "decodelab.engine.config.SAMPLER_STAGES must list the same stages"


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
            x = _run(REORDERABLE[name], s.views.get(name), x, s, state, step)
    for name, stage in SELECTION.items():
        if name in s.uses:
            x = stage(x, s, state, step)
    return x


def _run(stage, view, x, s, state, step):
    """Run a stage on the whole batch, or only on the rows that use it (its view)."""
    if view is None:
        return stage(x, s, state, step)
    rows, sub = view
    return on_rows(x, rows, lambda _, part: stage(part, sub, state.take(rows), step))


def pick(processed: torch.Tensor, s, step: int) -> torch.Tensor:
    """Greedy rows take the argmax; a sampling row draws from its own distribution with its own uniform
    number u (seed, step): the first token, in id order, whose cumulative probability passes u.

    Zero-probability (filtered) tokens can never be drawn; the draw depends on nothing but the row's
    processed logits, seed and step.
    """
    tokens = processed.argmax(dim=-1)
    if "sample" not in s.uses:
        return tokens
    rows = s.rows["sample"]
    sub = processed if rows.numel() == processed.shape[0] else processed[rows]
    weights = (sub - sub.amax(dim=-1, keepdim=True)).exp_()  # unnormalised: the total scales u instead
    cdf = weights.double().cumsum_(dim=-1)
    u = sample_uniforms(s.seed_lo[rows], s.seed_hi[rows], step)
    drawn = torch.searchsorted(cdf, u * cdf[:, -1:], right=True)[:, 0]
    tokens[rows] = drawn.clamp_(max=processed.shape[1] - 1)
    return tokens
