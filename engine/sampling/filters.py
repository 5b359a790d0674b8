"""Truncation filters: each removes tokens (sets them to -inf) by its own rule, per row.

HF's warpers (top-k, top-p, min-p, typical-p, epsilon, eta, top-H) are matched exactly, ties included;
top-n-sigma and XTC follow llama.cpp; tail-free and top-a follow text-generation-webui; p-less follows its
paper (Tan, Wu and Howard, ICLR 2026).
"""

from __future__ import annotations

import torch

from .noise import SALT_XTC, uniform_rows
from .stage import NEG_INF, Stage, Step


class TopK(Stage):
    """HF TopKLogitsWarper: keep logits >= the k-th largest (so ties with it stay); k >= V keeps everything."""

    name, effect, keeps_top = "top_k", "mask", True
    k: torch.Tensor  # [n] per row: top_k, at most the vocabulary

    def prepare(self) -> None:
        self.hold(k=self.column("top_k").clamp(max=self.vocab))

    def apply(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        kmax = int(self.k.max())
        kth = x.topk(kmax, dim=-1).values.gather(1, (self.k - 1)[:, None])
        return x.masked_fill((x < kth) & (self.k < x.shape[1])[:, None], NEG_INF)


class TopP(Stage):
    """HF TopPLogitsWarper, with the very sort call HF makes (ascending, not stable), so ties keep the ids HF keeps."""

    name, effect, keeps_top = "top_p", "mask", True
    top_p: torch.Tensor  # [n, 1] per row

    def apply(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        sorted_x, order = torch.sort(x, descending=False)
        drop = sorted_x.softmax(dim=-1).cumsum(dim=-1) <= 1 - self.top_p
        drop[:, -1] = False
        return x.masked_fill(drop.scatter(1, order, drop), NEG_INF)


class MinP(Stage):
    """HF MinPLogitsWarper (the top token always passes, so no sort is needed)."""

    name, effect, keeps_top, whole_batch = "min_p", "mask", True, True
    min_p: torch.Tensor  # [n, 1] per row

    def apply(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        probs = x.softmax(dim=-1)
        return x.masked_fill(probs < self.min_p * probs.amax(dim=-1, keepdim=True), NEG_INF)


class TypicalP(Stage):
    """HF TypicalLogitsWarper."""

    name, effect = "typical_p", "mask"
    typical_p: torch.Tensor  # [n, 1] per row

    def apply(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        logp = torch.log_softmax(x, dim=-1)
        ent = -(logp * logp.exp()).nansum(-1, keepdim=True)
        shifted = (-logp - ent).abs()
        sorted_scores, order = torch.sort(shifted, dim=-1)
        cumulative = x.gather(1, order).softmax(dim=-1).cumsum(dim=-1)
        last = (cumulative < self.typical_p).sum(dim=1).clamp(max=x.shape[1] - 1)
        drop_sorted = sorted_scores > sorted_scores.gather(1, last[:, None])
        drop_sorted[:, 0] = False
        return x.masked_fill(drop_sorted.scatter(1, order, drop_sorted), NEG_INF)


class EpsilonCutoff(Stage):
    """HF EpsilonLogitsWarper: drop p < epsilon, always keeping the top token."""

    name, effect, keeps_top = "epsilon_cutoff", "mask", True
    epsilon_cutoff: torch.Tensor  # [n, 1] per row

    def apply(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        probs = x.softmax(dim=-1)
        return x.masked_fill((probs < self.epsilon_cutoff) & (x < x.amax(dim=-1, keepdim=True)), NEG_INF)


class EtaCutoff(Stage):
    """HF EtaLogitsWarper: drop p < min(eta, sqrt(eta) exp(-entropy)), always keeping the top token."""

    name, effect, keeps_top = "eta_cutoff", "mask", True
    eta_cutoff: torch.Tensor  # [n, 1] per row

    def apply(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        logp = torch.log_softmax(x, dim=-1)
        probs = logp.exp()
        entropy = -torch.where(probs > 0, probs * logp, 0.0).sum(dim=-1, keepdim=True)
        eta = torch.minimum(self.eta_cutoff, self.eta_cutoff.sqrt() * torch.exp(-entropy))
        return x.masked_fill((probs < eta) & (x < x.amax(dim=-1, keepdim=True)), NEG_INF)


class TopNSigma(Stage):
    """llama.cpp top-n-sigma: keep logits >= max - n * std, the std over the finite logits."""

    name, effect, keeps_top = "top_n_sigma", "mask", True
    top_n_sigma: torch.Tensor  # [n, 1] per row

    def apply(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        finite = torch.isfinite(x)
        count = finite.sum(dim=-1, keepdim=True).clamp(min=1)
        mean = torch.where(finite, x, 0.0).sum(dim=-1, keepdim=True) / count
        std = (torch.where(finite, (x - mean) ** 2, 0.0).sum(dim=-1, keepdim=True) / count).sqrt()
        cut = (count > 1) & (x < x.amax(dim=-1, keepdim=True) - self.top_n_sigma * std)
        return x.masked_fill(cut, NEG_INF)


class XTC(Stage):
    """llama.cpp XTC: with probability p (the row's own seeded coin), remove every token with probability
    >= threshold except the least likely of them, when there are at least two."""

    name, effect = "xtc", "mask"
    xtc_probability: torch.Tensor  # [n, 1] per row
    xtc_threshold: torch.Tensor  # [n, 1] per row
    seed_lo: torch.Tensor  # [n] int64: the low 32 bits of each row's seed (the coin's key)
    seed_hi: torch.Tensor  # [n] int64: the high 32 bits

    def prepare(self) -> None:
        super().prepare()
        seeds = self.rows.seeds
        self.hold(seed_lo=torch.tensor([s & 0xFFFFFFFF for s in seeds], dtype=torch.int64, device=self.device),
                  seed_hi=torch.tensor([(s >> 32) & 0xFFFFFFFF for s in seeds], dtype=torch.int64, device=self.device))

    def apply(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        coin = uniform_rows(self.seed_lo, self.seed_hi, step.step, SALT_XTC)
        on = coin <= self.xtc_probability
        probs = x.softmax(dim=-1)
        top = probs >= self.xtc_threshold
        weakest = torch.where(top, probs, torch.inf).amin(dim=-1, keepdim=True)
        remove = top & (probs > weakest) & (top.sum(dim=-1, keepdim=True) >= 2) & on
        return x.masked_fill(remove, NEG_INF)


TOP_H_CANDIDATES = 100  # HF's top_n: Top-H looks at the 100 likeliest tokens only


class TopH(Stage):
    """HF TopHLogitsWarper: over the top 100 tokens (renormalised among themselves), keep the likeliest while
    their summed entropy terms -p log p stay within top_h x those tokens' entropy; the top token always stays."""

    name, effect, keeps_top = "top_h", "mask", True
    top_h: torch.Tensor  # [n, 1] per row

    def apply(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        n = min(TOP_H_CANDIDATES, x.shape[1])
        top_logits, top_ids = torch.topk(x, n, dim=-1, largest=True, sorted=True)  # HF's very call: same ties
        # the arithmetic of HF's Categorical, step for step, so the boundary falls where HF's does
        normalized = top_logits - top_logits.logsumexp(dim=-1, keepdim=True)
        probs = normalized.softmax(dim=-1)
        entropy = -(normalized.clamp(min=torch.finfo(normalized.dtype).min) * probs).sum(-1, keepdim=True)
        keep = (-probs * probs.log()).cumsum(dim=-1) <= entropy * self.top_h
        keep[:, 0] = True
        mask = torch.zeros_like(x, dtype=torch.bool).scatter_(1, top_ids, keep)
        return x.masked_fill(~mask, NEG_INF)


class TailFree(Stage):
    """Tail-free sampling as text-generation-webui does it: sort descending, take the absolute second
    difference of the probabilities, normalise it to sum 1; cut where its running sum passes z. The top
    token always stays and the last one always goes (the 'centred' cut of the original)."""

    name, effect, keeps_top = "tfs", "mask", True
    tfs: torch.Tensor  # [n, 1] per row

    def apply(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        sorted_x, order = torch.sort(x, descending=True)
        probs = sorted_x.softmax(dim=-1)
        d2 = probs.diff().diff().abs()
        cdf = (d2 / d2.sum(dim=-1, keepdim=True)).cumsum(dim=-1)
        edge = torch.ones_like(cdf[:, :1], dtype=torch.bool)
        drop = torch.cat([~edge, cdf > self.tfs, edge], dim=-1)
        return x.masked_fill(drop.scatter(1, order, drop), NEG_INF)


class TopA(Stage):
    """text-generation-webui's top-a: drop tokens whose probability is below top_a x (top probability)^2."""

    name, effect, keeps_top = "top_a", "mask", True
    top_a: torch.Tensor  # [n, 1] per row

    def apply(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        probs = x.softmax(dim=-1)
        top = probs.amax(dim=-1, keepdim=True)
        return x.masked_fill(probs < top * top * self.top_a, NEG_INF)


class PLess(Stage):
    """p-less sampling (Tan, Wu and Howard, "p-less Sampling", ICLR 2026, arXiv 2509.23234): keep the tokens whose
    probability is at least the collision probability L = sum(p^2) of the row's distribution; p-less-norm uses
    (V L - 1) / (V - 1) instead, V the vocabulary size (the authors' reference code). L <= max p, so the most
    likely token always passes; it is also kept explicitly, so float rounding on a flat distribution never
    empties the row."""

    name, effect, keeps_top = "p_less", "mask", True
    norm: torch.Tensor  # [n, 1] bool per row: p_less_norm

    def prepare(self) -> None:
        self.hold(norm=torch.tensor([c.p_less_norm for c in self.rows.configs], device=self.device)[:, None])

    def apply(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        probs = x.softmax(dim=-1)
        collision = probs.square().sum(dim=-1, keepdim=True)
        vocab = x.shape[1]
        threshold = torch.where(self.norm, (vocab * collision - 1) / (vocab - 1), collision)
        return x.masked_fill((probs < threshold) & (x < x.amax(dim=-1, keepdim=True)), NEG_INF)
