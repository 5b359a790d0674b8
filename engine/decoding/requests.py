"""A request (one prompt under one or more configs) and a group (requests that step together) of the decode loop."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from ..config import DecodingConfig
from ..grammars import constraint_of
from ..conversation import Prompt
from ..results import Completion, PromptError, StepEvent
from ..sampling import Sampler
from ..sampling.constraints import ConstraintFailed
from ..sampling.trace import StageTrace, unpack_stages
from ..runners.base import eos_tensor
from .rows import RowTracker, build_steps


def check_configs(configs: Sequence[DecodingConfig]) -> list[DecodingConfig]:
    configs = list(configs)
    if not configs:
        raise PromptError("no decoding configs to run: add at least one")
    if not all(isinstance(c, DecodingConfig) for c in configs):
        raise PromptError("every config must be a DecodingConfig")
    return configs


def draw_seeds(configs: Sequence[DecodingConfig], limit: int = 2**32) -> list[int]:
    """Each config's seed, or a fresh random one below limit (reported in its Completion) where it has none."""
    return [c.seed if c.seed is not None else secrets.randbelow(limit) for c in configs]


@dataclass
class Part:
    """One prompt's share of a streamed run: its configs, where its steps go, a forced prefix, rows to stop."""

    prompt: Prompt
    configs: list[DecodingConfig]
    on_step: Callable | None = None
    prefix_ids: Sequence[int] = ()
    stop_rows: Container[int] = ()


@dataclass(eq=False)
class Request:
    """One prompt under one or more configs (one row each), with where its events and results go.

    stop_rows: config indices the caller may add to while the run goes on (a set); each such row ends
    as "cancelled" at the next step while the others go on. prefix forces the first generated tokens
    (a branch). Beam configs run through HF beam search once the request's other rows are done.
    """

    prompt_ids: torch.Tensor
    configs: list[DecodingConfig]
    on_step: Callable[[StepEvent], None] | None = None
    on_done: Callable[[list[Completion]], None] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    top: int = 10
    trace: bool = False
    """Record what each sampler stage did at each step (TokenStep.stages; sampling/trace.py)."""
    seeds: list[int] = field(default_factory=list)
    prefix: Sequence[int] = ()
    stop_rows: Container[int] = ()
    completions: list[Completion] | None = None
    guides: tuple[Request, list[int]] | None = None
    """A guidance request (classifier-free guidance): (the request it guides, its config index per row). Its
    rows read the negative prompt and are fed the guided rows' tokens; nobody sees its output."""
    trackers: dict[int, RowTracker] = field(default_factory=dict)
    prompt_top: int | None = None
    """Score the prompt's own tokens too, with this many alternatives each (OpenAI's echo with logprobs, vLLM's
    prompt_logprobs): prompt_steps gets one TokenStep per prompt token after the first, from the prefill's logits."""
    prompt_steps: list = field(default_factory=list)
    failure: Exception | None = None
    """Why the request failed part-way (a constraint llguidance gave up on): its rows stop, and the loop reports
    it in DecodeLoop.failed instead of completing it."""
    prefill_s: float = 0.0
    start: float = 0.0
    """When decoding began (after the prefill); row times are measured from here."""

    def __post_init__(self) -> None:
        self.configs = check_configs(self.configs)
        self.prefix = [int(t) for t in self.prefix]
        if self.prefix and self.beam_rows:
            raise PromptError("beam configs cannot be branched from a token; branch a sampling or greedy pane")
        if self.prefix and len(self.prefix) >= min(c.max_new_tokens for c in self.configs):
            raise PromptError(f"the branch point is at token {len(self.prefix)}, past max_new_tokens: "
                              "raise max_new_tokens")
        if not self.seeds:
            self.seeds = draw_seeds(self.configs)

    def cancel_rows(self) -> None:
        """Every row of this request ends at the next step (its other requests' rows go on)."""
        self.stop_rows = set(range(len(self.configs)))

    @property
    def batch_rows(self) -> list[int]:
        """Indices of the configs that decode in the batch (all but beams)."""
        return [i for i, c in enumerate(self.configs) if c.num_beams == 1]

    @property
    def beam_rows(self) -> list[int]:
        return [i for i, c in enumerate(self.configs) if c.num_beams > 1]

    @property
    def guided_rows(self) -> list[int]:
        """Indices of the batch configs with classifier-free guidance (each brings a guidance row along)."""
        return [i for i in self.batch_rows if self.configs[i].guidance_scale != 1]

    @property
    def rows(self) -> int:
        """The batch rows this request takes: its configs' rows and their guidance rows."""
        return len(self.batch_rows) + len(self.guided_rows)

    def guidance_requests(self, tokenizer: Any) -> list[Request]:
        """One hidden request per distinct negative prompt of the guided configs: its rows decode the
        negative prompt (or, when empty, the prompt's last token, as HF does) and get the guided rows' tokens."""
        by_text: dict[str, list[int]] = {}
        for i in self.guided_rows:
            by_text.setdefault(self.configs[i].negative_prompt, []).append(i)
        out = []
        for text, rows in by_text.items():
            ids = tokenizer(text)["input_ids"] if text else []
            prompt = self.prompt_ids.new_tensor(ids) if ids else self.prompt_ids[-1:]
            config = DecodingConfig(name="guidance", max_new_tokens=max(self.configs[i].max_new_tokens for i in rows))
            out.append(Request(prompt, [config] * len(rows), cancel=self.cancel, top=0, prefix=self.prefix,
                               seeds=[0] * len(rows), guides=(self, rows)))
        return out

    def emit(self, event: StepEvent) -> None:
        if self.on_step is not None and (event.tokens or event.finished):
            self.on_step(event)


