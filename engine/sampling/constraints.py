"""Structured output's stage: each constrained row's matcher (engine/grammars.py, llguidance) says which
tokens may come next, and every other token's logit becomes -inf, before any other stage.

The stage keeps one matcher per constrained row, and each takes its row's token in accept(). End-of-sequence is allowed exactly where the grammar accepts (llguidance puts
it in the mask then). A row left with no token at all (its constraint is complete but min_new_tokens
forbids the end, or a ban removed every token the grammar allows) may only end: the constraint wins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from ..config import ConfigError, DecodingConfig
from ..grammars import constraint_of, matcher
from .stage import Stage, Step

if TYPE_CHECKING:
    from llguidance import LLMatcher


def allowed_tokens(matchers: Sequence[LLMatcher], vocab: int, device: torch.device | str) -> torch.Tensor:
    """[n, vocab] bool: the tokens each matcher allows next (from llguidance's bitmasks, one bit per token:
    token t is bit t % 8 of byte t // 8)."""
    return allowed_on_host(matchers, vocab).to(device, non_blocking=True)


def allowed_on_host(matchers: Sequence[LLMatcher], vocab: int) -> torch.Tensor:
    """allowed_tokens() on the CPU."""
    packed = np.frombuffer(b"".join(m.compute_bitmask() for m in matchers), dtype=np.uint8)
    bits = np.unpackbits(packed.reshape(len(matchers), -1), axis=1, bitorder="little")
    allowed = torch.from_numpy(bits).view(torch.bool)[:, :vocab]
    if allowed.shape[1] < vocab:  # tokens past the tokenizer's table (padding of the embedding) are never allowed
        allowed = torch.cat([allowed, allowed.new_zeros(len(matchers), vocab - allowed.shape[1])], dim=1)
    return allowed


class ConstraintFailed(ConfigError):
    """llguidance gave up on a row's constraint part-way (a resource limit, such as a regex too large for its
    lexer): the row cannot be held to it, so its request fails, naming the constraint; it never runs on unconstrained."""


def gave_up_message(field: str, step: int, matcher: LLMatcher) -> str:
    reason = (matcher.get_error() or "no reason given").strip().splitlines()[0]
    return (f"the {field} constraint could not be enforced: llguidance gave up on it at output token {step + 1} "
            f"({reason}); simplify the {field} (smaller repeat counts, fewer alternatives)")


def constrain(x: torch.Tensor, allowed: torch.Tensor, eos: int | torch.Tensor | None) -> torch.Tensor:
    """x with the tokens `allowed` forbids at -inf; a row left with nothing may only end (eos, an id or a 0-d
    tensor, at 0; None: no end token)."""
    out = x.masked_fill(~allowed, float("-inf"))
    dead = ~torch.isfinite(out).any(dim=-1)
    if eos is not None and bool(dead.any()):
        out[dead, eos] = 0.0  # nothing left to say: the row ends
    return out


def _constraint(config: DecodingConfig) -> tuple[str, Any]:
    """The row's (field, value) constraint: the stage is built only for rows that have one (Grammar.active)."""
    spec = constraint_of(config)
    assert spec is not None, "a structured-output row without a constraint"
    return spec


class Grammar(Stage):
    """The constraint's mask on the rows that have one; each row's matcher takes the row's token in accept()."""

    name, effect = "grammar", "mask"
    matchers: list[LLMatcher]
    """One llguidance matcher per row."""

    def prepare(self) -> None:
        rows = self.rows
        if rows.tokenizer is None:
            raise ConfigError("structured output (json_schema, regex, choice, grammar) needs the model's tokenizer")
        eos = tuple(rows.eos_ids.tolist()) if rows.eos_ids is not None else (rows.tokenizer.eos_token_id,)
        self.specs = [_constraint(c) for c in rows.configs]
        self.matchers = [matcher(*spec, rows.tokenizer, self.vocab, eos) for spec in self.specs]
        self.rejected: list[tuple[int, int]] = []
        """(row, token) pairs a matcher refused: a forced token the row's constraint does not allow."""
        self.gave_up: list[tuple[int, str]] = []
        """(row, message) for each row whose matcher gave up (ConstraintFailed): its token was one the mask allowed."""
        self._allowed: torch.Tensor | None = None
        """The last mask, on the host: a refused token it allowed means the matcher failed, not the token."""
        self._step = 0

    def select(self, keep: torch.Tensor) -> None:
        index = keep.tolist()
        self.specs = [self.specs[i] for i in index]
        self.matchers = [self.matchers[i] for i in index]
        super().select(keep)

    def apply(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        self._allowed, self._step = allowed_on_host(self.matchers, x.shape[1]), step.step
        for row, m in enumerate(self.matchers):
            if m.is_error():
                self.gave_up.append((row, gave_up_message(self.specs[row][0], step.step, m)))
        allowed = self._allowed.to(x.device, non_blocking=True)
        eos = self.rows.eos_ids[0] if self.rows.eos_ids is not None else None  # a tensor: no host sync on a GPU
        return constrain(x, allowed, eos)

    def accept(self, tokens: torch.Tensor, processed: torch.Tensor | None) -> None:
        allowed, self._allowed = self._allowed, None
        for row, (m, token) in enumerate(zip(self.matchers, tokens.tolist())):  # one host copy per step
            if not m.is_stopped() and not m.consume_token(token):
                if allowed is not None and token < allowed.shape[1] and bool(allowed[row, token]):
                    self.gave_up.append((row, gave_up_message(self.specs[row][0], self._step, m)))
                else:
                    self.rejected.append((row, token))
