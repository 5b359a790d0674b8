"""The transformers runner: a Hugging Face causal LM in this process, behind the ModelRunner protocol (base.py).

    PaddedRows   caches that can be edited (plain DynamicCache layers: full attention): rows of different
                 prompts join (left-padded, with an attention mask and per-row positions) and leave; the
                 batch runs at the bucket size it is given (padding rows are copies nobody reads)
    FixedRows    every other cache (sliding window, recurrent state, none at all: hf_caches.py copies each to
                 the rows): one prompt at a time, and rows keep their slots until it is done

Which of the two a model gets is known after its first prefill (the kind of cache it returns).
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from ..memory import out_of_memory, raise_if_out_of_memory
from .base import RowBatch, RunnerBase
from .hf_caches import RowCache, cannot_batch, output_cache, prefill_once, replicate
from .hf_calls import cache_keyword, eos_token_ids, forward_last, kv_bytes_per_token


def _left_pad(x: torch.Tensor, length: int) -> torch.Tensor:
    """Zeros in front along the sequence axis (-2 of [B, H, T, D], -1 of [B, T] masks)."""
    dim = -2 if x.dim() == 4 else -1
    missing = length - x.shape[dim]
    if missing <= 0:
        return x
    shape = list(x.shape)
    shape[dim] = missing
    return torch.cat([x.new_zeros(shape), x], dim=dim)


def _mergeable(cache: Any) -> bool:
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if not layers:
        return False
    return all(type(layer) is DynamicLayer and layer.is_initialized for layer in layers)


class TransformersRunner(RunnerBase):
    engine = "transformers"

    def __init__(self, model: Any, tokenizer: Any, device: torch.device) -> None:
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.vocab_size = model.get_input_embeddings().num_embeddings
        self.context_length = _context_length(model.config)
        self.keyword = cache_keyword(model)
        self.joins: bool | None = None
        """Whether the model's cache can be edited (rows join and leave); None until the first prefill tells."""
        self.chunked = True
        """False once the model refused a prompt in pieces: long prompts then go in one go."""
        self._eos = eos_token_ids(model, tokenizer)

    @functools.cached_property
    def kv_bytes_per_token(self) -> int | None:  # type: ignore[override]  # RunnerBase's default, computed once
        return kv_bytes_per_token(self.model)

    @property
    def capabilities(self) -> frozenset[str]:  # type: ignore[override]  # RunnerBase's default, known after a prefill
        can = {"beams", "guidance"}
        if self.joins:  # known after the first prefill (until then one request at a time, as for any cache)
            can.add("join")
            if self.chunked:
                can.add("chunked_prefill")
        return frozenset(can)

    def eos_ids(self) -> list[int]:
        return list(self._eos)

    # -- prefill -------------------------------------------------------------------------------------------
    def prefill(self, context: torch.Tensor, rows: int, pad_to: int, max_new: int = 0,
                keep: int = 1) -> tuple[PaddedRows | FixedRows, torch.Tensor]:
        out = prefill_once(self.model, context, keep)
        return self.rows_from(out, context, rows, pad_to), out.logits[0].float()

    def rows_from(self, out: Any, context: torch.Tensor, rows: int, pad_to: int) -> PaddedRows | FixedRows:
        """The batch of `rows` rows from a batch-1 prefill output over context."""
        if self.joins is None:  # the first prefill tells what kind of cache this model keeps
            self.joins = _mergeable(output_cache(out))
        logits = out.logits[:, -1, :].float()
        if self.joins:
            copied = replicate(self.model, out, context, rows)
            return PaddedRows(self, copied.cache, torch.ones(rows, context.numel(), dtype=torch.long,
                                                             device=self.device),
                              torch.full((rows,), context.numel(), dtype=torch.long, device=self.device),
                              logits.expand(rows, -1))
        return FixedRows(replicate(self.model, out, context, pad_to), logits.expand(pad_to, -1), rows,
                         context.numel())

    def chunks(self, context: torch.Tensor) -> HFChunks:
        return HFChunks(self, context)

    def score(self, ids: torch.Tensor, keep: int) -> torch.Tensor:
        return forward_last(self.model, ids[None, :], keep, use_cache=False).logits[0].float()

    def beam_search(self, **kwargs: Any) -> Any:
        """transformers' own generate (beam search)."""
        return self.model.generate(**kwargs)


def _context_length(config: Any) -> int | None:
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