class Group:
    """Requests that joined at the same step with the same prefix: one step counter, settings and state."""

    def __init__(self, requests: list[Request], vocab: int, device: torch.device, eos: list[int],
                 tokenizer: Any = None) -> None:
        self.requests = requests
        self.owners = [(r, i) for r in requests for i in r.batch_rows]
        self.tokenizer, self.vocab, self.device = tokenizer, vocab, device
        configs = [r.configs[i] for r, i in self.owners]
        self.sampler = Sampler(configs, [r.seeds[i] for r, i in self.owners], vocab, device, tokenizer=tokenizer,
                               prompts=[r.prompt_ids for r, _ in self.owners],
                               max_new=max(c.max_new_tokens for c in configs), eos_ids=eos_tensor(eos, device))
        for row, (request, i) in enumerate(self.owners):
            tracker = request.trackers[i]
            tracker.named = self.sampler.named_lists[row] if self.sampler.named_lists else []
            tracker.active = self.sampler.active[row]
        self.trace = any(r.trace for r in requests)
        self._trace: StageTrace | None = None
        self.guidance = self._guidance_pairs()
        self.step = len(requests[0].prefix)
        for at, token in enumerate(requests[0].prefix):  # the forced tokens count as generated for the penalties
            self.sampler.accept(torch.full((self.rows,), token, dtype=torch.long, device=device))
            rejected = self.sampler.rejected()  # and structured output's matchers replay them
            if rejected:
                _, _, field = rejected[0]
                text = tokenizer.decode([token]) if tokenizer is not None else f"id {token}"
                raise PromptError(f"the forced token {text!r} (at token {at} of the output) "
                                  f"is not allowed by this config's {field}: branch from a token the constraint "
                                  "allows, or remove the constraint")
        self.k = min(max(max(r.top for r in requests), 0), vocab)

    def _guidance_pairs(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(guided rows, their guidance rows) as indices into this group, or None when no row is guided."""
        where = {(id(r), i): row for row, (r, i) in enumerate(self.owners)}
        guided, guides = [], []
        for row, (request, i) in enumerate(self.owners):
            if request.guides is not None:
                target, rows = request.guides
                main = where.get((id(target), rows[i]))
                if main is not None:
                    guided.append(main)
                    guides.append(row)
        if not guided:
            return None
        return (torch.tensor(guided, dtype=torch.long, device=self.device),
                torch.tensor(guides, dtype=torch.long, device=self.device))

    @property
    def rows(self) -> int:
        return len(self.owners)

    def sample(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This group's processed logits and picked tokens (its own step counter drives the seeded noise)."""
        uncond = None
        if self.guidance is not None:  # classifier-free guidance: each guided row reads its guidance row's logits
            guided, guides = self.guidance
            uncond = torch.zeros_like(logits)
            uncond[guided] = logits[guides]
        self._trace = StageTrace(logits) if self.trace else None
        processed = self.sampler.process(logits, self.step, self._trace, uncond)  # sampling/batch.py
        tokens = self.sampler.pick(processed, self.step)  # argmax, or the row's own seeded draw
        if self.guidance is not None:
            tokens[self.guidance[1]] = tokens[self.guidance[0]]  # a guidance row follows its guided row
        self.sampler.accept(tokens, processed)  # every stateful stage takes its rows' tokens
        for row, message in self.sampler.gave_up():  # a constraint llguidance could not hold: the request fails
            request, i = self.owners[row]
            if request.failure is None:
                spec = constraint_of(request.configs[i])
                request.failure = ConstraintFailed(message, field=spec[0] if spec else None)
                request.cancel_rows()
        return processed, tokens

    def take_trace(self, tokens: torch.Tensor, k: int) -> tuple[list[str], list[list[list[float]]]] | None:
        """This step's stage trace as (stage names, [rows][E][4 + k] values), or None when not tracing. The
        alternatives are the raw top k, as in the step's statistics."""
        trace, self._trace = self._trace, None
        if trace is None:
            return None
        return trace.names, trace.pack(tokens, trace.top_ids(k)).cpu().tolist()

    def record(self, stats: list[list[float]], k: int,
               traced: tuple[list[str], list[list[list[float]]]] | None = None) -> None:
        """Record each row's token from its packed statistics (and stage trace); one StepEvent per request."""
        now = time.perf_counter()
        rows_of: dict[int, list[int]] = {}  # one pass over the rows, not one per request
        for row, (request, _) in enumerate(self.owners):
            rows_of.setdefault(id(request), []).append(row)
        for request in self.requests:
            rows = rows_of.get(id(request), [])
            local = [self.owners[r][1] for r in rows]
            stages = None
            if traced is not None:
                names, values = traced
                stages = [unpack_stages(values[r], names, request.trackers[i].active) for r, i in zip(rows, local)]
            request.emit(build_steps([request.trackers[i] for i in local], [stats[r] for r in rows], k,
                                     self.tokenizer, self.step, now - request.start, local, stages))
        self.step += 1

    def running_rows(self) -> list[int]:
        """Rows (indices into this group) still running; rows the caller stopped or cancelled finish here."""
        alive: list[int] = []
        stopped: dict[int, tuple[Request, dict[int, str]]] = {}
        for row, (request, i) in enumerate(self.owners):
            tracker = request.trackers[i]
            if request.guides is not None and not tracker.finished:  # a guidance row ends with its guided row
                target, rows = request.guides
                if target.trackers[rows[i]].finished or target.cancel.is_set() or rows[i] in target.stop_rows:
                    tracker.finish("cancelled", time.perf_counter() - request.start)
            if not tracker.finished and (request.cancel.is_set() or i in request.stop_rows):
                stopped.setdefault(id(request), (request, {}))[1][i] = tracker.finish(
                    "cancelled", time.perf_counter() - request.start)
            if not tracker.finished:
                alive.append(row)
        for request, finished in stopped.values():
            if request.failure is None:  # a failed request says so through DecodeLoop.failed, not as finished rows
                request.emit(StepEvent(step=self.step, tokens={}, finished=finished))
        return alive

    def keep(self, rows: list[int]) -> None:
        """Only these rows (indices into this group) stay in the batch."""
        if len(rows) == self.rows:
            return
        self.owners = [self.owners[r] for r in rows]
        live = {id(r) for r, _ in self.owners}
        self.requests = [r for r in self.requests if id(r) in live]
        if self.owners:
            self.sampler.select(rows)
            self.guidance = self._guidance_pairs()
