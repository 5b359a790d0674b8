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

The model is reached only through its ModelRunner (engine/runners/): the runner prefills, gives the rows
their cache (a RowBatch: step, select, join) and says what it can do. Where it can join (the transformers
runner on caches that can be edited), rows of different prompts share the batch; elsewhere one request
decodes at a time. A batch-invariant runner (llama.cpp) is never padded.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Sequence

import torch

from ..results import GenerationError, PromptError
from ..sampling import step_statistics
from .admission import PREFILL_CHUNK, Admission, ChunkedPrefill
from .requests import Group, Request
from .rows import new_tracker

if TYPE_CHECKING:
    from ..runners.base import LocalModel
    from ..results import Completion
    from ..runners.base import PromptChunks, RowBatch


def bucket_rows(n: int) -> int:
    """The padded batch size for n rows: 8, 16, 32, 64, then multiples of 64."""
    size = 8
    while size < n and size < 64:
        size *= 2
    return size if n <= size else -(-n // 64) * 64


class DecodeLoop(Admission):
    """The running decode batch. Not thread-safe: one thread calls admit() and step().

    The live rows (the groups' rows, in order) are the rows of `batch`, the runner's RowBatch, which may run
    more physical rows (padding to the bucket size, or a one-request cache's finished rows).
    """

    def __init__(self, loaded: LocalModel, max_rows: int = 64, pad: bool = True, prefill_chunk: int = PREFILL_CHUNK,
                 kv_budget: int | None = None) -> None:
        self.loaded, self.runner, self.tokenizer = loaded, loaded.runner, loaded.tokenizer
        self.device = self.runner.device
        self.max_rows, self.eos = max_rows, self.runner.eos_ids()
        self.pad = pad and not self.runner.can("batch_invariant")
        """Pad to a bucket size, unless the engine's rows come out the same in any batch (llama.cpp's CPU kernels)."""
        self.groups: list[Group] = []
        self.searches: list[Request] = []
        """Beam-only requests waiting for the batch to finish (their search runs on this thread)."""
        self.batch: RowBatch | None = None
        """The runner's RowBatch of the live rows (None when nothing decodes)."""
        self.forwards = 0
        self.prefill_chunk = prefill_chunk
        self.prefilling: list[ChunkedPrefill] = []
        """Long prompts being prefilled a chunk per step (their rows count as taken)."""
        self.kv_budget = kv_budget
        """Bytes the key/value cache may reach at its peak; a request that would pass it waits (None: no limit)."""
        self.kv_per_token = self.runner.kv_bytes_per_token if kv_budget else None
        self.failed: list[tuple[Request, str, BaseException]] = []
        """Requests whose prefill failed on their own (out of memory, a bad prompt), for the caller to report;
        the batch goes on without them."""

    @property
    def rows(self) -> int:
        return sum(g.rows for g in self.groups) + sum(p.request.rows for p in self.prefilling)

    @property
    def busy(self) -> bool:
        return bool(self.groups or self.searches or self.prefilling)

    @property
    def mergeable(self) -> bool:
        """Rows of different requests may share the batch (the runner can join them)."""
        return self.runner.can("join")

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
            raise RuntimeError(f"the {self.runner.engine} engine cannot join this model's rows: add one request to "
                               "an empty batch")
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
            self.groups.append(Group(members, self.runner.vocab_size, self.device, self.eos, self.tokenizer))

    def _prefill(self, request: Request, chunks: PromptChunks | None = None, start: float | None = None) -> None:
        """Prefill the prompt (and any forced prefix) once and give its cache to the request's rows (chunks: the
        prefill already done a slice at a time). A branch's forced tokens are scored by the same pass."""
        request.trackers = {i: new_tracker(self.tokenizer, request.configs[i], request.seeds[i], self.eos)
                            for i in request.batch_rows}
        start = start or time.perf_counter()
        context = torch.cat([request.prompt_ids, request.prompt_ids.new_tensor(request.prefix)]) \
            if request.prefix else request.prompt_ids
        n = len(request.batch_rows)
        prefilled: torch.Tensor | None
        if chunks is not None:
            rows, prefilled = chunks.rows(n, self.padded_rows(n)), None
        else:
            max_new = max(request.configs[i].max_new_tokens for i in request.batch_rows)
            keep = len(request.prefix) + 1 if request.prefix and request.guides is None else 1
            if request.prompt_top is not None:  # the prompt's own logprobs come from the same pass
                keep = context.numel()
            rows, prefilled = self.runner.prefill(context, n, self.padded_rows(n), max_new, keep)
        if request.prompt_top is not None:
            request.prompt_steps = self._prompt_steps(request, prefilled)
        if request.prefix and request.guides is None:  # a branch: the forced tokens are recorded with their
            from .beams import replay  # statistics under each config, from the prefill's own logits

            assert prefilled is not None  # a chunked prompt has no prefix (_chunks)
            for tracker in request.trackers.values():
                replay(self.loaded, request.prompt_ids, request.prefix, tracker, request.top, self.eos, 0.0,
                       logits=prefilled[:-1])
        self._join(rows)
        _sync(self.device)
        request.prefill_s = time.perf_counter() - start
        request.start = time.perf_counter()

    def _prompt_steps(self, request: Request, prefilled: torch.Tensor | None) -> list:
        """The prompt's tokens after the first, each with its logprob and top alternatives under the model alone
        (a neutral config: only raw figures mean anything for a prompt), from the prefill's logits when it kept
        them all, else from the runner's scratch scoring."""
        from ..config import DecodingConfig
        from .beams import replay
        from .rows import new_tracker

        ids = request.prompt_ids.tolist()
        if len(ids) < 2:
            return []
        logits = prefilled[: len(ids) - 1] if prefilled is not None and prefilled.shape[0] == len(ids) else None
        tracker = new_tracker(self.tokenizer, DecodingConfig(max_new_tokens=len(ids), do_sample=False), 0, [])
        tracker.detok.add(ids[0])  # the first token gives the second its context, as the text reads
        replay(self.loaded, request.prompt_ids[:1], ids[1:], tracker, request.prompt_top or 0, [], 0.0, logits=logits)
        return list(tracker.steps)

    def _join(self, rows: RowBatch) -> None:
        """Append new rows to the batch. A failure part-way (out of memory) leaves the batch as it was, less its
        padding rows, so the request fails alone (add())."""
        if self.batch is None:
            self.batch = rows
        else:
            self.batch.join(rows)
        self.batch.select(torch.arange(self.batch.rows, device=self.device), self.padded_rows(self.batch.rows))

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
        assert self.batch is not None  # there are rows while there are groups
        logits = self.batch.logits
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
        keep: list[int] = []
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
        assert self.batch is not None  # a group was running
        self.batch.select(torch.arange(self.batch.rows - group.rows, device=self.device),
                          self.padded_rows(self.batch.rows - group.rows))
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
        done = [r for r in done if r.failure is None]  # a failed request is the caller's through self.failed
        if not self.groups:
            self.batch = None
        elif len(keep) != offset:
            assert self.batch is not None  # there are rows while there are groups
            self.batch.select(torch.tensor(keep, dtype=torch.long, device=self.device), self.padded_rows(len(keep)))
        return done

    def _forward(self, tokens: torch.Tensor) -> None:
        """One step of the runner for every live row."""
        self.forwards += 1
        assert self.batch is not None  # called while groups run
        self.batch.step(tokens)

    def _note_incomplete(self, completion: Completion) -> None:
        """A constrained output cut at max_new_tokens before its grammar was done is said in the completion's notes
        (the JSON's notes, run's stderr, the pane's status), not only in its stop_reason."""
        from ..grammars import complete, constraint_of

        spec = constraint_of(completion.config)
        if spec is None or completion.stop_reason != "max_new_tokens":
            return
        if not complete(*spec, self.tokenizer, self.runner.vocab_size, tuple(self.eos), completion.token_ids):
            completion.extra["incomplete"] = incomplete_note(completion, spec)

    def _complete(self, request: Request) -> None:
        """Run the request's beam configs, then hand over every completion in config order."""
        from .beams import run_beam

        if request.failure is not None:  # it stopped part-way: the caller reports why (self.failed)
            self.failed.append((request, str(request.failure), request.failure))
            request.completions = []  # over: never reported twice
            return
        decode_s = time.perf_counter() - request.start
        results = {i: t.completion(request.prefill_s, decode_s, request.prompt_ids.numel())
                   for i, t in request.trackers.items()}
        for i in request.beam_rows:
            results[i] = run_beam(self.loaded, request.prompt_ids, request.configs[i], request.seeds[i], i,
                                  request.emit, request.cancel, request.top)
        for completion in results.values():
            self._note_incomplete(completion)
        request.completions = [results[i] for i in range(len(request.configs))]
        if request.on_done is not None:
            request.on_done(request.completions)


def incomplete_note(completion: Completion, spec: tuple[str, Any]) -> str:
    field = spec[0]
    return (f"the output was cut at max_new_tokens={completion.config.max_new_tokens} before the {field} constraint "
            "was complete, so it does not parse as the constraint asks: raise max_new_tokens")


def run_requests(loaded: LocalModel, requests: Sequence[Request], *, max_rows: int = 64, pad: bool = True) -> None:
    """Decode every request to the end through one DecodeLoop (each request's completions get set)."""
    loop = DecodeLoop(loaded, max_rows=max_rows, pad=pad)
    waiting = list(requests)
    while waiting or loop.busy:
        loop.admit(waiting)  # new requests join as soon as rows free up
        if loop.failed:  # one caller, one run: its failure is the run's (run.py words an out-of-memory)
            raise loop.failed[0][2]
        loop.step()
    if loop.failed:  # a request that failed part-way (a constraint llguidance gave up on)
        raise loop.failed[0][2]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
