"""Every decode row gets its own copy of the prompt's cache, whatever kind of cache the model keeps.

transformers 5 models keep key/value layers (full, sliding-window, static), linear-attention and SSM
layers (conv and recurrent states: LFM2, Mamba, FalconH1, Qwen3-Next), hybrids of both, and a few
classes of their own. Copying the prompt's state to N rows, in order of preference:
    1. `reorder_cache(zeros(N))`: every layer class implements it for beam search, and it copies every
       part of the state (keys/values, conv and recurrent states); checked afterwards: every tensor that
       had one row must now have N;
    2. where that fails or misses a part: prefill the prompt once more as a batch of N identical rows;
    3. a model that returns no cache at all: every step runs over the whole sequence (slow, but right).
A model that cannot run batched this way raises GenerationError saying why, never a raw exception.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..memory import raise_if_out_of_memory
from ..results import GenerationError
from .hf_calls import forward_last

CACHE_FIELDS = ("cache", "past_key_values", "cache_params")
"""Where a model output carries its cache, and the forward keyword that takes it back. transformers >= 5.24
names it `cache` everywhere; its outputs still answer to the old names (aliases of `cache`), but Mamba's
forward accepts only `cache_params` as an old name and silently drops `past_key_values`, so `cache` comes
first. Before 5.24: past_key_values, or cache_params (Mamba)."""


def output_cache(out: Any) -> Any:
    """The cache a model output carries (None when it returns none)."""
    return next((c for c in (getattr(out, f, None) for f in CACHE_FIELDS) if c is not None), None)


class RowCache:
    """The decode state of N rows and the one forward that advances all of them by a token."""

    def __init__(self, model: Any, rows: int, field: str | None, cache: Any = None, ids: torch.Tensor | None = None,
                 how: str = "copied") -> None:
        self.model = model
        self.rows = rows
        self.field = field
        self.cache = cache
        self.ids = ids
        self.how = how
        """copied, prefilled (N rows prefilled together) or recomputed (no cache: whole sequence each step)."""

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per row ([N]); returns the next-token logits [N, V] in float32."""
        try:
            if self.field is None:  # no cache: run the whole sequence again
                assert self.ids is not None  # replicate() gives a cache-less RowCache the prompt's ids
                self.ids = torch.cat([self.ids, tokens[:, None]], dim=1)
                out = forward_last(self.model, self.ids, 1, use_cache=False)
            else:
                out = self.model(input_ids=tokens[:, None], use_cache=True, **{self.field: self.cache})
                new = getattr(out, self.field, None)
                self.cache = self.cache if new is None else new
        except torch.OutOfMemoryError:
            raise
        except (RuntimeError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
            raise_if_out_of_memory(exc)
            raise cannot_batch(self.model, self.rows, exc) from None
        return out.logits[:, -1, :].float()


def prefill(model: Any, context: torch.Tensor, rows: int) -> tuple[Any, RowCache]:
    """Run the prompt `context` ([T]) once and give `rows` rows its cache: (the batch-1 output, RowCache)."""
    out = prefill_once(model, context)
    return out, replicate(model, out, context, rows)


def prefill_once(model: Any, context: torch.Tensor, keep: int = 1) -> Any:
    """The batch-1 forward over the prompt `context` ([T]), with the logits of its last `keep` positions; a failure
    is a GenerationError saying so."""
    try:
        return forward_last(model, context[None, :], keep, use_cache=True)
    except torch.OutOfMemoryError:
        raise
    except (RuntimeError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise_if_out_of_memory(exc)
        raise GenerationError(f"the {_name(model)} model failed on the prompt: {_first_line(exc)}") from None


def replicate(model: Any, prefill_out: Any, context: torch.Tensor, rows: int) -> RowCache:
    """A RowCache for `rows` rows from the batch-1 prefill output `prefill_out` over `context` ([T])."""
    field = next((f for f in CACHE_FIELDS if getattr(prefill_out, f, None) is not None), None)
    if field is None:
        return RowCache(model, rows, None, ids=context[None, :].expand(rows, -1).clone(), how="recomputed")
    cache = getattr(prefill_out, field)
    if rows == 1:
        return RowCache(model, rows, field, cache)
    copied = _copy_rows(cache, rows)
    if copied is not None:
        return RowCache(model, rows, field, copied)
    return RowCache(model, rows, field, _prefill_rows(model, context, rows, field), how="prefilled")


def _copy_rows(cache: Any, rows: int) -> Any:
    """The cache with every batch-carrying tensor copied to `rows` rows, or None when that cannot be done."""
    before = batch_sizes(cache)
    if not before or any(size != 1 for size in before.values()):
        return None
    try:
        if isinstance(cache, (tuple, list)):
            cache = _map_tensors(cache, lambda t: t.repeat_interleave(rows, dim=0) if t.dim() >= 2 else t)
        elif hasattr(cache, "reorder_cache"):
            cache.reorder_cache(torch.zeros(rows, dtype=torch.long))
        elif hasattr(cache, "batch_repeat_interleave"):
            cache.batch_repeat_interleave(rows)
        else:
            return None
    except torch.OutOfMemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure but running out of memory means "copy another way"
        raise_if_out_of_memory(exc)
        return None
    after = batch_sizes(cache)
    if after.keys() != before.keys() or any(size != rows for size in after.values()):
        return None  # some part of the state (a conv or SSM state, say) was not copied
    return cache


def _prefill_rows(model: Any, context: torch.Tensor, rows: int, field: str) -> Any:
    try:
        out = forward_last(model, context[None, :].expand(rows, -1).contiguous(), 1, use_cache=True)
    except torch.OutOfMemoryError:
        raise
    except (RuntimeError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise_if_out_of_memory(exc)
        raise cannot_batch(model, rows, exc) from None
    cache = getattr(out, field, None)
    if cache is None:
        raise GenerationError(f"{_name(model)} returned no cache from a batched prefill: run one config at a time")
    return cache


def batch_sizes(cache: Any) -> dict[str, int]:
    """The leading (batch) size of every tensor of rank >= 2 the cache holds, by attribute path."""
    found: dict[str, int] = {}
    _walk(cache, "cache", found, set(), 0)
    return found


def _walk(obj: Any, path: str, found: dict[str, int], seen: set[int], depth: int) -> None:
    if depth > 6 or id(obj) in seen:
        return
    if isinstance(obj, torch.Tensor):
        if obj.dim() >= 2:
            found[path] = obj.shape[0]
        return
    seen.add(id(obj))
    if isinstance(obj, dict):
        items = [(str(k), v) for k, v in obj.items()]
    elif isinstance(obj, (list, tuple)):
        items = [(str(i), v) for i, v in enumerate(obj)]
    elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("transformers"):
        items = [(k, v) for k, v in vars(obj).items() if k not in ("config", "model", "device", "dtype")]
    else:
        return
    for key, value in items:
        _walk(value, f"{path}.{key}", found, seen, depth + 1)


def _map_tensors(obj: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_map_tensors(v, fn) for v in obj)
    return obj


def _name(model: Any) -> str:
    return getattr(getattr(model, "config", None), "model_type", None) or type(model).__name__


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def cannot_batch(model: Any, rows: int, exc: BaseException) -> GenerationError:
    return GenerationError(f"the {_name(model)} model cannot decode {rows} rows from one prompt "
                           f"({_first_line(exc)}); run one config at a time, or report this model")
