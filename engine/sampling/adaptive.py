"""Stages that adapt to the distribution or to the row's past: temperature with llama.cpp's dynamic
temperature (temp_ext), and Mirostat v1/v2 (which keeps each row's mu and moves it after each draw)."""

from __future__ import annotations

import math

import torch

from .stage import Stage, Step

NEG_INF = float("-inf")
MIROSTAT_M = 100  # llama.cpp's common sampler estimates Zipf's exponent from the top 100 tokens


class Temperature(Stage):
    """HF TemperatureLogitsWarper; rows with dynatemp_range use llama.cpp's entropy-scaled temperature."""

    name, effect, whole_batch = "temperature", "reshape", True
    temperature: torch.Tensor  # [n, 1] per row
    dynatemp_range: torch.Tensor  # [n, 1] per row
    dynatemp_exponent: torch.Tensor  # [n, 1] per row

    def prepare(self) -> None:
        super().prepare()
        dynamic = [i for i, c in enumerate(self.rows.configs) if c.dynatemp_range > 0]
        self.dynamic = torch.tensor(dynamic, dtype=torch.long, device=self.device) if dynamic else None

    def select(self, keep: torch.Tensor) -> None:
        super().select(keep)
        self.prepare()

    def apply(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        out = x / self.temperature
        rows = self.dynamic
        if rows is not None:
            out[rows] = _dynatemp(x[rows], self.temperature[rows], self.dynatemp_range[rows],
                                  self.dynatemp_exponent[rows])
        return out


def _dynatemp(x: torch.Tensor, t: torch.Tensor, r: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """llama.cpp temp_ext: T' = max(0, T - r) + 2r' (H / log n)^exponent, n the surviving candidates."""
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


class Mirostat(Stage):
    """llama.cpp Mirostat: v1 keeps the top k, k from an estimated Zipf exponent and mu; v2 drops tokens
    whose surprise (bits) exceeds mu. The row then samples from what is left, and accept() moves mu by the
    surprise of the token it drew (mu starts at 2 tau, as in llama.cpp)."""

    name, effect, keeps_top = "mirostat", "mask", True
    mirostat: torch.Tensor  # [n] per row: the version, 1 or 2
    mirostat_tau: torch.Tensor  # [n, 1] per row
    mirostat_eta: torch.Tensor  # [n, 1] per row
    mu: torch.Tensor  # [n] per row: the surprise limit, moved by accept()

    def prepare(self) -> None:
        super().prepare()
        self.hold(mu=2 * self.mirostat_tau[:, 0].clone())

    def apply(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        mu = self.mu[:, None]
        version = self.mirostat[:, None]
        probs = x.softmax(dim=-1)
        best = x >= x.amax(dim=-1, keepdim=True)
        v2_drop = (-torch.log2(probs) > mu) & ~best
        return x.masked_fill(torch.where(version == 2, v2_drop, _mirostat_v1_drop(x, probs, mu, self.vocab)), NEG_INF)

    def accept(self, tokens: torch.Tensor, processed: torch.Tensor | None) -> None:
        if processed is None:  # a forced token (a branch's prefix) was not drawn: mu stays
            return
        logp = torch.log_softmax(processed, dim=-1).gather(1, tokens[:, None])[:, 0]
        surprise = -logp / math.log(2)
        self.mu = self.mu - self.mirostat_eta[:, 0] * (surprise - self.mirostat_tau[:, 0])


def _mirostat_v1_drop(x: torch.Tensor, probs: torch.Tensor, mu: torch.Tensor, vocab: int) -> torch.Tensor:
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
