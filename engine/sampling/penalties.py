"""Penalties and constraints on tokens: logit bias, banned sequences, min-new-tokens, and the repetition (HF/CTRL)
plus frequency/presence (OpenAI) penalties, whose per-row state (tokens seen, counts) they keep themselves."""

from __future__ import annotations

import torch

from . import vocab as vocab_tools
from .stage import NEG_INF, Stage, Step


class LogitBias(Stage):
    """OpenAI / vLLM / llama.cpp logit_bias: add each row's bias; -inf bans. A text key biases each of its tokens."""

    name = "logit_bias"
    bias: torch.Tensor  # [n, V] per row

    def prepare(self) -> None:
        self.hold(bias=vocab_tools.bias_matrix([c.logit_bias for c in self.rows.configs], self.rows.tokenizer,
                                               self.vocab, self.device))

    def apply(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        return x + self.bias


class BannedStrings(Stage):
    """HF NoBadWordsLogitsProcessor over each row's banned token sequences (the texts' own tokens)."""

    name, effect, history = "banned_strings", "mask", True

    def prepare(self) -> None:
        self.banned = vocab_tools.BannedSequences.build([c.banned_strings for c in self.rows.configs],
                                                        self.rows.tokenizer, self.vocab, self.device)

    def select(self, keep: torch.Tensor) -> None:
        super().select(keep)
        self.prepare()  # the sequences are grouped by length across rows: built again for the rows that stay

    def apply(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        banned = self.banned.always
        if self.banned.groups:
            banned = banned.clone()
            history = step.history
            assert history is not None  # the stage reads the history (history = True): the chain gives it
            length = history.shape[1]
            for rows, prefixes, last in self.banned.groups:
                if prefixes.shape[1] > length:
                    continue
                match = (history[rows, length - prefixes.shape[1]:] == prefixes).all(dim=1)
                flat = torch.where(match, rows * self.vocab + last, banned.numel())
                padded = torch.cat([banned.reshape(-1), banned.new_zeros(1)])
                padded[flat] = True
                banned = padded[:-1].reshape(banned.shape)
        return x.masked_fill(banned, NEG_INF)


class MinNewTokens(Stage):
    """HF MinNewTokensLengthLogitsProcessor: EOS is forbidden before min_new_tokens tokens; with ignore_eos
    (llama.cpp's), before max_new_tokens, so never."""

    name, effect = "min_new_tokens", "mask"
    min_new_tokens: torch.Tensor  # [n] per row

    def prepare(self) -> None:
        self.hold(min_new_tokens=torch.tensor([c.max_new_tokens if c.ignore_eos else c.min_new_tokens
                                               for c in self.rows.configs], dtype=torch.long, device=self.device))

    def apply(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        eos = self.rows.eos_ids
        if eos is None or not eos.numel():
            return x
        early = (step.step < self.min_new_tokens)[:, None]
        x = x.clone()
        x[:, eos] = torch.where(early, NEG_INF, x[:, eos])
        return x


class Penalties(Stage):
    """Repetition penalty (HF/CTRL: positive logits divided, negative multiplied; optionally over the last N tokens)
    then frequency/presence (OpenAI: minus penalty x count, minus penalty once), over prompt and output for the
    repetition penalty and over the output alone for the other two."""

    name, effect = "penalties", "reshape"
    repetition_penalty: torch.Tensor  # [n, 1] per row
    frequency_penalty: torch.Tensor  # [n, 1] per row
    presence_penalty: torch.Tensor  # [n, 1] per row
    repetition_penalty_last_n: torch.Tensor  # [n] per row (0: every token)
    seen: torch.Tensor | None  # [n, V] bool: tokens in the prompt or output (None: no row has the penalty)
    counts: torch.Tensor | None  # [n, V] float32: each token's count in the output (None: no row counts)

    def prepare(self) -> None:
        super().prepare()
        configs = self.rows.configs
        seen = counts = None
        if any(c.repetition_penalty != 1 for c in configs):
            seen = torch.zeros(self.n, self.vocab, dtype=torch.bool, device=self.device)
            for row, prompt in enumerate(self.rows.prompts):
                seen[row, prompt[prompt >= 0]] = True
        if any(c.frequency_penalty or c.presence_penalty for c in configs):
            counts = torch.zeros(self.n, self.vocab, dtype=torch.float32, device=self.device)
        self.hold(seen=seen, counts=counts)
        self.windowed = any(c.repetition_penalty != 1 and c.repetition_penalty_last_n for c in configs)

    @property
    def reads_history(self) -> bool:
        return self.windowed

    def apply(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        if self.seen is not None:
            seen = self.seen
            if self.windowed:
                assert step.history is not None  # a windowed penalty reads the history (reads_history)
                seen = self._recent(step.history)
            x = torch.where(seen, torch.where(x < 0, x * self.repetition_penalty, x / self.repetition_penalty), x)
        if self.counts is not None:
            x = x - self.frequency_penalty * self.counts - self.presence_penalty * (self.counts > 0)
        return x

    def accept(self, tokens: torch.Tensor, processed: torch.Tensor | None) -> None:
        if self.seen is not None:
            self.seen.scatter_(1, tokens[:, None], True)
        if self.counts is not None:
            self.counts.scatter_add_(1, tokens[:, None], torch.ones_like(tokens[:, None], dtype=torch.float32))

    def _recent(self, history: torch.Tensor) -> torch.Tensor:
        """[n, V] tokens among each row's last repetition_penalty_last_n tokens (0 = all of them)."""
        n_rows, length = history.shape
        window = self.repetition_penalty_last_n
        start = torch.where(window > 0, length - window, 0).clamp(min=0)
        inside = torch.arange(length, device=history.device)[None, :] >= start[:, None]
        seen = torch.zeros(n_rows, self.vocab + 1, dtype=torch.bool, device=history.device)
        seen.scatter_(1, torch.where(inside & (history >= 0), history, self.vocab), True)
        return seen[:, : self.vocab]
