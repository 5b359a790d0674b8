"""What generation returns: Completion, TokenStep, Alternative, StepEvent, GenerationError."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .config import DecodingConfig

STOP_REASONS = ("eos", "stop_string", "stop_token", "max_new_tokens", "cancelled")


class GenerationError(RuntimeError):
    """A run could not start or finish; the message says why and what to do."""


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message says why and what to try."""


class PromptError(GenerationError):
    """The run's input is unusable (prompt too long, empty, no configs): the user can fix it."""


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
class StageStep:
    """One sampler stage at one step (engine/sampling/trace.py): what it left, and the chosen token's and the
    alternatives' log-probabilities after it. The first StageStep of a token is "raw", the model's own."""

    stage: str
    kept: int
    """Candidates left after this stage."""
    moved: float
    """Probability this stage moved (total variation; for a filter, the mass it removed)."""
    top_changed: bool
    """The most likely token after this stage differs from the one before it."""
    logprob: float
    """The chosen token's log-probability after this stage."""
    alternatives: tuple[float, ...] = ()
    """Log-probabilities after this stage of the TokenStep's `top` alternatives, in order (-inf: removed)."""


FORCED_BELOW = 0.01
"""A constrained token the model gave less than this probability counts as forced by the constraint."""


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
    rank_at_least: bool = False
    """True when the rank is only a lower bound: a server reported its top N and this token was not among them."""
    named: tuple[Alternative, ...] = ()
    """The tokens the config's logprob_tokens names, whatever their rank, in the order named."""
    stages: tuple["StageStep", ...] = ()
    """What each sampler stage did at this step (when the run traced its stages; sampling/trace.py)."""

    @property
    def constraint_removed(self) -> float | None:
        """The share of the model's probability its structured-output constraint removed at this step (the
        grammar stage's total variation), or None when the row had no constraint or its stages were not traced."""
        return next((s.moved for s in self.stages if s.stage == "grammar"), None)

    @property
    def forced(self) -> bool:
        """The constraint forced a token the model gave under 1%: it removed most of the model's probability
        (a sampler's own unlikely draw, where the constraint removed little, is not forced)."""
        removed = self.constraint_removed
        return removed is not None and removed >= 0.5 and self.prob < FORCED_BELOW

    @property
    def rank_text(self) -> str:
        """The rank as a person reads it: "3", or "≥5" when only a lower bound is known."""
        return f"≥{self.rank}" if self.rank_at_least else str(self.rank)

    @property
    def prob(self) -> float:
        return math.exp(self.logprob)

    @property
    def prob_processed(self) -> float:
        return math.exp(self.logprob_processed)


@dataclass(frozen=True)
class Timings:
    prefill_s: float | None
    """None when unknown (a remote server does not report its prefill)."""
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
    prompt_tokens: int | None = 0
    """None when unknown (a remote server that does not report usage)."""
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


def json_config(config: DecodingConfig) -> dict[str, Any]:
    """A config as JSON can hold it: a -inf logit_bias (a ban) is written "-inf", which from_dict reads back."""
    data = config.to_dict()
    if "logit_bias" in data:
        data["logit_bias"] = {k: "-inf" if v == -math.inf else v for k, v in data["logit_bias"].items()}
    return data


def json_number(value: Any) -> Any:
    """JSON has no infinities or NaN: a filtered-out token's -inf logprob becomes null; -0.0 is written 0.0."""
    if not isinstance(value, float):
        return value
    return value + 0.0 if math.isfinite(value) else None


def completion_to_dict(c: Completion, top: int | None = None) -> dict:
    """Plain JSON-ready data for one completion (top limits the alternatives kept per token)."""
    def step(s: TokenStep) -> dict:
        alts = s.top if top is None else s.top[:top]
        more = {}
        if s.named:
            more["named"] = [_alternative(a) for a in s.named]
        if s.stages:
            more["stages"] = [{"stage": g.stage, "kept": g.kept, "moved": json_number(g.moved),
                               "top_changed": g.top_changed, "logprob": json_number(g.logprob),
                               "alternatives": [json_number(v) for v in g.alternatives[: len(alts)]]}
                              for g in s.stages]
        return {"id": s.token_id, "text": s.text, "logprob": json_number(s.logprob),
                "logprob_processed": json_number(s.logprob_processed), "rank": s.rank,
                **({"rank_at_least": True} if s.rank_at_least else {}), "entropy": json_number(s.entropy),
                "entropy_processed": json_number(s.entropy_processed),
                "alternatives": [_alternative(a) for a in alts], **more}

    # a config that does not sample draws nothing: no seed to report (a random number there misled a newcomer)
    return {"config": json_config(c.config), "seed": c.seed if c.config.samples else None, "text": c.text,
            "stop_reason": c.stop_reason,
            "token_ids": list(c.token_ids), "prompt_tokens": c.prompt_tokens,
            "mean_logprob": c.mean_logprob, "perplexity": c.perplexity, "sequence_score": c.sequence_score,
            "timings": {"prefill_s": c.timings.prefill_s, "decode_s": c.timings.decode_s,
                        "tokens_per_s": c.timings.tokens_per_s},
            "tokens": [step(s) for s in c.steps],
            "notes": {k: c.extra[k] for k in ("backend", "logprobs", "ignored", "overridden", "error", "incomplete")
                      if k in c.extra}}


def _alternative(a: Alternative) -> dict:
    return {"id": a.token_id, "text": a.text, "logprob": json_number(a.logprob),
            "logprob_processed": json_number(a.logprob_processed)}


def _read_alternative(a: dict) -> Alternative:
    return Alternative(int(a["id"]), str(a["text"]), _float(a["logprob"]), _float(a["logprob_processed"]))


def _read_stage(g: dict) -> StageStep:
    return StageStep(stage=str(g["stage"]), kept=int(g["kept"]), moved=float(g["moved"] or 0.0),
                     top_changed=bool(g["top_changed"]), logprob=_float(g["logprob"]),
                     alternatives=tuple(_float(v) for v in g.get("alternatives", ())))


def _float(value) -> float:
    return float("-inf") if value is None else float(value)


def _maybe(value, kind):
    return None if value is None else kind(value)


def completion_from_dict(data: dict) -> Completion:
    """The inverse of completion_to_dict (alternatives included). Raises KeyError/TypeError/ValueError on bad data."""
    steps = [TokenStep(token_id=int(t["id"]), text=str(t["text"]), logprob=_float(t["logprob"]),
                       logprob_processed=_float(t["logprob_processed"]), rank=int(t["rank"]),
                       entropy=_float(t["entropy"]), entropy_processed=_float(t["entropy_processed"]),
                       top=tuple(_read_alternative(a) for a in t["alternatives"]),
                       rank_at_least=bool(t.get("rank_at_least", False)),
                       named=tuple(_read_alternative(a) for a in t.get("named", ())),
                       stages=tuple(_read_stage(g) for g in t.get("stages", ())))
             for t in data["tokens"]]
    timings = data["timings"]
    return Completion(config=DecodingConfig.from_dict(data["config"]), seed=int(data.get("seed") or 0), text=str(data["text"]),
                      token_ids=[int(i) for i in data["token_ids"]], steps=steps,
                      stop_reason=str(data["stop_reason"]),
                      timings=Timings(_maybe(timings["prefill_s"], float), float(timings["decode_s"]),
                                      float(timings["tokens_per_s"])),
                      prompt_tokens=_maybe(data.get("prompt_tokens", 0), int), sequence_score=data.get("sequence_score"),
                      extra=dict(data.get("notes") or {}))