class HFChunks:
    """A long prompt prefilled a slice at a time; its cache carries the slices so far."""

    out: Any
    """The latest forward's output (a transformers ModelOutput, carrying the cache); None before the first slice."""

    def __init__(self, runner: TransformersRunner, context: torch.Tensor) -> None:
        self.runner, self.context, self.out, self.done = runner, context, None, 0

    def advance(self, tokens: int) -> None:
        runner = self.runner
        piece = self.context[self.done: self.done + tokens]
        more: dict[str, Any] = {runner.keyword: output_cache(self.out)} if self.out is not None else {}
        try:
            self.out = forward_last(runner.model, piece[None, :], 1, use_cache=True, **more)
            self.done += piece.numel()
        except torch.OutOfMemoryError:
            raise
        except (RuntimeError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
            raise_if_out_of_memory(exc)
            runner.chunked = False  # this model cannot take a prompt in pieces: the whole prompt in one go
            self.out, self.done = prefill_once(runner.model, self.context), self.context.numel()

    def rows(self, n: int, pad_to: int) -> PaddedRows | FixedRows:
        return self.runner.rows_from(self.out, self.context, n, pad_to)


class PaddedRows:
    """Rows of a DynamicCache, left-padded to a common width, live rows first then padding (bucket copies)."""

    def __init__(self, runner: TransformersRunner, cache: Any, mask: torch.Tensor, positions: torch.Tensor,
                 logits: torch.Tensor) -> None:
        self.runner, self.cache, self.mask, self.positions, self._logits = runner, cache, mask, positions, logits
        self.n = logits.shape[0]

    @property
    def logits(self) -> torch.Tensor:
        return self._logits[: self.n]

    @property
    def rows(self) -> int:
        return self.n

    @property
    def width(self) -> int:
        return self.mask.shape[1]

    def join(self, other: PaddedRows) -> None:
        """Append other's rows. A failure part-way (out of memory) leaves the batch as it was, less its padding
        rows, so the request fails alone."""
        n = self.n  # live rows come first, so dropping the padding is a view
        cut = int(self.mask[:n].argmax(dim=1).min())  # leading columns that are padding in every live row
        old = self.mask.shape[1] - cut
        length = max(old, other.mask.shape[1])
        done = 0  # layers joined so far
        try:
            for layer, theirs in zip(self.cache.layers, other.cache.layers):
                keys = torch.cat([_left_pad(layer.keys[:n, :, cut:], length), _left_pad(theirs.keys, length)])
                values = torch.cat([_left_pad(layer.values[:n, :, cut:], length), _left_pad(theirs.values, length)])
                layer.keys, layer.values = keys, values
                done += 1
            joined = (torch.cat([_left_pad(self.mask[:n, cut:], length), _left_pad(other.mask, length)]),
                      torch.cat([self.positions[:n], other.positions]), torch.cat([self._logits[:n], other.logits]))
        except BaseException as exc:
            for i, layer in enumerate(self.cache.layers):  # back to the live rows alone, as views: no memory
                start = length - old if i < done else cut
                layer.keys, layer.values = layer.keys[:n, :, start:], layer.values[:n, :, start:]
            self.mask, self.positions, self._logits = self.mask[:n, cut:], self.positions[:n], self._logits[:n]
            raise_if_out_of_memory(exc)
            raise
        self.mask, self.positions, self._logits = joined
        self.n = n + other.n

    def select(self, index: torch.Tensor, pad_to: int) -> None:
        n = index.shape[0]
        extra = max(pad_to, n) - n
        full = torch.cat([index, index[:1].expand(extra)]) if extra else index
        device = self.mask.device
        if full.shape[0] != self.mask.shape[0] or not bool((full == torch.arange(full.shape[0], device=device)).all()):
            try:
                self.cache.batch_select_indices(full)
                self.mask, self.positions, self._logits = self.mask[full], self.positions[full], self._logits[full]
            except (RuntimeError, MemoryError) as exc:
                if not (out_of_memory(exc) and bool((index == torch.arange(n, device=device)).all())):
                    raise  # a reordering half done cannot be undone
                for layer in self.cache.layers:  # only the padding failed: go on without it (views, no memory)
                    layer.keys, layer.values = layer.keys[:n], layer.values[:n]
                self.mask, self.positions, self._logits = self.mask[:n], self.positions[:n], self._logits[:n]
            cut = int(self.mask.argmax(dim=1).min())  # leading columns that are padding in every row
            if cut > 0:
                self.mask = self.mask[:, cut:]
                for layer in self.cache.layers:
                    layer.keys, layer.values = layer.keys[..., cut:, :], layer.values[..., cut:, :]
        self.n = n

    def step(self, tokens: torch.Tensor) -> None:
        """Feed each live row its token (padding rows get token 0; nobody reads their output)."""
        physical = self.mask.shape[0]
        if physical != tokens.shape[0]:
            full = tokens.new_zeros(physical)
            full[: tokens.shape[0]] = tokens
            tokens = full
        mask, length = self.mask, self.mask.shape[1]
        self.mask = torch.cat([self.mask, self.mask.new_ones(physical, 1)], dim=1)
        model = self.runner.model
        try:
            out = model(input_ids=tokens[:, None], attention_mask=self.mask, position_ids=self.positions[:, None],
                        use_cache=True, **{self.runner.keyword: self.cache})
        except BaseException as exc:
            self.mask = mask  # the step did not happen: layers it reached give their new column back
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[..., :length, :], layer.values[..., :length, :]
            if isinstance(exc, (RuntimeError, ValueError, TypeError, AttributeError, IndexError, KeyError)):
                raise_if_out_of_memory(exc)
                if not isinstance(exc, torch.OutOfMemoryError):
                    raise cannot_batch(model, physical, exc) from None
            raise
        self.positions = self.positions + 1
        self._logits = out.logits[:, -1, :].float()


class FixedRows:
    """One prompt's rows in a cache that cannot be edited: all physical rows step together until the request is
    done; the live ones sit in `slots` (finished rows keep theirs and are fed token 0)."""

    def __init__(self, cache: RowCache, logits: torch.Tensor, live: int, context: int) -> None:
        self.cache, self._logits = cache, logits
        self.slots = torch.arange(live, device=logits.device)
        self.context = context

    @property
    def logits(self) -> torch.Tensor:
        return self._logits.index_select(0, self.slots)

    @property
    def rows(self) -> int:
        return self.slots.shape[0]

    @property
    def width(self) -> int:
        return self.context

    def join(self, other: RowBatch) -> None:
        raise RuntimeError("this model's cache cannot be joined: add one request to an empty batch")

    def select(self, index: torch.Tensor, pad_to: int) -> None:
        self.slots = self.slots[index]  # rows keep their slots until the request is done

    def step(self, tokens: torch.Tensor) -> None:
        full = tokens.new_zeros(self._logits.shape[0])
        full[self.slots] = tokens
        self._logits = self.cache.step(full)
        self.context += 1
