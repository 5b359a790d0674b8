"""Truncation filters: each removes tokens (sets them to -inf) by its own rule, per row.

HF's warpers (top-k, top-p, min-p, typical-p, epsilon, eta) are matched exactly, ties included;
top-n-sigma and XTC follow llama.cpp.
"""

from __future__ import annotations

import torch

from .noise import SALT_XTC, uniform_rows

NEG_INF = float("-inf")


def on_rows(x: torch.Tensor, rows: torch.Tensor, fn) -> torch.Tensor:
    """Apply fn(rows, x[rows]) only to the given rows (the stage is an exact no-op for the others)."""
    if rows.numel() == x.shape[0]:
        return fn(rows, x)
    if rows.numel() == 0:
        return x
    out = x.clone()
    out[rows] = fn(rows, x[rows])
    return out


def top_k(x, s, state, step):
    """HF TopKLogitsWarper: keep logits >= the k-th largest (so ties with it stay). Off rows: k = V."""
    k = s.top_k
    kth = x.topk(s.kmax, dim=-1).values.gather(1, (k.clamp(max=s.kmax) - 1)[:, None])
    return x.masked_fill((x < kth) & (k < s.vocab)[:, None], NEG_INF)


def top_p(x, s, state, step):
    """HF TopPLogitsWarper, with the very sort call HF makes (ascending, not stable), so ties keep the ids HF keeps."""
    def apply(rows, sub):
        sorted_x, order = torch.sort(sub, descending=False)
        drop = sorted_x.softmax(dim=-1).cumsum(dim=-1) <= 1 - s.top_p[rows]
        drop[:, -1] = False
        return sub.masked_fill(drop.scatter(1, order, drop), NEG_INF)

    return on_rows(x, s.rows["top_p"], apply)


def min_p(x, s, state, step):
    """HF MinPLogitsWarper (the top token always passes, so no sort is needed)."""
    probs = x.softmax(dim=-1)
    return x.masked_fill(probs < s.min_p * probs.amax(dim=-1, keepdim=True), NEG_INF)


def typical_p(x, s, state, step):
    """HF TypicalLogitsWarper."""
    def apply(rows, sub):
        mass = s.typical_p[rows]
        logp = torch.log_softmax(sub, dim=-1)
        ent = -(logp * logp.exp()).nansum(-1, keepdim=True)
        shifted = (-logp - ent).abs()
        sorted_scores, order = torch.sort(shifted, dim=-1)
        cumulative = sub.gather(1, order).softmax(dim=-1).cumsum(dim=-1)
        last = (cumulative < mass).sum(dim=1).clamp(max=sub.shape[1] - 1)
        drop_sorted = sorted_scores > sorted_scores.gather(1, last[:, None])
        drop_sorted[:, 0] = False
        return sub.masked_fill(drop_sorted.scatter(1, order, drop_sorted), NEG_INF)

    return on_rows(x, s.rows["typical_p"], apply)


def epsilon_cutoff(x, s, state, step):
    """HF EpsilonLogitsWarper: drop p < epsilon, always keeping the top token. Off rows: epsilon 0."""
    probs = x.softmax(dim=-1)
    return x.masked_fill((probs < s.epsilon_cutoff) & (x < x.amax(dim=-1, keepdim=True)), NEG_INF)


def eta_cutoff(x, s, state, step):
    """HF EtaLogitsWarper: drop p < min(eta, sqrt(eta) exp(-entropy)), always keeping the top token."""
    logp = torch.log_softmax(x, dim=-1)
    probs = logp.exp()
    entropy = -torch.where(probs > 0, probs * logp, 0.0).sum(dim=-1, keepdim=True)
    eta = torch.minimum(s.eta_cutoff, s.eta_cutoff.sqrt() * torch.exp(-entropy))
    return x.masked_fill((probs < eta) & (x < x.amax(dim=-1, keepdim=True)), NEG_INF)


