"""The sampler chain: the stages of stages.py in their order (a row's sampler_order reorders the middle).

    constraints (always first)   cfg (classifier-free guidance, first as in HF) -> logit_bias -> banned_strings
                                 -> min_new_tokens
    reorderable (sampler_order)  penalties -> dry -> no_repeat_ngram
                                 -- greedy rows stop here: warpers are neutral for them (HF) --
                                 -> temperature (+ dynatemp) -> smoothing -> top_h -> top_n_sigma -> top_k
                                 -> top_p -> min_p -> typical_p -> epsilon_cutoff -> eta_cutoff -> tfs
                                 -> top_a -> xtc
    selection (always last)      mirostat or adaptive_p -> pick (argmax, or a draw with the row's own
                                 seeded uniform)

The default order is HF transformers 5.x's for the processors it has (repetition penalty ->
no-repeat-ngram -> bad words -> min-new-tokens -> temperature -> top-h -> top-k -> top-p -> min-p ->
typical-p -> epsilon -> eta); the text-generation-webui stages it lacks sit where the webui puts them. Masks (bans, min-new-tokens) commute with the penalties, so running
them first changes nothing. A stage no row uses is skipped and costs nothing; every neutral value
is an exact no-op, so rows never influence each other.
"""

from __future__ import annotations

import torch

from .filters import on_rows
from .noise import sample_uniforms
from .stages import STAGES

CONSTRAINTS = [s for s in STAGES if s.place == "constraint"]
SELECTION = [s for s in STAGES if s.place == "selection"]
CHAIN = {s.name: s for s in STAGES if s.place == "chain"}


def process(logits: torch.Tensor, s, state, step: int, eos_ids: torch.Tensor | None = None,
            trace=None) -> torch.Tensor:
    """Every row's constraints, penalties, temperature and filters on float32 logits [N, V].

    trace: a StageTrace (trace.py) that records each stage's output, or None (nothing is recorded)."""
    if eos_ids is not None:
        state.eos_ids = eos_ids
    x = logits.float()
    if not s.groups:
        return _chain(x, s, state, step, s.order, trace, None)
    out = x.clone()
    for rows, sub in s.groups:  # rows whose sampler_order differs run their own chain
        out[rows] = _chain(x[rows], sub, state.take(rows), step, sub.order, trace, rows)
    return out


def _chain(x, s, state, step, order, trace, rows):
    for stage in CONSTRAINTS:
        if stage.name in s.uses:
            x = _traced(trace, stage.name, rows, x, stage.apply(x, s, state, step))
    for name in order:
        if name in s.uses:
            x = _traced(trace, name, rows, x, _run(CHAIN[name].apply, s.views.get(name), x, s, state, step))
    for stage in SELECTION:
        if stage.name in s.uses:
            x = _traced(trace, stage.name, rows, x, stage.apply(x, s, state, step))
    return x


def _traced(trace, name, rows, before, after):
    if trace is not None:
        trace.add(name, rows, before, after)
    return after


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
