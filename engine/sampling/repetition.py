"""Sequence-level repetition stages: DRY (llama.cpp's, from koboldcpp) and HF's no-repeat-ngram."""

from __future__ import annotations

from typing import Sequence

import torch

from . import vocab as vocab_tools
from .stage import Stage, Step

NEG_INF = float("-inf")
FLOAT_MAX_LOG = 88.7228391  # log of float32's largest value: DRY's exponent is clamped below it


def banned_ngram_tokens(seq: torch.Tensor, sizes: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """[N, V] mask of tokens that would repeat an n-gram already in each row (n per row, 0 = off)."""
    n_rows, length = seq.shape
    sizes = sizes.clamp(max=length + 1)  # an n-gram longer than the text can never repeat: no work, no memory
    n_max = int(sizes.max())
    padded = torch.cat([seq, seq.new_full((n_rows, n_max - 1), -1)], dim=1)
    windows = padded.unfold(1, n_max, 1)  # [N, L, n_max]: the n-gram starting at each position
    k = torch.arange(n_max - 1, device=seq.device)
    tail_idx = (length - sizes[:, None] + 1 + k[None, :]).clamp(0, max(length - 1, 0))
    tail = seq.gather(1, tail_idx)  # the last n-1 tokens of each row
    in_prefix = k[None, :] < (sizes[:, None] - 1)  # [N, n_max-1]
    same = (windows[:, :, : n_max - 1] == tail[:, None, :]) | ~in_prefix[:, None, :]
    target = windows.gather(2, (sizes - 1).clamp(min=0)[:, None, None].expand(n_rows, length, 1))[..., 0]
    starts = torch.arange(length, device=seq.device)
    valid = (starts[None, :] + sizes[:, None] <= length) & (sizes[:, None] > 0) & (length + 1 >= sizes[:, None])
    hit = same.all(dim=2) & valid & (target >= 0)
    banned = torch.zeros(n_rows, vocab_size + 1, dtype=torch.bool, device=seq.device)
    banned.scatter_(1, torch.where(hit, target, vocab_size), True)
    return banned[:, :vocab_size]


class NoRepeatNgram(Stage):
    """HF NoRepeatNGramLogitsProcessor, per row n."""

    name, effect, history = "no_repeat_ngram", "mask", True
    no_repeat_ngram_size: torch.Tensor  # [n] per row (0: off)

    def apply(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        assert step.history is not None  # the stage reads the history (history = True): the chain gives it
        return x.masked_fill(banned_ngram_tokens(step.history, self.no_repeat_ngram_size, x.shape[1]), NEG_INF)


class DRY(Stage):
    """DRY: subtract multiplier x base^(L - allowed) from each token that would extend a repeat of length L.

    Same result as llama.cpp's sampler: look back over the last dry_penalty_last_n tokens (prompt
    included), stop at the latest sequence breaker, find every earlier place where the text's end
    already occurred, and penalise the token that followed it. Breaker tokens are never penalised.
    """

    name, effect, history = "dry", "reshape", True
    dry_multiplier: torch.Tensor  # [n, 1] per row
    dry_base: torch.Tensor  # [n, 1] per row
    dry_allowed_length: torch.Tensor  # [n] per row
    dry_penalty_last_n: torch.Tensor  # [n] per row (0: the whole text)

    def prepare(self) -> None:
        super().prepare()
        self.breakers = vocab_tools.DryBreakers.build([c.dry_sequence_breakers for c in self.rows.configs],
                                                      self.rows.tokenizer, self.vocab, self.device)

    def select(self, keep: torch.Tensor) -> None:
        super().select(keep)
        self.breakers = self.breakers.subset(keep.tolist())

    def apply(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        assert step.history is not None  # the stage reads the history (history = True): the chain gives it
        return dry(x, self, step.history)


def dry(x: torch.Tensor, s: DRY, history: torch.Tensor) -> torch.Tensor:
    """The DRY penalty of the rows of s (its per-row settings and breakers) given their history."""
    n_rows, length = history.shape
    last_n = s.dry_penalty_last_n
    real = (history >= 0).sum(dim=1)  # rows of a multi-prompt batch are left-padded with -1
    width = torch.where(last_n > 0, last_n.minimum(real), real)  # [N] window per row
    span = int(width.max())
    pos = torch.arange(span, device=x.device)
    rev = history[:, length - span:].flip(1)  # rev[:, i]: the token i places before the end
    inside = pos[None, :] < width[:, None]
    rev = torch.where(inside, rev, -1 - pos[None, :])  # outside the window: never matches
    allowed = s.dry_allowed_length
    limit = _repeat_limit(rev, inside, width, s.breakers.single, s.breakers.tails)
    matched = _suffix_matches(rev).minimum(limit[:, None])  # [N, span]: repeat length at shift k
    k = pos[1:]
    ends = (matched[:, 1:] >= allowed[:, None]) & (k[None, :] < width[:, None])
    follower = rev[:, :-1].clamp(min=0)  # the token after the repeat at shift k (rev[k - 1])
    longest = torch.full((n_rows, s.vocab), -1, dtype=torch.long, device=x.device)
    longest.scatter_reduce_(1, follower, torch.where(ends, matched[:, 1:], -1), reduce="amax")
    active = (s.dry_multiplier[:, 0] > 0) & (width > allowed) & (limit >= allowed)
    hit = (longest >= allowed[:, None]) & ~s.breakers.single & active[:, None]
    exponent = (longest - allowed[:, None]).clamp(min=0).float()
    base = s.dry_base
    max_exp = torch.where(base > 1.000001, torch.floor(FLOAT_MAX_LOG / base.log()), torch.inf)
    penalty = s.dry_multiplier * base.pow(exponent.minimum(max_exp))
    return torch.where(hit, x - penalty, x)


def _suffix_matches(rev: torch.Tensor) -> torch.Tensor:
    """[N, span]: how many tokens at shift k match the end of the text (rev[n] == rev[n + k], n = 0, 1, ...)."""
    n_rows, span = rev.shape
    lengths = torch.zeros_like(rev)
    going = torch.ones_like(rev, dtype=torch.bool)
    going[:, 0] = False
    for n in range(span):
        same = torch.zeros_like(going)
        same[:, : span - n] = rev[:, n:] == rev[:, n : n + 1]
        going &= same
        lengths += going
        if n % 4 == 3 and not bool(going.any()):
            break
    return lengths


def _repeat_limit(rev: torch.Tensor, inside: torch.Tensor, width: torch.Tensor, single: torch.Tensor,
                  tails: Sequence[tuple[int, int, tuple[int, ...]]]) -> torch.Tensor:
    """[N] how far back a repeat may reach: up to the latest sequence breaker (llama.cpp's rep_limit)."""
    n_rows, span = rev.shape
    hit_len = torch.where(inside & single.gather(1, rev.clamp(min=0)), 0, -1)
    for row, head, tail in tails:
        size = len(tail)
        if size >= span:
            continue
        tokens = rev[row]
        ok = tokens[size:] == head
        for o, token in enumerate(tail):
            ok &= tokens[size - 1 - o : span - 1 - o] == token
        ok &= inside[row, size:]
        current = hit_len[row, size:]
        hit_len[row, size:] = torch.where(ok, current.clamp(min=size), current)
    found = hit_len >= 0
    first = torch.where(found, torch.arange(span, device=rev.device)[None, :], span).amin(dim=1)
    at_first = hit_len.gather(1, first.clamp(max=span - 1)[:, None])[:, 0]
    return torch.where(first < span, first - at_first, width)