def top_n_sigma(x, s, state, step):
    """llama.cpp top-n-sigma: keep logits >= max - n * std, the std over the finite logits. Off rows: n = 0."""
    finite = torch.isfinite(x)
    count = finite.sum(dim=-1, keepdim=True).clamp(min=1)
    values = torch.where(finite, x, 0.0)
    mean = values.sum(dim=-1, keepdim=True) / count
    std = (torch.where(finite, (x - mean) ** 2, 0.0).sum(dim=-1, keepdim=True) / count).sqrt()
    on = (s.top_n_sigma > 0) & (count > 1)
    return x.masked_fill(on & (x < x.amax(dim=-1, keepdim=True) - s.top_n_sigma * std), NEG_INF)


def xtc(x, s, state, step):
    """llama.cpp XTC: with probability p (the row's own seeded coin), remove every token with probability
    >= threshold except the least likely of them, when there are at least two."""
    coin = uniform_rows(s.seed_lo, s.seed_hi, step, SALT_XTC)
    on = (coin <= s.xtc_probability) & (s.xtc_probability > 0) & (s.xtc_threshold <= 0.5)
    probs = x.softmax(dim=-1)
    top = probs >= s.xtc_threshold
    weakest = torch.where(top, probs, torch.inf).amin(dim=-1, keepdim=True)
    remove = top & (probs > weakest) & (top.sum(dim=-1, keepdim=True) >= 2) & on
    return x.masked_fill(remove, NEG_INF)


def top_h(x, s, state, step):
    """HF TopHLogitsWarper: over the top 100 tokens (renormalised among themselves), keep the likeliest while
    their summed entropy terms -p log p stay within top_h x those tokens' entropy; the top token always stays."""
    def apply(rows, sub):
        n = min(TOP_H_CANDIDATES, sub.shape[1])
        top_logits, top_ids = torch.topk(sub, n, dim=-1, largest=True, sorted=True)  # HF's very call: same ties
        # the arithmetic of HF's Categorical, step for step, so the boundary falls where HF's does
        normalized = top_logits - top_logits.logsumexp(dim=-1, keepdim=True)
        probs = normalized.softmax(dim=-1)
        entropy = -(normalized.clamp(min=torch.finfo(normalized.dtype).min) * probs).sum(-1, keepdim=True)
        keep = (-probs * probs.log()).cumsum(dim=-1) <= entropy * s.top_h[rows]
        keep[:, 0] = True
        mask = torch.zeros_like(sub, dtype=torch.bool).scatter_(1, top_ids, keep)
        return sub.masked_fill(~mask, NEG_INF)

    return on_rows(x, s.rows["top_h"], apply)


TOP_H_CANDIDATES = 100  # HF's top_n: Top-H looks at the 100 likeliest tokens only


def tfs(x, s, state, step):
    """Tail-free sampling as text-generation-webui does it: sort descending, take the absolute second
    difference of the probabilities, normalise it to sum 1; cut where its running sum passes z. The top
    token always stays and the last one always goes (the 'centred' cut of the original)."""
    def apply(rows, sub):
        sorted_x, order = torch.sort(sub, descending=True)
        probs = sorted_x.softmax(dim=-1)
        d2 = probs.diff().diff().abs()
        cdf = (d2 / d2.sum(dim=-1, keepdim=True)).cumsum(dim=-1)
        edge = torch.ones_like(cdf[:, :1], dtype=torch.bool)
        drop = torch.cat([~edge, cdf > s.tfs[rows], edge], dim=-1)
        return sub.masked_fill(drop.scatter(1, order, drop), NEG_INF)

    return on_rows(x, s.rows["tfs"], apply)


def top_a(x, s, state, step):
    """text-generation-webui's top-a: drop tokens whose probability is below top_a x (top probability)^2."""
    probs = x.softmax(dim=-1)
    top = probs.amax(dim=-1, keepdim=True)
    return x.masked_fill(probs < top * top * s.top_a, NEG_INF)
