"""One decode batch across different prompts: rows join at step boundaries and leave when they finish.

    each request: prefill its prompt alone (batch 1, exactly as HF generate does) -> replicate to its
    n rows -> left-pad its cache (or the running one) to a common length -> join the running batch.
    every step: one forward for all rows (attention mask + per-row position ids) -> per-group
    sampling (a group = the requests that joined at the same step, so they share a step counter) ->
    finished or cancelled rows leave the batch at once, and their request gets its completions.

Joining a running batch edits the KV cache directly, which is exact only for plain DynamicCache
layers (full attention). Other caches (sliding window, recurrent state) run one request at a time
(its n rows together, through engine/cache.py), and the next request waits for it.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from ..config import DecodingConfig
from .caches import prefill
from .modelcalls import eos_token_ids
from ..results import Completion, PromptError, StepEvent
from .rows import build_steps, new_tracker
from ..sampling import RowSettings, RowState, pick, process, step_statistics


@dataclass(eq=False)
class Request:
    """One prompt under one or more configs (one row each), with where its events and results go."""

    prompt_ids: torch.Tensor
    configs: list[DecodingConfig]
    on_step: Callable[[StepEvent], None] | None = None
    on_done: Callable[[list[Completion]], None] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    top: int = 10
    seeds: list[int] = field(default_factory=list)
    completions: list[Completion] | None = None
    trackers: list = field(default_factory=list)
    prefill_s: float = 0.0
    start: float = 0.0

    def __post_init__(self):
        if not self.configs:
            raise PromptError("no decoding configs to run: add at least one")
        if not self.seeds:
            self.seeds = [c.seed if c.seed is not None else secrets.randbelow(2**32) for c in self.configs]

    @property
    def rows(self) -> int:
        return len(self.configs)

    def emit(self, event: StepEvent) -> None:
        if self.on_step is not None and (event.tokens or event.finished):
            self.on_step(event)


class Group:
    """Requests that joined at the same step: their rows share one step counter, settings and penalty state."""

    def __init__(self, requests: list[Request], vocab: int, device, eos: list[int], tokenizer=None):
        self.requests = requests
        self.owners = [(r, i) for r in requests for i in range(r.rows)]
        configs = [r.configs[i] for r, i in self.owners]
        seeds = [r.seeds[i] for r, i in self.owners]
        self.tokenizer = tokenizer
        self.settings = RowSettings.build(configs, seeds, vocab, device, tokenizer)
        eos_t = torch.tensor(eos, dtype=torch.long, device=device) if eos else None
        self.state = RowState.for_prompts(self.settings, [r.prompt_ids for r, _ in self.owners], vocab,
                                          max(c.max_new_tokens for c in configs), eos_t)
        self.k = min(max(r.top for r in requests), vocab)
        self.step, self.vocab = 0, vocab

    @property
    def rows(self) -> int:
        return len(self.owners)

    def sample(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This group's processed logits and picked tokens (its own step counter drives the seeded noise)."""
        processed = process(logits, self.settings, self.state, self.step)  # the sampler chain
        tokens = pick(processed, self.settings, self.step)  # argmax, or the row's own seeded draw
        self.state.update(tokens, processed)
        return processed, tokens

    def record(self, stats: list[list[float]], k: int, tokenizer) -> None:
        """Record each row's token from its packed statistics and tell each request."""
        by_request: dict[int, list[int]] = {}
        for row, (request, _) in enumerate(self.owners):
            by_request.setdefault(id(request), []).append(row)
        now = time.perf_counter()
        for request in self.requests:
            rows = by_request.get(id(request), [])
            local = [self.owners[r][1] for r in rows]
            trackers = [request.trackers[i] for i in local]
            request.emit(build_steps(trackers, [stats[r] for r in rows], k, tokenizer, self.step,
                                     now - request.start, local))
        self.step += 1

    def keep(self, rows: list[int]) -> None:
        """Only these rows (indices into this group) stay in the batch."""
        before = self.rows
        if len(rows) == before:
            return
        self.owners = [self.owners[r] for r in rows]
        live = {id(r) for r, _ in self.owners}
        self.requests = [r for r in self.requests if id(r) in live]
        if not self.owners:
            return
        device = self.settings.seed_lo.device
        self.settings = RowSettings.build([r.configs[i] for r, i in self.owners],
                                          [r.seeds[i] for r, i in self.owners], self.vocab, device,
                                          self.tokenizer)
        self.state.select(torch.tensor(rows, dtype=torch.long, device=device), self.settings)  # rows that stay


def _mergeable(cache) -> bool:
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) is DynamicLayer and layer.is_initialized for layer in layers)


