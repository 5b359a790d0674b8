"""Penalties and constraints: logit bias, banned sequences, min-new-tokens, repetition/frequency/presence.

Each function takes float32 logits [N, V], the RowSettings, the RowState and the step, and returns
new logits. Neutral settings are exact no-ops.
"""

from __future__ import annotations

import torch

NEG_INF = float("-inf")


def logit_bias(x, s, state, step):
    """OpenAI / vLLM / llama.cpp logit_bias: add each row's bias; -inf bans."""
    return x + s.bias


def banned_strings(x, s, state, step):
    """HF NoBadWordsLogitsProcessor over each row's banned token sequences."""
    banned = s.banned.always
    if s.banned.groups:
        banned = banned.clone()
        history = state.history
        length = history.shape[1]
        for rows, prefixes, last in s.banned.groups:
            if prefixes.shape[1] > length:
                continue
            match = (history[rows, length - prefixes.shape[1]:] == prefixes).all(dim=1)
            flat = torch.where(match, rows * s.vocab + last, banned.numel())
            padded = torch.cat([banned.reshape(-1), banned.new_zeros(1)])
            padded[flat] = True
            banned = padded[:-1].reshape(banned.shape)
    return x.masked_fill(banned, NEG_INF)


def min_new_tokens(x, s, state, step):
    """HF MinNewTokensLengthLogitsProcessor: EOS is forbidden before min_new_tokens tokens."""
    eos = state.eos_ids
    if eos is None or not eos.numel():
        return x
    early = (step < s.min_new_tokens)[:, None]
    x = x.clone()
    x[:, eos] = torch.where(early, NEG_INF, x[:, eos])
    return x


def penalties(x, s, state, step):
    """Repetition penalty (HF/CTRL, optionally over the last N tokens) then frequency/presence (OpenAI)."""
    if state.seen is not None:
        seen = _recent(s, state) if "repetition_penalty_last_n" in s.uses else state.seen
        x = torch.where(seen, torch.where(x < 0, x * s.repetition_penalty, x / s.repetition_penalty), x)
    if state.counts is not None:
        x = x - s.frequency_penalty * state.counts - s.presence_penalty * (state.counts > 0)
    return x


def _recent(s, state) -> torch.Tensor:
    """[N, V] tokens among each row's last repetition_penalty_last_n tokens (0 = all of them)."""
    history = state.history
    n_rows, length = history.shape
    window = s.repetition_penalty_last_n
    start = torch.where(window > 0, length - window, 0).clamp(min=0)
    inside = torch.arange(length, device=history.device)[None, :] >= start[:, None]
    seen = torch.zeros(n_rows, s.vocab + 1, dtype=torch.bool, device=history.device)
    seen.scatter_(1, torch.where(inside & (history >= 0), history, s.vocab), True)
    return seen[:, : s.vocab]
