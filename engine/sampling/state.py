"""RowState: what the stateful stages know about each row so far, updated once per step.

The token history (prompt included) for windows, n-grams, DRY and banned sequences; presence and
counts for the penalties; Mirostat's mu; adaptive-p's running average of drawn probabilities; the guided
rows' guidance logits. Everything is per row, so rows never influence each other.
"""

from __future__ import annotations

import math

import torch

from ..grammars import matcher
from .settings import RowSettings
from .stages import HISTORY_USES



class RowState:
    def __init__(self, settings: RowSettings, prompt_ids: torch.Tensor, vocab_size: int, max_new: int,
                 eos_ids: torch.Tensor | None = None):
        n = settings.seed_lo.shape[0]
        device = prompt_ids.device
        uses = settings.uses
        self.eos_ids = eos_ids
        self.seen = self.counts = self.seq = self.mu = self.adaptive_sum = self.adaptive_weight = None
        self.uncond: torch.Tensor | None = None
        """[N, V] this step's logits of each guided row's guidance row (classifier-free guidance), else None."""
        self.parent_rows: torch.Tensor | None = None
        """For a view (take): which rows of the full state these are."""
        self.pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        """Adaptive-p's (rows, log-probabilities before it) of this step, shared with views, read by update()."""
        self.length = prompt_ids.numel()
        self.matchers: list = []
        """Each row's structured-output matcher (engine/grammars.py) or None; empty when no row has one."""
        self.rejected: list[tuple[int, int]] = []
        """(row, token) pairs a matcher refused: a forced token the row's constraint does not allow."""
        if "grammar" in uses:
            eos = tuple(eos_ids.tolist()) if eos_ids is not None else (settings.tokenizer.eos_token_id,)
            self.matchers = [matcher(*spec, settings.tokenizer, vocab_size, eos) if spec else None
                             for spec in settings.constraints]
        if "repetition_penalty" in uses:
            self.seen = torch.zeros(n, vocab_size, dtype=torch.bool, device=device)
            self.seen[:, prompt_ids] = True
        if uses & {"frequency_penalty", "presence_penalty"}:
            self.counts = torch.zeros(n, vocab_size, dtype=torch.float32, device=device)
        if uses & HISTORY_USES:
            self.seq = torch.empty(n, self.length + max_new, dtype=torch.long, device=device)
            self.seq[:, : self.length] = prompt_ids
        if "mirostat" in uses:
            self.mu = 2 * settings.mirostat_tau[:, 0].clone()  # llama.cpp starts mu at 2 tau
        if "adaptive_p" in uses:  # llama.cpp primes the average as if the target were already met
            decay = settings.adaptive_decay[:, 0]
            self.adaptive_sum = settings.adaptive_target[:, 0].clamp(0, 1) / (1 - decay)
            self.adaptive_weight = 1 / (1 - decay)
        self.settings = settings

    @classmethod
    def for_prompts(cls, settings: RowSettings, prompts: list[torch.Tensor], vocab_size: int, max_new: int,
                    eos_ids: torch.Tensor | None = None) -> RowState:
        """A state whose rows each start from their own prompt (the history is left-padded with -1: no token)."""
        longest = max(prompts, key=lambda p: p.numel())
        state = cls(settings, longest, vocab_size, max_new, eos_ids)
        if all(p is longest or torch.equal(p, longest) for p in prompts):
            return state
        if state.seen is not None:
            state.seen.zero_()
            for row, p in enumerate(prompts):
                state.seen[row, p] = True
        if state.seq is not None:
            state.seq[:, : longest.numel()] = -1
            for row, p in enumerate(prompts):
                state.seq[row, longest.numel() - p.numel() : longest.numel()] = p
        return state

    def select(self, index: torch.Tensor, settings: RowSettings) -> None:
        """Keep only these rows, now described by settings; drop what no remaining row needs."""
        for name in _PER_ROW:
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.index_select(0, index))
        uses = settings.uses
        if self.matchers:
            self.matchers = [self.matchers[i] for i in index.tolist()] if "grammar" in uses else []
        if not uses & HISTORY_USES:
            self.seq = None
        if "repetition_penalty" not in uses:
            self.seen = None
        if not uses & {"frequency_penalty", "presence_penalty"}:
            self.counts = None
        if "mirostat" not in uses:
            self.mu = None
        if "adaptive_p" not in uses:
            self.adaptive_sum = self.adaptive_weight = None
        self.settings = settings

    @property
    def history(self) -> torch.Tensor:
        """[N, L] every row's tokens so far (prompt included)."""
        return self.seq[:, : self.length]

    def take(self, rows: torch.Tensor) -> RowState:
        """A view of some rows (a sampler_order group) for reading; updates go through the full state."""
        view = object.__new__(RowState)
        view.__dict__.update(self.__dict__)
        for name in _PER_ROW:
            value = getattr(self, name)
            setattr(view, name, None if value is None else value[rows])
        view.parent_rows = rows if self.parent_rows is None else self.parent_rows[rows]
        if self.matchers:
            view.matchers = [self.matchers[i] for i in rows.tolist()]
        return view

    def remember_before_adaptive(self, rows: torch.Tensor, logp: torch.Tensor) -> None:
        """Adaptive-p: keep these rows' log-probabilities before it, for update() to average the drawn one."""
        self.pending.append((rows if self.parent_rows is None else self.parent_rows[rows], logp))

    def update(self, tokens: torch.Tensor, processed: torch.Tensor | None = None) -> None:
        """Record this step's tokens; Mirostat rows move mu by the surprise of the token they drew."""
        if self.seen is not None:
            self.seen.scatter_(1, tokens[:, None], True)
        if self.counts is not None:
            self.counts.scatter_add_(1, tokens[:, None], torch.ones_like(tokens[:, None], dtype=torch.float32))
        if self.seq is not None:
            self.seq[:, self.length] = tokens
        self.length += 1
        if self.matchers:  # structured output: each matcher takes its row's token (one host copy per step)
            for row, (m, token) in enumerate(zip(self.matchers, tokens.tolist())):
                if m is not None and not m.is_stopped() and not m.consume_token(token):
                    self.rejected.append((row, token))
        if self.mu is not None and processed is not None:
            rows = self.settings.rows["mirostat"]
            logp = torch.log_softmax(processed[rows], dim=-1).gather(1, tokens[rows, None])[:, 0]
            surprise = -logp / math.log(2)
            s = self.settings
            self.mu[rows] = self.mu[rows] - s.mirostat_eta[rows, 0] * (surprise - s.mirostat_tau[rows, 0])
        for rows, logp in self.pending:  # adaptive-p: the drawn token's probability before adaptive-p
            drawn = logp.gather(1, tokens[rows, None])[:, 0].exp()
            decay = self.settings.adaptive_decay[rows, 0]
            self.adaptive_sum[rows] = drawn + decay * self.adaptive_sum[rows]
            self.adaptive_weight[rows] = 1 + decay * self.adaptive_weight[rows]
        self.pending.clear()


_PER_ROW = ("seen", "counts", "seq", "mu", "adaptive_sum", "adaptive_weight", "uncond")

PenaltyState = RowState  # the name engine/benchmark.py and older callers use
