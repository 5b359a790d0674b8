"""Which waiting requests join the running batch, and when (DecodeLoop inherits this).

    admit        take waiting requests from the front while they fit: the row limit, and the key/value
                 cache budget (every row is padded to the longest context, up to the longest remaining
                 generation); what does not fit waits for rows to finish
    chunks       a long prompt arriving while rows decode is prefilled a chunk per decode step, so the
                 running rows keep streaming; it joins when its last chunk is done
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import torch

from ..results import GenerationError
from .requests import Group, Request

if TYPE_CHECKING:
    from ..runners.base import PromptChunks, RowBatch

PREFILL_CHUNK = 256
"""Tokens of a long prompt prefilled per decode step while other rows run (0: always in one go)."""


@dataclass(eq=False)
class ChunkedPrefill:
    """A long prompt being prefilled a chunk at a time between decode steps."""

    request: Request
    chunks: PromptChunks | None = None
    """The runner's PromptChunks: the slices prefilled so far."""
    start: float = field(default_factory=time.perf_counter)


class Admission:
    """DecodeLoop's admission: its rows, groups, cache budget and chunked prefills (see loop.py)."""

    if TYPE_CHECKING:  # DecodeLoop's attributes and methods, which this mixin uses
        runner: Any
        tokenizer: Any
        device: torch.device
        eos: list[int]
        max_rows: int
        groups: list[Group]
        batch: RowBatch | None
        prefill_chunk: int
        prefilling: list[ChunkedPrefill]
        kv_budget: int | None
        kv_per_token: int | None
        failed: list[tuple[Request, str, BaseException]]

        @property
        def rows(self) -> int: ...

        @property
        def mergeable(self) -> bool: ...

        def padded_rows(self, n: int) -> int: ...

        def add(self, requests: Sequence[Request]) -> None: ...

        def _prefill(self, request: Request, chunks: PromptChunks | None = None,
                     start: float | None = None) -> None: ...

    def admit(self, waiting: list[Request]) -> list[Request]:
        """Take from the front of waiting what can join now (in order) and join it; returns what joined."""
        joining: list[Request] = []
        rows = self.rows
        while waiting:
            takes_rows = any(r.rows for r in joining)  # a beam-only request joins no rows: it never blocks
            if waiting[0].rows and (self.groups or takes_rows):  # beside other rows, it must fit: rows, then cache
                if not (self.mergeable and rows + waiting[0].rows <= self.max_rows):
                    break
                need = self.kv_need(joining + [waiting[0]]) if self.kv_per_token else None
                if need is not None and self.kv_budget is not None and need > self.kv_budget:
                    break  # its cache would not fit beside the running rows': it waits for them to finish
            rows += waiting[0].rows
            joining.append(waiting.pop(0))
        self.add(joining)
        return joining

    def kv_need(self, joining: Sequence[Request] = ()) -> int | None:
        """Bytes of key/value cache the batch reaches at its peak if these requests join now: every row is as
        long as the longest (the batch left-pads), and grows until the longest remaining generation ends."""
        if not self.kv_per_token:
            return None
        coming = list(joining) + [p.request for p in self.prefilling]
        rows = self.rows + sum(r.rows for r in joining)
        width = max([self.batch.width if self.batch is not None else 0]
                    + [r.prompt_ids.numel() + len(r.prefix) for r in coming])
        remaining = [t.config.max_new_tokens - len(t.token_ids) for g in self.groups for r, i in g.owners
                     for t in (r.trackers[i],) if not t.finished]
        remaining += [c.max_new_tokens for r in coming for c in r.configs]
        longest = max(remaining, default=0)
        return self.kv_bytes(rows, width + longest, longest)

    def kv_bytes(self, rows: int, tokens: int, new: int = 0) -> int:
        """Bytes of key/value cache for `rows` rows of `tokens` tokens each (prompt and output; `new` of them
        the output), padded to the batch's bucket size, as the runner keeps them."""
        return self.runner.kv_bytes(self.padded_rows(rows), tokens - new, new) or 0

    def _chunks(self, request: Request) -> bool:
        """Whether this request's prompt is prefilled in chunks between decode steps: a long plain prompt (no
        branch, no guidance rows) arriving while rows decode, on a model whose cache rows can join."""
        return bool(self.prefill_chunk and self.groups and self.runner.can("chunked_prefill")
                    and not request.prefix and not request.guided_rows and request.prompt_top is None
                    and request.prompt_ids.numel() > self.prefill_chunk)

    def _next_chunk(self, job: ChunkedPrefill) -> None:
        if job.chunks is None:
            job.chunks = self.runner.chunks(job.request.prompt_ids)
        job.chunks.advance(self.prefill_chunk)

    def _fail_alone(self, request: Request, exc: BaseException) -> None:
        """A request whose own prefill or join failed (out of memory, a bad prompt) fails alone; the batch goes
        on (the caller reports self.failed)."""
        if isinstance(exc, torch.OutOfMemoryError) and torch.cuda.is_available():
            torch.cuda.empty_cache()
        why = "out of memory for its prompt" if isinstance(exc, torch.OutOfMemoryError) else str(exc)
        self.failed.append((request, why, exc))

    def _advance_prefill(self, everything: bool) -> None:
        """One chunk of the oldest long prompt (every chunk of every one when nothing else is decoding); a
        prompt whose last chunk is done joins the batch as a group of its own."""
        while self.prefilling:
            job = self.prefilling[0]
            try:
                self._next_chunk(job)
                assert job.chunks is not None  # _next_chunk made them
                if job.chunks.done >= job.request.prompt_ids.numel():
                    self.prefilling.pop(0)
                    self._prefill(job.request, job.chunks, job.start)
                    self.groups.append(Group([job.request], self.runner.vocab_size, self.device, self.eos,
                                             self.tokenizer))
            except (torch.OutOfMemoryError, GenerationError) as exc:
                if job in self.prefilling:
                    self.prefilling.remove(job)
                self._fail_alone(job.request, exc)
            if not everything:
                return
