"""The one decode loop. Every path (the TUI, `run`, `serve`, `sweep`, `ab`) decodes through DecodeLoop.

    admit    take waiting requests that fit; prefill each prompt once (batch 1, exactly as HF generate
             does), copy its cache to the request's rows, and join them to the running batch. A long prompt
             that arrives while rows are decoding is prefilled in chunks, one chunk per step, so the
             running rows keep streaming; it joins when its last chunk is done
    step     per group: sampler chain -> pick; statistics for every row (one host transfer); record
             each row's token; retire; one forward for every row still running
    retire   rows that finished, or that the caller stopped or cancelled, leave at once; a request whose
             rows are all done runs its beam configs (HF beam search) and gets its completions

A group is the requests that joined at the same step with the same forced prefix: its rows share one
step counter (the seeded noise is indexed by it), settings and sampler state.

Padding: the batch runs at a bucket size (8, 16, 32, 64, then multiples of 64; padding rows are copies
whose output nobody reads), so a seeded config gives the same tokens alone and among others.

Caches that can be edited (plain DynamicCache layers: full attention) let rows of different prompts
join (left-padded, with an attention mask and per-row positions) and leave. Other caches (sliding
window, recurrent state) decode one request at a time; its rows keep their slots until it is done.
"""

from __future__ import annotations

import time
from typing import Sequence

import torch

from ..results import GenerationError, PromptError
from ..sampling import step_statistics
from .admission import PREFILL_CHUNK, Admission, ChunkedPrefill
from .caches import cannot_batch, out_of_memory, output_cache, prefill_once, raise_if_out_of_memory, replicate
from .modelcalls import cache_keyword, eos_token_ids, kv_bytes_per_token
from .requests import Group, Request
from .rows import new_tracker


def bucket_rows(n: int) -> int:
    """The padded batch size for n rows: 8, 16, 32, 64, then multiples of 64."""
    size = 8
    while size < n and size < 64:
        size *= 2
    return size if n <= size else -(-n // 64) * 64


def _mergeable(cache) -> bool:
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) is DynamicLayer and layer.is_initialized for layer in layers)


def _left_pad(x: torch.Tensor, length: int) -> torch.Tensor:
    """Zeros in front along the sequence axis (-2 of [B, H, T, D], -1 of [B, T] masks)."""
    dim = -2 if x.dim() == 4 else -1
    missing = length - x.shape[dim]
    if missing <= 0:
        return x
    shape = list(x.shape)
    shape[dim] = missing
    return torch.cat([x.new_zeros(shape), x], dim=dim)


