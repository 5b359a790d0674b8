"""Stages that reshape the distribution rather than cut it: quadratic ("smoothing") sampling as
text-generation-webui and KoboldCpp write it, and llama.cpp's adaptive-p, which maps each probability
to a logit peaked at a target that moves with the row's running average."""

from __future__ import annotations

import torch

from .filters import on_rows

NEG_INF = float("-inf")
# llama.cpp's adaptive-p constants: how wide the favoured band around the target is, the logit at the
# target, and how fast logits fall off away from it
ADAPTIVE_WIDTH = 0.3
ADAPTIVE_PEAK = 5.0
ADAPTIVE_SHARPNESS = 10.0


def guidance(x, s, state, step):
    """Classifier-free guidance as HF's UnbatchedClassifierFreeGuidanceLogitsProcessor: on log-probabilities,
    scale x (conditional - unconditional) + unconditional, the unconditional ones from the row's guidance row
    (its negative prompt and the same tokens; RowState.uncond, set by the decode loop each step). Without
    them (a branch's forced tokens rescored on their own) the stage leaves the logits as they are."""
    uncond = state.uncond
    if uncond is None:
        return x

    def apply(rows, sub):
        negative = torch.log_softmax(uncond[rows], dim=-1)
        return s.guidance_scale[rows] * (torch.log_softmax(sub, dim=-1) - negative) + negative

    return on_rows(x, s.rows["cfg"], apply)


def smoothing(x, s, state, step):
    """Quadratic sampling: with d = logit - max, the logit becomes max - k f d^2 + c f d^3, where
    k = (3 - curve) / 2 and c = (curve - 1) / 2 (curve 1: quadratic, 3: cubic). Removed tokens stay removed."""
    factor, curve = s.smoothing_factor, s.smoothing_curve
    top = x.amax(dim=-1, keepdim=True)
    d = x - top
    k, c = (3 - curve) / 2, (curve - 1) / 2
    bent = top - k * factor * d * d + c * factor * d * d * d
    return torch.where(torch.isfinite(x) & (factor > 0), bent, x)


def adaptive_p(x, s, state, step):
    """llama.cpp adaptive-p: the target adapts as clamp(2 target - average, 0, 1), the average being the
    decayed mean of the probabilities (before this stage) of the tokens the row drew; each surviving
    token's logit becomes peak - sharpness d^2 / (1 + d), d = |p - target| / width. The row then draws from
    the result; RowState.update moves the average with the drawn token's probability before this stage."""
    rows = s.rows["adaptive_p"]

    def apply(local, sub):
        logp = torch.log_softmax(sub, dim=-1)
        state.remember_before_adaptive(local, logp)
        average = state.adaptive_sum[local][:, None] / state.adaptive_weight[local][:, None]
        target = (2 * s.adaptive_target[local] - average).clamp(0, 1)
        d = ((logp.exp() - target) / ADAPTIVE_WIDTH).abs()
        shaped = ADAPTIVE_PEAK - ADAPTIVE_SHARPNESS * d * d / (1 + d)
        return torch.where(torch.isfinite(sub), shaped, NEG_INF)

    return on_rows(x, rows, apply)
