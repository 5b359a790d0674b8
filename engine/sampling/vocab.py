"""Texts to token ids, once per run: logit-bias keys, banned strings, DRY sequence breakers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch

from ..config import ConfigError

DRY_MAX_CHARS = 40  # llama.cpp truncates a breaker to 40 characters ...
DRY_MAX_TAIL = 20  # ... and the tokens after its head to 20

_BreakerTable = tuple[list[int], list[tuple[int, tuple[int, ...]]]]
"""(one-token breaker ids, [(head id, tail ids)]): one tokenizer's table for some breakers."""


def _encode(tokenizer: Any, text: str, what: str, field: str) -> list[int]:
    if tokenizer is None:
        raise ConfigError(f"{what} {text!r} is text: it needs the model's tokenizer (give a token id instead)",
                          field=field)
    ids = tokenizer.encode(text, add_special_tokens=False)
    if not ids:
        raise ConfigError(f"{what} {text!r} encodes to no tokens with this model's tokenizer", field=field)
    return list(ids)


def _check_id(token: int, vocab: int, field: str) -> int:
    if token >= vocab:
        raise ConfigError(f"{field} token id {token} is outside this model's vocabulary (0 to {vocab - 1})",
                          field=field)
    return token


def named_ids(items: Iterable[int | str], tokenizer: Any, vocab: int, field: str = "logprob_tokens") -> list[int]:
    """A "tokens" setting (logprob_tokens, stop_token_ids) as token ids: ids as they are, each text its one token
    (a text of several tokens is refused)."""
    out = []
    for item in items:
        if isinstance(item, int):
            out.append(_check_id(item, vocab, field))
            continue
        ids = _encode(tokenizer, item, f"{field} entry", field)
        if len(ids) != 1:
            raise ConfigError(f"{field} entry {item!r} is {len(ids)} tokens with this model's tokenizer "
                              f"({ids}): name one token (its text or id)", field=field)
        out.append(_check_id(ids[0], vocab, field))
    return list(dict.fromkeys(out))


def stop_ids(config: Any, tokenizer: Any) -> list[int]:
    """A config's stop_token_ids as ids (each text its one token); checked against the vocabulary in the preflight."""
    return named_ids(config.stop_token_ids, tokenizer, 2**62, "stop_token_ids") if config.stop_token_ids else []


def bias_matrix(per_row: Sequence[Iterable[tuple[int | str, float]]], tokenizer: Any, vocab: int,
                device: torch.device | str) -> torch.Tensor:
    """[N, V] biases. A text key biases each of its tokens (as llama.cpp's server does); repeats add up."""
    bias = torch.zeros(len(per_row), vocab)
    for r, pairs in enumerate(per_row):
        for key, value in pairs:
            ids = [key] if isinstance(key, int) else _encode(tokenizer, key, "logit_bias key", "logit_bias")
            for token in ids:
                bias[r, _check_id(token, vocab, "logit_bias")] += value
    return bias.to(device)


@dataclass
class BannedSequences:
    """HF bad_words_ids: a one-token sequence is always banned; a longer one bans its last token when the
    tokens before it end the sequence so far."""

    always: torch.Tensor  # [N, V] bool
    groups: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # (rows [S], prefixes [S, L], last [S])

    @classmethod
    def build(cls, per_row: Sequence[Iterable[str]], tokenizer: Any, vocab: int,
              device: torch.device | str) -> BannedSequences:
        always = torch.zeros(len(per_row), vocab, dtype=torch.bool)
        by_length: dict[int, list[tuple[int, list[int]]]] = {}
        for r, texts in enumerate(per_row):
            for text in texts:
                ids = [_check_id(t, vocab, "banned_strings") for t in _encode(tokenizer, text, "banned string", "banned_strings")]
                if len(ids) == 1:
                    always[r, ids[0]] = True
                else:
                    by_length.setdefault(len(ids) - 1, []).append((r, ids))
        groups = []
        for _, items in sorted(by_length.items()):
            rows = torch.tensor([r for r, _ in items], dtype=torch.long, device=device)
            prefixes = torch.tensor([ids[:-1] for _, ids in items], dtype=torch.long, device=device)
            last = torch.tensor([ids[-1] for _, ids in items], dtype=torch.long, device=device)
            groups.append((rows, prefixes, last))
        return cls(always.to(device), groups)


@dataclass
class DryBreakers:
    """llama.cpp's processed DRY sequence breakers, per row.

    A token whose text contains a breaker is a one-token breaker (it ends any repeat and is never
    penalised). A token whose text ends with the start of a breaker is the head of a longer one; the
    rest of the breaker, tokenized, is its tail.
    """

    single: torch.Tensor  # [N, V] bool
    tails: list[tuple[int, int, tuple[int, ...]]]  # (row, head token, tail tokens)

    def subset(self, members: Sequence[int]) -> DryBreakers:
        """The breakers of these rows only, renumbered in this order (a stage view of the rows using DRY)."""
        new = {old: i for i, old in enumerate(members)}
        index = torch.tensor(members, dtype=torch.long, device=self.single.device)
        return DryBreakers(self.single.index_select(0, index),
                           [(new[row], head, tail) for row, head, tail in self.tails if row in new])

    @classmethod
    def build(cls, per_row: Sequence[Iterable[str]], tokenizer: Any, vocab: int,
              device: torch.device | str) -> DryBreakers:
        single = torch.zeros(len(per_row), vocab, dtype=torch.bool)
        tails = []
        for r, breakers in enumerate(per_row):
            if not breakers:
                continue
            heads, row_tails = _breaker_table(tokenizer, tuple(breakers), vocab)
            single[r, heads] = True
            tails += [(r, head, tail) for head, tail in row_tails]
        return cls(single.to(device), tails)


def _token_strings(tokenizer: Any, vocab: int) -> list[str]:
    cached = getattr(tokenizer, "_decodelab_token_strings", None)
    if cached is None or len(cached) != vocab:
        size = min(vocab, len(tokenizer))
        cached = tokenizer.batch_decode([[i] for i in range(size)], skip_special_tokens=False,
                                        clean_up_tokenization_spaces=False) + [""] * (vocab - size)
        try:
            tokenizer._decodelab_token_strings = cached
        except AttributeError:
            pass
    return cached


def _breaker_table(tokenizer: Any, breakers: tuple[str, ...], vocab: int) -> _BreakerTable:
    """(one-token breaker ids, [(head id, tail ids)]) as llama.cpp's get_overlapping_token_sequences builds them."""
    if tokenizer is None:
        raise ConfigError("dry_sequence_breakers are texts: DRY needs the model's tokenizer",
                          field="dry_sequence_breakers")
    cache = tokenizer.__dict__.setdefault("_decodelab_dry_tables", {})
    if (breakers, vocab) not in cache:
        cache[(breakers, vocab)] = _scan_breakers(tokenizer, breakers, vocab)
    return cache[(breakers, vocab)]


def _scan_breakers(tokenizer: Any, breakers: tuple[str, ...], vocab: int) -> _BreakerTable:
    words = _token_strings(tokenizer, vocab)
    heads, tails = set(), set()
    for breaker in breakers:
        breaker = breaker[:DRY_MAX_CHARS]
        for token, word in enumerate(words):
            if breaker in word:
                heads.add(token)
                continue
            for pos in range(len(word)):
                rest = word[pos:]
                if word[pos] == breaker[0] and breaker.startswith(rest):
                    tail = tuple(tokenizer.encode(breaker[len(rest):], add_special_tokens=False))[:DRY_MAX_TAIL]
                    tails.add((token, tail))
    return sorted(heads), sorted(tails)