def _probe_mergeable(loaded) -> bool:
    """Whether this model's cache can be left-padded and joined (one 1-token forward tells)."""
    known = loaded.extra.get("batching.mergeable") if isinstance(getattr(loaded, "extra", None), dict) else None
    if known is None:
        with torch.inference_mode():
            ids = torch.zeros(1, 1, dtype=torch.long, device=loaded.device)
            known = _mergeable(loaded.model(input_ids=ids, use_cache=True).past_key_values)
        if isinstance(getattr(loaded, "extra", None), dict):
            loaded.extra["batching.mergeable"] = known
    return known


def _left_pad(x: torch.Tensor, length: int) -> torch.Tensor:
    """Zeros in front along the sequence axis (-2 of [B, H, T, D], -1 of [B, T] masks)."""
    dim = -2 if x.dim() == 4 else -1
    missing = length - x.shape[dim]
    if missing <= 0:
        return x
    shape = list(x.shape)
    shape[dim] = missing
    return torch.cat([x.new_zeros(shape), x], dim=dim)


class MultiBatch:
    """The running decode batch. Not thread-safe: one thread calls add() and step()."""

    def __init__(self, loaded, max_rows: int = 64):
        self.loaded, self.model, self.tokenizer = loaded, loaded.model, loaded.tokenizer
        self.device = loaded.device
        self.max_rows = max_rows
        self.eos = eos_token_ids(loaded)
        self.groups: list[Group] = []
        self.cache = self.mask = self.positions = self.logits = None
        self.mergeable = _probe_mergeable(loaded)
        self.forwards = 0

    @property
    def rows(self) -> int:
        return sum(g.rows for g in self.groups)

    def can_join(self, rows: int) -> bool:
        """Whether rows more can join now (an empty batch always takes one request, however large)."""
        if not self.groups:
            return True
        return self.mergeable and self.rows + rows <= self.max_rows

    def admit(self, waiting: list[Request]) -> list[Request]:
        """Take from the front of waiting what can join now (in order), and add it as one group."""
        joining, rows = [], self.rows
        while waiting:
            if (self.groups or joining) and not (self.mergeable and rows + waiting[0].rows <= self.max_rows):
                break
            rows += waiting[0].rows
            joining.append(waiting.pop(0))
        self.add(joining)
        return joining

    @torch.inference_mode()
    def add(self, requests: Sequence[Request]) -> None:
        """Prefill each request's prompt and join its rows to the batch as one new group."""
        requests = list(requests)
        if not requests:
            return
        if any(c.num_beams > 1 for r in requests for c in r.configs):
            raise PromptError("beam configs do not join a multi-prompt batch; run them with generate_many")
        if (self.groups or len(requests) > 1) and not self.mergeable:
            raise RuntimeError("this model's cache cannot be joined: add one request to an empty batch")
        for request in requests:
            start = time.perf_counter()
            request.start = start
            request.trackers = [new_tracker(self.tokenizer, c, s, self.eos) for c, s in zip(request.configs, request.seeds)]
            n, length = request.rows, request.prompt_ids.numel()
            out, rows = prefill(self.model, request.prompt_ids, n)  # engine/cache.py copies it to n rows
            logits = out.logits[:, -1, :].float().expand(n, -1)
            if not self.mergeable:  # one request at a time: engine/cache.py's RowCache steps it
                self.cache, self.logits = rows, logits
            else:
                mask = torch.ones(n, length, dtype=torch.long, device=self.device)
                positions = torch.full((n,), length, dtype=torch.long, device=self.device)
                self._join(rows.cache, mask, positions, logits)
            request.prefill_s = time.perf_counter() - start
        self.groups.append(Group(requests, self.logits.shape[-1], self.device, self.eos, self.tokenizer))

    def _join(self, cache, mask, positions, logits) -> None:
        if self.cache is None:
            self.cache, self.mask, self.positions, self.logits = cache, mask, positions, logits
            return
        length = max(self.mask.shape[1], mask.shape[1])
        for mine, theirs in zip(self.cache.layers, cache.layers):
            mine.keys = torch.cat([_left_pad(mine.keys, length), _left_pad(theirs.keys, length)])
            mine.values = torch.cat([_left_pad(mine.values, length), _left_pad(theirs.values, length)])
        self.mask = torch.cat([_left_pad(self.mask, length), _left_pad(mask, length)])
        self.positions = torch.cat([self.positions, positions])
        self.logits = torch.cat([self.logits, logits])

    @torch.inference_mode()
    def step(self) -> list[Request]:
        """One decode step for every row; returns the requests that finished (their completions are set)."""
        if not self.groups:
            return []
        picked = []
        for group, rows in self._slices():
            picked.append(group.sample(self.logits[rows]))  # each group with its own step counter
        processed, tokens = torch.cat([p for p, _ in picked]), torch.cat([t for _, t in picked])
        k = max(g.k for g in self.groups)
        stats = step_statistics(self.logits, processed, tokens, k).cpu().tolist()  # the step's one host transfer
        keep, done = [], []
        for group, rows in self._slices():
            group.record(stats[rows], k, self.tokenizer)
            alive = self._running_rows(group)  # cancelled rows stop here
            keep.extend(rows.start + row for row in alive)
            done += self._finished_requests(group)  # they return now, whatever the other rows do
            if self.mergeable:  # finished rows leave (other caches keep their rows until all are done)
                group.keep(alive)
        if not keep:
            self.groups, self.cache, self.mask, self.positions, self.logits = [], None, None, None, None
            return done
        self.groups = [g for g in self.groups if g.rows]
        self._forward(keep, tokens)  # one forward for every running row
        return done

    def _slices(self) -> list[tuple[Group, slice]]:
        out, offset = [], 0
        for group in self.groups:
            out.append((group, slice(offset, offset + group.rows)))
            offset += group.rows
        return out

    @staticmethod
    def _running_rows(group: Group) -> list[int]:
        alive = []
        for row, (request, i) in enumerate(group.owners):
            if request.cancel.is_set() and not request.trackers[i].finished:
                request.trackers[i].finish("cancelled", time.perf_counter() - request.start)
                request.emit(StepEvent(step=group.step, tokens={}, finished={i: "cancelled"}))
            if not request.trackers[i].finished:
                alive.append(row)
        return alive

    def _finished_requests(self, group: Group) -> list[Request]:
        done = [r for r in group.requests if r.completions is None and all(t.finished for t in r.trackers)]
        for request in done:
            self._complete(request)
        return done

    def _forward(self, keep: list[int], tokens: torch.Tensor) -> None:
        self.forwards += 1
        if not self.mergeable:
            self.logits = self.cache.step(tokens)  # engine/cache.py: one forward for the request's rows
            return
        self._select(keep, tokens)
        out = self.model(input_ids=self._tokens[:, None], attention_mask=self.mask,
                         position_ids=self.positions[:, None], past_key_values=self.cache, use_cache=True)
        self.positions = self.positions + 1
        self.logits = out.logits[:, -1, :].float()

    def _select(self, keep: list[int], tokens: torch.Tensor) -> None:
        """Keep only the running rows, drop padding columns no row needs, and add this step's column."""
        if len(keep) != tokens.shape[0]:
            index = torch.tensor(keep, dtype=torch.long, device=self.device)
            self.cache.batch_select_indices(index)
            self.mask, self.positions, tokens = self.mask[index], self.positions[index], tokens[index]
            if self.mergeable:
                cut = int(self.mask.argmax(dim=1).min())  # leading columns that are padding in every row
                if cut > 0:
                    self.mask = self.mask[:, cut:]
                    for layer in self.cache.layers:
                        layer.keys, layer.values = layer.keys[..., cut:, :], layer.values[..., cut:, :]
        self._tokens = tokens
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], 1)], dim=1)

    def _complete(self, request: Request) -> None:
        decode_s = time.perf_counter() - request.start - request.prefill_s
        request.completions = [t.completion(request.prefill_s, decode_s, request.prompt_ids.numel())
                               for t in request.trackers]
        if request.on_done is not None:
            request.on_done(request.completions)

    def cancel_all(self) -> None:
        for group in self.groups:
            for request in group.requests:
                request.cancel.set()


