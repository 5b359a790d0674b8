"""Beam configs: HF generate's beam search over the shared prompt, then rescored token by token.

Beam search itself is HF's (its scores are length-penalised sums of log-softmax values, with its
processors applied to log-probabilities). The chosen sequence is then rescored with one forward pass
so its TokenSteps carry the same statistics as sampled rows: raw logprobs, rank, entropy,
alternatives, and logprob_processed under decodelab's own penalty pipeline.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch

from ..config import DecodingConfig
from ..grammars import constraint_of, matcher
from ..results import Completion, StepEvent
from ..sampling import Sampler, step_statistics
from ..sampling.constraints import allowed_tokens, constrain
from ..sampling.vocab import stop_ids
from .hf_generate import hf_generate_kwargs
from ..runners.base import eos_tensor
from .rows import RowTracker, new_tracker, token_texts

if TYPE_CHECKING:
    from ..runners.base import LocalModel
    from llguidance import LLMatcher



class _CancelCriteria:
    """A StoppingCriteria that ends generation when the cancel event is set."""

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.cancel.is_set(), dtype=torch.bool, device=input_ids.device)


class _Constrained:
    """An HF LogitsProcessor for a constrained beam config: each beam's tokens so far go through its own copy of
    the constraint's matcher (kept per token prefix, so HF's reordering of beams needs nothing), and the tokens
    the constraint forbids get -inf, as the batch's grammar stage does for sampled rows."""

    def __init__(self, make_matcher: Callable[[], LLMatcher], prompt_len: int, eos: list[int]) -> None:
        self.prompt_len, self.eos = prompt_len, eos
        self.states: dict[tuple[int, ...], LLMatcher] = {(): make_matcher()}

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        keys = [tuple(row) for row in input_ids[:, self.prompt_len:].tolist()]
        matchers = [self._state(key) for key in keys]
        longest = max(len(key) for key in keys)
        self.states = {k: m for k, m in self.states.items() if len(k) >= longest - 1}  # older prefixes are done
        return constrain(scores, allowed_tokens(matchers, scores.shape[1], scores.device),
                         self.eos[0] if self.eos else None)

    def _state(self, key: tuple[int, ...]) -> LLMatcher:
        m = self.states.get(key)
        if m is None:
            m = self._state(key[:-1]).deep_copy()
            m.consume_token(key[-1])
            self.states[key] = m
        return m


@torch.inference_mode()
def run_beam(loaded: LocalModel, prompt_ids: torch.Tensor, config: DecodingConfig, seed: int, row: int,
             emit: Callable[[StepEvent], None], cancel: threading.Event, k: int) -> Completion:
    from transformers import StoppingCriteriaList

    runner, tokenizer = loaded.runner, loaded.tokenizer
    runner.require("beams")
    eos = runner.eos_ids()
    prompt_len = prompt_ids.numel()
    start = time.perf_counter()
    kwargs = hf_generate_kwargs(config, prompt_len, tokenizer)  # early_stopping, stop strings in the search
    ends = list(dict.fromkeys([*eos, *stop_ids(config, tokenizer)]))  # HF's eos_token_id list: EOS and stop ids
    spec = constraint_of(config)
    if spec is not None:  # structured output: the search only sees what the constraint allows
        from transformers import LogitsProcessorList

        vocab = runner.vocab_size
        constrained = _Constrained(lambda: matcher(*spec, tokenizer, vocab, tuple(eos)), prompt_len, eos)
        kwargs["logits_processor"] = LogitsProcessorList([*kwargs.get("logits_processor", []), constrained])
    out = runner.beam_search(
        input_ids=prompt_ids[None, :],
        attention_mask=torch.ones_like(prompt_ids)[None, :],
        **kwargs,
        tokenizer=tokenizer if config.stop_strings else None,
        eos_token_id=ends or None,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos[0] if eos else 0),
        return_dict_in_generate=True,
        output_scores=True,
        stopping_criteria=StoppingCriteriaList([_CancelCriteria(cancel)]),
    )
    new_ids = out.sequences[0, prompt_len:].tolist()
    for i, token in enumerate(new_ids):  # drop the padding after the first EOS (or stop token)
        if token in ends:
            new_ids = new_ids[: i + 1]
            break
    elapsed = time.perf_counter() - start
    tracker = new_tracker(tokenizer, config, seed, eos)
    replay(loaded, prompt_ids, new_ids, tracker, k, eos, elapsed)
    if not tracker.finished:
        tracker.finish("cancelled" if cancel.is_set() else "max_new_tokens", elapsed)
    assert tracker.stop_reason is not None  # finished just above, if not before
    emit(StepEvent(step=-1, tokens={row: tuple(tracker.steps)}, finished={row: tracker.stop_reason},
                   texts={row: tracker.text}))
    completion = tracker.completion(0.0, elapsed, prompt_len)
    scores = getattr(out, "sequences_scores", None)
    completion.sequence_score = float(scores[0]) if scores is not None else None
    return completion


def replay(loaded: LocalModel, prompt_ids: torch.Tensor, ids: Sequence[int], tracker: RowTracker, k: int, eos: list[int],
           now: float, logits: torch.Tensor | None = None) -> None:
    """Record the given tokens in a row's tracker, with their real statistics under its config, until it stops.
    logits: the model's logits before each of the tokens [len(ids), V], when a prefill already gave them."""
    stats, used_k = rescore(loaded, prompt_ids, ids, tracker.config, tracker.seed, k, eos, logits)
    names = token_texts(loaded.tokenizer)
    for values in stats.tolist():
        if tracker.finished:
            break
        tracker.add(values, used_k, names, now)


def rescore(loaded: LocalModel, prompt_ids: torch.Tensor, new_ids: Sequence[int], config: DecodingConfig, seed: int,
            k: int, eos: list[int], logits: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """Packed per-token statistics [n, 6 + 3k] of new_ids continuing the prompt under config, and k used. The
    logits before each token come from the runner's scratch scoring unless given."""
    if not new_ids:
        return torch.zeros(0, 6), 0
    new = torch.tensor(new_ids, dtype=torch.long, device=prompt_ids.device)
    if logits is None:
        logits = loaded.runner.score(torch.cat([prompt_ids, new]), len(new_ids) + 1)[:-1]
    logits = logits.float()
    vocab = logits.shape[-1]
    k = min(max(k, 0), vocab)
    sampler = Sampler([config], [seed], vocab, prompt_ids.device, tokenizer=loaded.tokenizer, prompts=prompt_ids,
                      max_new=len(new_ids), eos_ids=eos_tensor(eos, prompt_ids.device))
    rows = []
    for i in range(len(new_ids)):
        raw = logits[i : i + 1]
        processed = sampler.process(raw, i)
        rows.append(step_statistics(raw, processed, new[i : i + 1], k))
        sampler.accept(new[i : i + 1], processed)
    return torch.cat(rows).cpu(), k
