"""What generation returns: Completion, TokenStep, Alternative, StepEvent, GenerationError."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from engine.config import DecodingConfig

STOP_REASONS = ("eos", "stop_string", "max_new_tokens", "cancelled")


class GenerationError(RuntimeError):
    """A run could not start or finish; the message says why and what to do."""


@dataclass(frozen=True)
class Alternative:
    """A token the model weighed at one step."""

    token_id: int
    text: str
    logprob: float
    """Under the raw model distribution."""
    logprob_processed: float
    """After this config's penalties, temperature and filters (-inf when filtered out)."""


@dataclass(frozen=True)
class TokenStep:
    """One generated token and what the model thought when choosing it."""

    token_id: int
    text: str
    """The text this token added (may be empty while a multi-byte character is incomplete)."""
    logprob: float
    logprob_processed: float
    rank: int
    """Rank under the raw distribution; 0 is the most likely token."""
    entropy: float
    entropy_processed: float
    top: tuple[Alternative, ...] = ()

    @property
    def prob(self) -> float:
        return math.exp(self.logprob)

    @property
    def prob_processed(self) -> float:
        return math.exp(self.logprob_processed)


@dataclass(frozen=True)
class Timings:
    prefill_s: float
    decode_s: float
    tokens_per_s: float


@dataclass
class Completion:
    """The result of one config: text, tokens with statistics, why it stopped, and how long it took."""

    config: DecodingConfig
    seed: int
    text: str
    token_ids: list[int]
    steps: list[TokenStep]
    stop_reason: str
    timings: Timings
    prompt_tokens: int = 0
    sequence_score: float | None = None
    """Beams only: HF's length-penalised sequence score."""
    extra: dict = field(default_factory=dict)

    @property
    def mean_logprob(self) -> float | None:
        if not self.steps:
            return None
        return sum(s.logprob for s in self.steps) / len(self.steps)

    @property
    def perplexity(self) -> float | None:
        mean = self.mean_logprob
        return None if mean is None else math.exp(-mean)


@dataclass(frozen=True)
class StepEvent:
    """Sent once per decode step: the new tokens of every row that produced one, and rows that finished."""

    step: int
    tokens: dict[int, tuple[TokenStep, ...]]
    """Row index -> the tokens it added at this step (one for sampled rows; a whole beam result at once)."""
    finished: dict[int, str]
    """Row index -> stop reason, for rows that finished at this step."""
    texts: dict[int, str] = field(default_factory=dict)
    """Row index -> the row's full text so far (after stop-string trimming), for rows that changed."""