def generate_prompts(loaded, items: Sequence[tuple[str, Sequence[DecodingConfig]]], *, cancel=None,
                     top_alternatives: int = 10, max_rows: int = 64) -> list[list[Completion]]:
    """Run several prompts, each under its own configs, sharing decode batches; results in item order.

    Rows of different prompts decode together (up to max_rows at a time; a new prompt joins as soon
    as rows free up). Beam configs run afterwards through generate_many, one prompt at a time.
    """
    from .run import check_context, encode_prompt, generate_many

    cancel = cancel or threading.Event()
    pending, beams, results = [], [], [[None] * len(configs) for _, configs in items]
    for index, (prompt, configs) in enumerate(items):
        configs = list(configs)
        if not configs:
            raise PromptError("no decoding configs to run: add at least one")
        flat = [j for j, c in enumerate(configs) if c.num_beams == 1]
        beams += [(index, j) for j, c in enumerate(configs) if c.num_beams > 1]
        if flat:
            ids = encode_prompt(loaded, prompt)
            check_context(loaded, ids.numel(), max(configs[j].max_new_tokens for j in flat))
            pending.append((index, flat, Request(ids, [configs[j] for j in flat], cancel=cancel,
                                                 top=top_alternatives)))
    batch = MultiBatch(loaded, max_rows=max_rows)
    waiting = [request for _, _, request in pending]
    while waiting or batch.groups:
        batch.admit(waiting)  # new prompts join as soon as rows free up
        batch.step()
    for index, flat, request in pending:
        for j, completion in zip(flat, request.completions):
            results[index][j] = completion
    for index, j in beams:
        prompt, configs = items[index]
        results[index][j] = generate_many(loaded, prompt, [configs[j]], cancel=cancel,
                                          top_alternatives=top_alternatives)[0]
    return results
