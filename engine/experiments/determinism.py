"""Is a seeded request the same alone and among others? The batch-determinism check.

A probe (one prompt, one seeded sampling config) runs alone, then again while `concurrency - 1` other requests
(other prompts and settings) run beside it: in one batch on a local engine, as simultaneous requests on a server
(through the remote client, so decodelab serve, vLLM, llama.cpp's server and any OpenAI-compatible server alike).
Each round says whether the probe's tokens were equal, the first position where they parted, and the largest
difference between the two runs' logprobs over the tokens they share. vLLM #51187/#51226, SGLang #5377 and
llama.cpp #19981 report servers that fail this.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

from ..config import DecodingConfig

if TYPE_CHECKING:
    from ..backends.base import Backend
    from ..results import Completion

PROBE_PROMPT = "Write one sentence about the sea."
OTHER_PROMPTS = ("List three fruits.", "What is 17 times 3?", "Name a colour and describe it.",
                 "Write a haiku about rain.", "Explain what a loop is in one line.", "Say hello in French.",
                 "Describe a cat in five words.", "Give me a random word.")
"""The other requests' prompts (cycled): different lengths, so the batch's rows differ."""


def probe_config(max_new_tokens: int = 32, seed: int = 1234) -> DecodingConfig:
    return DecodingConfig(name="probe", do_sample=True, temperature=0.8, top_p=0.95, seed=seed,
                          max_new_tokens=max_new_tokens)


def other_config(i: int, max_new_tokens: int) -> DecodingConfig:
    """The i-th other request: its own temperature, top-k and seed, some greedy."""
    if i % 4 == 3:
        return DecodingConfig(name=f"other-{i}", max_new_tokens=max_new_tokens)
    return DecodingConfig(name=f"other-{i}", do_sample=True, temperature=0.6 + 0.2 * (i % 4), top_k=20 + i,
                          seed=100 + i, max_new_tokens=max_new_tokens)


@dataclass
class Round:
    """One comparison: the probe alone against the probe beside `others` other requests."""

    number: int
    others: int
    equal: bool
    first_difference: int | None
    """The first token position where the two runs parted (None when equal)."""
    tokens_alone: int
    tokens_busy: int
    max_logprob_difference: float
    """The largest |logprob alone - logprob busy| over the positions before they parted (nan: no logprobs)."""
    ended_alone: str = ""
    ended_busy: str = ""
    """How each run ended (stop_reason); a busy run that ended in an error was cut short by the server."""
    error: str | None = None
    """What the server said when a run failed (llama-cpp-python's server interrupts a running request for a new one)."""

    @property
    def cut_short(self) -> bool:
        """The busy run stopped early with an error: its tokens differ because it has fewer, not other ones."""
        return self.error is not None and self.first_difference == min(self.tokens_alone, self.tokens_busy)


@dataclass
class Report:
    target: str
    concurrency: int
    rounds: list[Round] = field(default_factory=list)

    @property
    def deterministic(self) -> bool:
        return all(r.equal for r in self.rounds)

    def to_dict(self) -> dict:
        from ..results import json_number

        return {"target": self.target, "concurrency": self.concurrency, "deterministic": self.deterministic,
                "rounds": [{"round": r.number, "others": r.others, "equal": r.equal,
                            "first_difference": r.first_difference, "tokens_alone": r.tokens_alone,
                            "tokens_busy": r.tokens_busy, "max_logprob_difference": json_number(r.max_logprob_difference),
                            "ended_alone": r.ended_alone, "ended_busy": r.ended_busy, "cut_short": r.cut_short,
                            "error": r.error}
                           for r in self.rounds]}


def tokens_of(completion: Completion) -> list[tuple[int, str]]:
    """(id, text) per token: a server may not report ids (then -1), the text tells tokens apart all the same."""
    return [(s.token_id, s.text) for s in completion.steps]


def compare(number: int, others: int, alone: Completion, busy: Completion) -> Round:
    a, b = tokens_of(alone), tokens_of(busy)
    first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
    if first is None and len(a) != len(b):
        first = min(len(a), len(b))
    shared = len(a) if first is None else first
    diffs = [abs(x.logprob - y.logprob) for x, y in zip(alone.steps[:shared], busy.steps[:shared])
             if math.isfinite(x.logprob) and math.isfinite(y.logprob)]
    failed = next((c.extra.get("error") for c in (alone, busy) if c.stop_reason == "error"), None)
    return Round(number, others, first is None, first, len(a), len(b), max(diffs) if diffs else
                 (0.0 if shared == 0 else math.nan), alone.stop_reason, busy.stop_reason,
                 str(failed) if failed else None)


def check_determinism(backend: Backend, concurrency: int = 8, rounds: int = 3, max_new_tokens: int = 32,
                      prompt: str = PROBE_PROMPT, progress: Callable[[str], None] | None = None) -> Report:
    """The probe alone and among concurrency - 1 others, `rounds` times (each round a fresh pair of runs)."""
    from ..session import default_session

    session = default_session()
    probe = probe_config(max_new_tokens)
    others = [(OTHER_PROMPTS[i % len(OTHER_PROMPTS)], other_config(i, max_new_tokens)) for i in range(concurrency - 1)]
    report = Report(backend.describe(), concurrency)
    batched = hasattr(backend, "generate_parts")  # a local engine: the others share the probe's batch
    for number in range(1, rounds + 1):
        if progress is not None:
            progress(f"round {number} of {rounds}: the probe alone, then beside {len(others)} other requests")
        (alone,) = session.generate(backend, prompt, [probe], top_alternatives=1)
        if batched:
            every = session.generate_prompts(backend, [(prompt, [probe])] + [(p, [c]) for p, c in others],
                                             top_alternatives=1)
            busy = every[0][0]
        else:
            busy = _concurrently(backend, prompt, probe, others)
        report.rounds.append(compare(number, len(others), alone, busy))
    return report


def _concurrently(backend: Backend, prompt: str, probe: DecodingConfig,
                  others: Sequence[tuple[str, DecodingConfig]]) -> Completion:
    """The probe and the others sent at the same moment, each its own request (the remote client is thread-safe:
    every call has its own connection); the probe's completion."""
    start = threading.Barrier(len(others) + 1)

    def send(item: tuple[str, DecodingConfig]) -> Completion:
        start.wait(timeout=60)
        (completion,) = backend.generate(item[0], [item[1]], top_alternatives=1)
        return completion

    with ThreadPoolExecutor(max_workers=len(others) + 1) as pool:
        futures = [pool.submit(send, item) for item in [(prompt, probe), *others]]
        results = [f.result() for f in futures]
    return results[0]
