"""Stages that adapt to the distribution or to the row's past: temperature with llama.cpp's dynamic
temperature (temp_ext), and Mirostat v1/v2 (whose mu the RowState moves after each draw)."""

from __future__ import annotations

import torch

from .filters import on_rows

NEG_INF = float("-inf")
MIROSTAT_M = 100  # llama.cpp's common sampler estimates Zipf's exponent from the top 100 tokens


def temperature(x, s, state, step):
    """HF TemperatureLogitsWarper; rows with dynatemp_range use llama.cpp's entropy-scaled temperature."""
    out = x / s.temperature if "temperature" in s.uses else x
    rows = s.rows["dynatemp"]
    if rows.numel():
        out = out.clone() if out is x else out
        out[rows] = _dynatemp(x[rows], s, rows)
    return out


def _dynatemp(x, s, rows):
    """llama.cpp temp_ext: T' = max(0, T - r) + 2r' (H / log n)^exponent, n the surviving candidates."""
    t, r, exponent = s.temperature[rows], s.dynatemp_range[rows], s.dynatemp_exponent[rows]
    low, high = (t - r).clamp(min=0), t + r
    count = torch.isfinite(x).sum(dim=-1, keepdim=True)
    logp = torch.log_softmax(x, dim=-1)
    probs = logp.exp()
    entropy = -torch.where(probs > 0, probs * logp, 0.0).sum(dim=-1, keepdim=True)
    normalized = entropy / torch.log(count.clamp(min=2).float())
    dyn = low + (high - low) * normalized.pow(exponent)
    best = x.argmax(dim=-1, keepdim=True)
    only_best = torch.full_like(x, NEG_INF).scatter(1, best, x.gather(1, best))  # llama.cpp's T <= 0 case
    scaled = torch.where(dyn > 0, x / dyn.clamp(min=1e-30), only_best)
    return torch.where(count > 1, scaled, x)


def mirostat(x, s, state, step):
    """llama.cpp Mirostat: v1 keeps the top k, k from an estimated Zipf exponent and mu; v2 drops tokens
    whose surprise (bits) exceeds mu. The row then samples from what is left; RowState.update moves mu."""
    def apply(rows, sub):
        mu = state.mu[rows][:, None]
        version = s.mirostat[rows][:, None]
        probs = sub.softmax(dim=-1)
        best = sub >= sub.amax(dim=-1, keepdim=True)
        v2_drop = (-torch.log2(probs) > mu) & ~best
        return sub.masked_fill(torch.where(version == 2, v2_drop, _mirostat_v1_drop(sub, probs, mu, s.vocab)),
                               NEG_INF)

    return on_rows(x, s.rows["mirostat"], apply)


def _mirostat_v1_drop(x, probs, mu, vocab: int) -> torch.Tensor:
    m = min(MIROSTAT_M, x.shape[1])
    top = probs.topk(m, dim=-1).values  # [R, m], descending
    finite = torch.isfinite(x).sum(dim=-1, keepdim=True)
    i = torch.arange(m - 1, device=x.device, dtype=torch.float32)[None, :]
    t = torch.log((i + 2) / (i + 1))
    b = torch.log(top[:, :-1] / top[:, 1:])
    use = i < (finite - 1)
    s_hat = torch.where(use, t * b, 0.0).sum(-1, keepdim=True) / torch.where(use, t * t, 0.0).sum(-1, keepdim=True)
    eps = s_hat - 1
    k = ((eps * torch.pow(2.0, mu)) / (1 - torch.pow(float(vocab), -eps))).pow(1 / s_hat)
    k = torch.nan_to_num(k, nan=1.0, posinf=float(vocab)).clamp(1, vocab).floor().long()
    largest = int(k.max())
    kth = x.topk(largest, dim=-1).values.gather(1, k - 1)
    return x < kth