class DecodeLoop(Admission):
    """The running decode batch. Not thread-safe: one thread calls admit() and step().

    Physical rows: the cache's batch. Live rows (the groups' rows, in order) sit in `slots` of it; the
    rest are padding (up to the bucket size) or, for caches that cannot be edited, finished rows.
    """

    def __init__(self, loaded, max_rows: int = 64, pad: bool = True, prefill_chunk: int = PREFILL_CHUNK,
                 kv_budget: int | None = None):
        self.loaded, self.model, self.tokenizer = loaded, loaded.model, loaded.tokenizer
        self.device = loaded.device
        self.max_rows, self.eos = max_rows, eos_token_ids(loaded)
        self.known = loaded.extra if isinstance(getattr(loaded, "extra", None), dict) else {}
        self.pad = pad and not self.known.get("batching.invariant")
        """Pad to a bucket size, unless the engine's rows come out the same in any batch (llama.cpp's CPU kernels)."""
        self.groups: list[Group] = []
        self.searches: list[Request] = []
        """Beam-only requests waiting for the batch to finish (their search runs on this thread)."""
        self.cache = self.mask = self.positions = self.logits = self.slots = None
        self.mergeable: bool | None = self.known.get("batching.mergeable")
        """Whether the model's cache can be edited (rows join and leave); None until the first prefill tells."""
        self.forwards = 0
        self.keyword = cache_keyword(self.model)
        self.prefill_chunk = prefill_chunk
        self.prefilling: list[ChunkedPrefill] = []
        """Long prompts being prefilled a chunk per step (their rows count as taken)."""
        self.kv_budget = kv_budget
        """Bytes the key/value cache may reach at its peak; a request that would pass it waits (None: no limit)."""
        self.kv_per_token = kv_bytes_per_token(self.model) if kv_budget else None
        self.failed: list[tuple[Request, str, BaseException]] = []
        """Requests whose prefill failed on their own (out of memory, a bad prompt), for the caller to report;
        the batch goes on without them."""

    @property
    def rows(self) -> int:
        return sum(g.rows for g in self.groups) + sum(p.request.rows for p in self.prefilling)

    @property
    def busy(self) -> bool:
        return bool(self.groups or self.searches or self.prefilling)

    def padded_rows(self, n: int) -> int:
        """The rows the batch runs for n live rows: its bucket size (or n when it does not pad)."""
        return bucket_rows(n) if self.pad else n

    # -- admit -------------------------------------------------------------------------------------
    @torch.inference_mode()
    def add(self, requests: Sequence[Request]) -> None:
        """Prefill each request and join its rows to the batch: one new group per distinct prefix length."""
        batched = [r for r in requests if r.rows]
        if not requests:
            return
        for request in requests:
            if not request.rows:  # beams only: nothing joins the batch; searched once the batch is done, so
                request.start = time.perf_counter()  # the other prompts' rows stream meanwhile
                if self.groups or batched:
                    self.searches.append(request)
                else:
                    self._complete(request)
        if batched and (self.groups or len(batched) > 1) and not self.mergeable:
            raise RuntimeError("this model's cache cannot be joined: add one request to an empty batch")
        guidance, chunked = [], [r for r in batched if self._chunks(r)]
        self.prefilling += [ChunkedPrefill(r) for r in chunked]
        batched = [r for r in batched if r not in chunked]
        for request in list(batched):
            try:
                self._prefill(request)
            except (torch.OutOfMemoryError, GenerationError) as exc:
                self._fail_alone(request, exc)
                batched.remove(request)
                continue
            for guide in request.guidance_requests(self.tokenizer) if request.guided_rows else ():
                if not self.mergeable:  # known after the first prefill
                    raise PromptError("classifier-free guidance adds rows on the negative prompt, which needs a "
                                      "model whose cache rows can join (full attention); this model's cannot: "
                                      "set guidance_scale=1")
                self._prefill(guide)
                guidance.append(guide)
        batched += guidance
        for length in dict.fromkeys(len(r.prefix) for r in batched):
            members = [r for r in batched if len(r.prefix) == length]
            self.groups.append(Group(members, self.logits.shape[-1], self.device, self.eos, self.tokenizer))

    def _prefill(self, request: Request, out=None, start: float | None = None) -> None:
        """Prefill the prompt (and any forced prefix) once and copy its cache to the request's rows (out: the
        prefill already done, in chunks)."""
        request.trackers = {i: new_tracker(self.tokenizer, request.configs[i], request.seeds[i], self.eos)
                            for i in request.batch_rows}
        if request.prefix and request.guides is None:  # a branch: the forced tokens are recorded with their
            # statistics under each config
            from .beams import replay

            for tracker in request.trackers.values():
                replay(self.loaded, request.prompt_ids, request.prefix, tracker, request.top, self.eos, 0.0)
        start = start or time.perf_counter()
        context = torch.cat([request.prompt_ids, request.prompt_ids.new_tensor(request.prefix)]) \
            if request.prefix else request.prompt_ids
        n = len(request.batch_rows)
        reserve = getattr(self.model, "reserve", None)  # an engine that sizes its cache first (llama.cpp)
        if out is None and reserve is not None:
            reserve(context.numel(), self.padded_rows(n), max(request.configs[i].max_new_tokens
                                                              for i in request.batch_rows))
        out = out if out is not None else prefill_once(self.model, context)
        if self.mergeable is None:  # the first prefill tells what kind of cache this model keeps
            self.mergeable = self.known["batching.mergeable"] = _mergeable(output_cache(out))
        physical = n if self.mergeable else self.padded_rows(n)
        rows = replicate(self.model, out, context, physical)  # caches.py copies every kind of cache to the rows
        logits = out.logits[:, -1, :].float().expand(physical, -1)
        if self.mergeable:
            ones = torch.ones(n, context.numel(), dtype=torch.long, device=self.device)
            self._join(rows.cache, ones, torch.full((n,), context.numel(), dtype=torch.long, device=self.device),
                       logits)
        else:  # one request at a time: caches.py's RowCache steps it
            self.cache, self.logits = rows, logits
            self.slots = torch.arange(n, device=self.device)
        _sync(self.device)
        request.prefill_s = time.perf_counter() - start
        request.start = time.perf_counter()

    def _join(self, cache, mask, positions, logits) -> None:
        """Append new rows (their cache, mask, positions, logits) to the batch. A failure part-way (out of
        memory) leaves the batch as it was, less its padding rows, so the request fails alone (add())."""
        if self.cache is None:
            self.cache, self.mask, self.positions, self.logits = cache, mask, positions, logits
            self.slots = torch.arange(logits.shape[0], device=self.device)
        else:
            n = self.slots.shape[0]  # live rows come first (_physical), so dropping the padding is a view
            cut = int(self.mask[:n].argmax(dim=1).min())  # leading columns that are padding in every live row
            old = self.mask.shape[1] - cut
            length = max(old, mask.shape[1])
            done = 0  # layers joined so far
            try:
                for layer, theirs in zip(self.cache.layers, cache.layers):
                    keys = torch.cat([_left_pad(layer.keys[:n, :, cut:], length), _left_pad(theirs.keys, length)])
                    values = torch.cat([_left_pad(layer.values[:n, :, cut:], length),
                                        _left_pad(theirs.values, length)])
                    layer.keys, layer.values = keys, values
                    done += 1
                joined = (torch.cat([_left_pad(self.mask[:n, cut:], length), _left_pad(mask, length)]),
                          torch.cat([self.positions[:n], positions]), torch.cat([self.logits[:n], logits]))
            except BaseException as exc:
                for i, layer in enumerate(self.cache.layers):  # back to the live rows alone, as views: no memory
                    start = length - old if i < done else cut
                    layer.keys, layer.values = layer.keys[:n, :, start:], layer.values[:n, :, start:]
                self.mask, self.positions, self.logits = self.mask[:n, cut:], self.positions[:n], self.logits[:n]
                self.slots = torch.arange(n, device=self.device)
                raise_if_out_of_memory(exc)
                raise
            self.mask, self.positions, self.logits = joined
        self._physical(torch.arange(self.logits.shape[0], device=self.device))

    # -- step --------------------------------------------------------------------------------------
    @torch.inference_mode()
    def step(self) -> list[Request]:
        """One decode step for every row; returns the requests that finished (their completions are set)."""
        done = self._retire()  # rows stopped or cancelled since the last step
        if self.prefilling:  # a chunk of a long prompt between decode steps (all of it when nothing decodes)
            self._advance_prefill(everything=not self.groups)
        if not self.groups:
            searches, self.searches = self.searches, []
            for request in searches:  # beam-only requests that waited for the batch
                self._complete(request)
            return [r for r in done if r.guides is None] + searches
        logits = self._live_logits()
        picked, offset = [], 0
        for group in self.groups:
            picked.append(group.sample(logits[offset: offset + group.rows]))
            offset += group.rows
        processed, tokens = torch.cat([p for p, _ in picked]), torch.cat([t for _, t in picked])
        k = max(g.k for g in self.groups)
        stats = step_statistics(logits, processed, tokens, k, self._named()).cpu().tolist()  # one host transfer
        offset = 0
        for group, (_, chosen) in zip(self.groups, picked):
            traced = group.take_trace(chosen, k)
            group.record(stats[offset: offset + group.rows], k, traced)
            offset += group.rows
        keep = []
        done += self._retire(keep)
        tokens = tokens[keep] if len(keep) != tokens.shape[0] else tokens
        while self.groups:
            try:
                self._forward(tokens)  # one forward, every row
                break
            except torch.OutOfMemoryError as exc:
                if len(self.groups) < 2 or not self.mergeable:
                    raise
                tokens = tokens[: tokens.shape[0] - self._evict_newest(exc)]
        return [r for r in done if r.guides is None]  # guidance rows' requests are the loop's own

    def _evict_newest(self, exc: BaseException) -> int:
        """The batch ran out of memory for a step: the group that joined last fails alone (self.failed) and
        leaves, so the others go on. Returns how many rows left."""
        group = self.groups.pop()
        for request in group.requests:
            if request.guides is None:
                self.failed.append((request, f"out of memory for a step beside {self.rows} other rows", exc))
        self._physical(self.slots[: self.slots.shape[0] - group.rows])
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return group.rows

    def _named(self) -> torch.Tensor | None:
        """[N, m] the token ids each live row's logprob_tokens names (-1: none); None when no row names any."""
        width = max((g.sampler.named.shape[1] for g in self.groups if g.sampler.named is not None), default=0)
        if not width:
            return None
        parts = []
        for g in self.groups:
            part = torch.full((g.rows, width), -1, dtype=torch.long, device=self.device)
            if g.sampler.named is not None:
                part[:, : g.sampler.named.shape[1]] = g.sampler.named
            parts.append(part)
        return torch.cat(parts)

    def _live_logits(self) -> torch.Tensor:
        if self.mergeable:  # live rows come first, then padding
            return self.logits[: self.slots.shape[0]]
        return self.logits.index_select(0, self.slots)

    # -- retire ------------------------------------------------------------------------------------
    def _retire(self, keep: list[int] | None = None) -> list[Request]:
        """Finished and stopped rows leave; requests whose rows are all done complete. keep gets the
        indices (in the numbering before retiring) of the rows that stay."""
        keep = [] if keep is None else keep
        candidates, offset = [], 0
        for group in self.groups:
            candidates += group.requests
            alive = group.running_rows()
            keep += [offset + row for row in alive]
            offset += group.rows
            group.keep(alive)
        self.groups = [g for g in self.groups if g.rows]
        done = [r for r in candidates if r.completions is None and all(t.finished for t in r.trackers.values())]
        for request in done:
            self._complete(request)
        if not self.groups:
            self.cache = self.mask = self.positions = self.logits = self.slots = None
        elif len(keep) != offset:
            self._physical(self.slots[torch.tensor(keep, dtype=torch.long, device=self.device)])
        return done

    def _physical(self, live: torch.Tensor, pad: bool = True) -> None:
        """Make the rows at physical indices `live` the batch's live rows (then padding, if pad)."""
        if not self.mergeable:  # rows keep their slots until the request is done
            self.slots = live
            return
        n = live.shape[0]
        extra = (self.padded_rows(n) if pad else n) - n
        index = torch.cat([live, live[:1].expand(extra)]) if extra else live
        if index.shape[0] != self.mask.shape[0] or not bool(
                (index == torch.arange(index.shape[0], device=self.device)).all()):
            try:
                self.cache.batch_select_indices(index)
                self.mask, self.positions, self.logits = self.mask[index], self.positions[index], self.logits[index]
            except (RuntimeError, MemoryError) as exc:
                if not (out_of_memory(exc) and bool((live == torch.arange(n, device=self.device)).all())):
                    raise  # a reordering half done cannot be undone
                for layer in self.cache.layers:  # only the padding failed: go on without it (views, no memory)
                    layer.keys, layer.values = layer.keys[:n], layer.values[:n]
                self.mask, self.positions, self.logits = self.mask[:n], self.positions[:n], self.logits[:n]
            cut = int(self.mask.argmax(dim=1).min())  # leading columns that are padding in every row
            if cut > 0:
                self.mask = self.mask[:, cut:]
                for layer in self.cache.layers:
                    layer.keys, layer.values = layer.keys[..., cut:, :], layer.values[..., cut:, :]
        self.slots = torch.arange(n, device=self.device)

    def _forward(self, tokens: torch.Tensor) -> None:
        """Feed each live row its token (padding rows get token 0; nobody reads their output)."""
        self.forwards += 1
        physical = self.logits.shape[0]
        if physical != tokens.shape[0]:
            full = tokens.new_zeros(physical)
            full[self.slots] = tokens
            tokens = full
        if not self.mergeable:
            self.logits = self.cache.step(tokens)  # caches.py: one forward for the request's rows
            return
        mask, length = self.mask, self.mask.shape[1]
        self.mask = torch.cat([self.mask, self.mask.new_ones(physical, 1)], dim=1)
        try:
            out = self.model(input_ids=tokens[:, None], attention_mask=self.mask,
                             position_ids=self.positions[:, None], use_cache=True, **{self.keyword: self.cache})
        except BaseException as exc:
            self.mask = mask  # the step did not happen: layers it reached give their new column back
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[..., :length, :], layer.values[..., :length, :]
            if isinstance(exc, (RuntimeError, ValueError, TypeError, AttributeError, IndexError, KeyError)):
                raise_if_out_of_memory(exc)
                if not isinstance(exc, torch.OutOfMemoryError):
                    raise cannot_batch(self.model, physical, exc) from None
            raise
        self.positions = self.positions + 1
        self.logits = out.logits[:, -1, :].float()

    def _complete(self, request: Request) -> None:
        """Run the request's beam configs, then hand over every completion in config order."""
        from .beams import run_beam

        decode_s = time.perf_counter() - request.start
        results = {i: t.completion(request.prefill_s, decode_s, request.prompt_ids.numel())
                   for i, t in request.trackers.items()}
        for i in request.beam_rows:
            results[i] = run_beam(self.loaded, request.prompt_ids, request.configs[i], request.seeds[i], i,
                                  request.emit, request.cancel, request.top)
        request.completions = [results[i] for i in range(len(request.configs))]
        if request.on_done is not None:
            request.on_done(request.completions)


def run_requests(loaded, requests: Sequence[Request], *, max_rows: int = 64, pad: bool = True) -> None:
    """Decode every request to the end through one DecodeLoop (each request's completions get set)."""
    loop = DecodeLoop(loaded, max_rows=max_rows, pad=pad)
    waiting = list(requests)
    while waiting or loop.busy:
        loop.admit(waiting)  # new requests join as soon as rows free up
        if loop.failed:  # one caller, one run: its failure is the run's (run.py words an out-of-memory)
            raise loop.failed[0][2]
        loop.step()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
