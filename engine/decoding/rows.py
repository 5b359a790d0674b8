"""Host-side bookkeeping for each row: text, steps, stop checks, and turning packed stats into TokenSteps."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from ..config import DecodingConfig
from ..results import Alternative, Completion, StageStep, StepEvent, Timings, TokenStep
from .detokenize import IncrementalText


class TokenTexts:
    """Cached display text of single token ids (for the alternatives list)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.cache: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        text = self.cache.get(token_id)
        if text is None:
            text = self.tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False)
            self.cache[token_id] = text
        return text


def token_texts(tokenizer: Any) -> TokenTexts:
    cached = getattr(tokenizer, "_decodelab_token_texts", None)
    if cached is None:
        cached = TokenTexts(tokenizer)
        try:
            tokenizer._decodelab_token_texts = cached
        except AttributeError:
            pass
    return cached


def unpack_step(values: list[float], k: int, text: str, token_text: TokenTexts, named: Sequence[int] = (),
                stages: tuple[StageStep, ...] = ()) -> TokenStep:
    """A TokenStep from one row of `sampling.step_statistics` (named: the ids its logprob_tokens name)."""
    top = tuple(
        Alternative(int(values[6 + j]), token_text(int(values[6 + j])), values[6 + k + j], values[6 + 2 * k + j])
        for j in range(k)
    )
    start = 6 + 3 * k
    width = (len(values) - start) // 2
    shown = tuple(Alternative(t, token_text(t), values[start + j], values[start + width + j])
                  for j, t in enumerate(named))
    return TokenStep(token_id=int(values[0]), text=text, logprob=values[2], logprob_processed=values[3],
                     rank=int(values[1]), entropy=values[4], entropy_processed=values[5], top=top, named=shown,
                     stages=stages)


def new_tracker(tokenizer: Any, config: DecodingConfig, seed: int, eos: list[int]) -> "RowTracker":
    """A RowTracker whose text skips EOS and the tokenizer's special tokens."""
    skip = frozenset(eos) | frozenset(getattr(tokenizer, "all_special_ids", []) or [])
    from ..sampling.vocab import stop_ids

    tracker = RowTracker(config, seed, IncrementalText(tokenizer, skip), eos)
    tracker.stop_ids = frozenset(stop_ids(config, tokenizer))
    return tracker


class RowTracker:
    """One config's growing output: its tokens, text, and whether and why it stopped."""

    def __init__(self, config: DecodingConfig, seed: int, detok: IncrementalText, eos: list[int]) -> None:
        self.config = config
        self.seed = seed
        self.detok = detok
        self.eos = frozenset(eos)
        self.stop_ids: frozenset[int] = frozenset()
        """stop_token_ids as ids: generating one ends the row ("stop_token"), the token kept in the output."""
        self.steps: list[TokenStep] = []
        self.token_ids: list[int] = []
        self.text = ""
        self.stop_reason: str | None = None
        self.finish_s: float | None = None
        self.longest_stop = max((len(s) for s in config.stop_strings), default=0)
        self.named: list[int] = []
        """The token ids the config's logprob_tokens name (set when the row joins the batch)."""
        self.active: frozenset[str] = frozenset()
        """The sampler stages this config uses (set when the row joins the batch)."""

    @property
    def finished(self) -> bool:
        return self.stop_reason is not None

    def add(self, values: list[float], k: int, token_text: TokenTexts, now: float,
            stages: tuple[StageStep, ...] = ()) -> TokenStep:
        """Record one token; sets stop_reason when this token ends the row."""
        token_id = int(values[0])
        piece = self.detok.add(token_id)
        step = unpack_step(values, k, piece, token_text, self.named, stages)
        self.steps.append(step)
        self.token_ids.append(token_id)
        searched_from = max(0, len(self.text) - self.longest_stop + 1)
        self.text += piece
        if token_id in self.eos:
            self.finish("eos", now)
        elif token_id in self.stop_ids:
            self.finish("stop_token", now)
        elif self.config.stop_strings and self._trim_stop(searched_from):
            self.finish("stop_string", now)
        elif len(self.token_ids) >= self.config.max_new_tokens:
            self.finish("max_new_tokens", now)
        return self.steps[-1]

    def _trim_stop(self, start: int) -> bool:
        hits = [p for p in (self.text.find(s, start) for s in self.config.stop_strings) if p >= 0]
        if not hits:
            return False
        self.text = self.text[: min(hits)]
        self._trim_steps(len(self.text))
        return True

    def _trim_steps(self, cut: int) -> None:
        """Cut the steps' texts at the same place as the text, so the steps still join to exactly .text
        (a stop string can begin inside an earlier token)."""
        end = sum(len(step.text) for step in self.steps)
        for i in range(len(self.steps) - 1, -1, -1):
            start = end - len(self.steps[i].text)
            if start < cut:
                if end > cut:
                    self.steps[i] = dataclasses.replace(self.steps[i], text=self.steps[i].text[: cut - start])
                break
            if self.steps[i].text:
                self.steps[i] = dataclasses.replace(self.steps[i], text="")
            end = start

    def finish(self, reason: str, now: float) -> str:
        if reason != "stop_string":
            rest = self.detok.flush()
            if rest and self.steps:
                self.steps[-1] = dataclasses.replace(self.steps[-1], text=self.steps[-1].text + rest)
                self.text += rest
        self.stop_reason = reason
        self.finish_s = now
        return reason

    def completion(self, prefill_s: float, decode_s: float, prompt_tokens: int) -> Completion:
        active = self.finish_s if self.finish_s is not None else decode_s
        rate = len(self.token_ids) / active if active > 0 else 0.0
        return Completion(config=self.config, seed=self.seed, text=self.text, token_ids=list(self.token_ids),
                          steps=list(self.steps), stop_reason=self.stop_reason or "cancelled",
                          timings=Timings(prefill_s, decode_s, rate), prompt_tokens=prompt_tokens)


def build_steps(trackers: list[RowTracker], stats: list[list[float]], k: int, tokenizer: Any, step: int, now: float,
                row_ids: list[int], stages: list[tuple[StageStep, ...]] | None = None) -> StepEvent:
    """Record this step's token for every running row and describe it as one StepEvent."""
    names = token_texts(tokenizer)
    tokens: dict[int, tuple[TokenStep, ...]] = {}
    finished: dict[int, str] = {}
    texts: dict[int, str] = {}
    for i, (tracker, values) in enumerate(zip(trackers, stats)):
        if tracker.finished:
            continue
        tokens[row_ids[i]] = (tracker.add(values, k, names, now, stages[i] if stages else ()),)
        texts[row_ids[i]] = tracker.text
        if tracker.stop_reason is not None:  # tracker.finished
            finished[row_ids[i]] = tracker.stop_reason
    return StepEvent(step=step, tokens=tokens, finished=finished, texts=texts)
