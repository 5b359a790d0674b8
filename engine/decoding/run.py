"""The front doors of the decode loop: one prompt under many configs, or many prompts.

Both are runs of decoding/loop.py's DecodeLoop: a single prompt is a one-request run, several prompts
are several requests sharing the batch. Beam configs run inside the same loop (loop.py's _complete).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Container, Sequence

import torch

from ..config import DecodingConfig
from ..conversation import Prompt
from ..results import Completion, GenerationError, StepEvent
from .loop import bucket_rows, run_requests
from .preflight import check_context, check_engine, encode_prompt, preflight, tokens  # noqa: F401 - re-exported
from .requests import Request, check_configs

if TYPE_CHECKING:
    from ..runners.base import LocalModel
    from .requests import Part

OnStep = Callable[[StepEvent], None]


def new_request(loaded: LocalModel, prompt: Prompt, configs: Sequence[DecodingConfig], **fields: Any) -> Request:
    """A checked Request for the prompt: encoded (chat template included) and within the context."""
    configs = check_configs(configs)
    return Request(preflight(loaded, prompt, configs), configs, **fields)


def generate_local(loaded: LocalModel, prompt: Prompt, configs: Sequence[DecodingConfig], *,
                   on_step: OnStep | None = None, cancel: threading.Event | None = None, top_alternatives: int = 10,
                   batch_invariant: bool = True, prefix_ids: Sequence[int] = (),
                   stop_rows: Container[int] = (), trace_stages: bool = False) -> list[Completion]:
    """Every config on one prompt in one batch; completions in the order of configs.

    stop_rows: config indices the caller may add to while the run goes on (a set); each such row ends
    as "cancelled" at the next step while the others go on. Beam rows stop with cancel only.
    prefix_ids forces the first generated tokens (a branch: "continue from this token"); they are
    recorded as steps with their real statistics, then decoding goes on from there.
    """
    request = new_request(loaded, prompt, configs, on_step=on_step, cancel=cancel or threading.Event(),
                          top=top_alternatives, prefix=prefix_ids, stop_rows=stop_rows, trace=trace_stages)
    _run(loaded, [request], pad=batch_invariant)
    return _completions(request)


def generate_parts(loaded: LocalModel, parts: Sequence[Part], *, cancel: threading.Event | None = None,
                   top_alternatives: int = 10, batch_invariant: bool = True,
                   trace_stages: bool = False) -> list[list[Completion]]:
    """Several prompts streamed in one batch (decoding/requests.py's Part: prompt, configs, on_step, prefix,
    stop_rows); each prompt is prefilled once. A cancelled run stops every part."""
    cancel = cancel or threading.Event()
    requests = [new_request(loaded, part.prompt, part.configs, on_step=part.on_step, cancel=cancel,
                            top=top_alternatives, prefix=part.prefix_ids, stop_rows=part.stop_rows,
                            trace=trace_stages) for part in parts]
    _run(loaded, requests, pad=batch_invariant)
    return [_completions(request) for request in requests]


def generate_prompts(loaded: LocalModel, items: Sequence[tuple[str, Sequence[DecodingConfig]]], *,
                     cancel: threading.Event | None = None, top_alternatives: int = 10, max_rows: int = 64,
                     batch_invariant: bool = True) -> list[list[Completion]]:
    """Several prompts, each under its own configs, sharing decode batches; results in item order.

    Rows of different prompts decode together (up to max_rows at a time; a new prompt joins as soon
    as rows free up).
    """
    cancel = cancel or threading.Event()
    requests = [new_request(loaded, prompt, configs, cancel=cancel, top=top_alternatives) for prompt, configs in items]
    _run(loaded, requests, max_rows=max_rows, pad=batch_invariant)
    return [_completions(request) for request in requests]


def _completions(request: Request) -> list[Completion]:
    """The completions of a request that the run has decoded to the end (run_requests sets them)."""
    assert request.completions is not None
    return request.completions


def _run(loaded: LocalModel, requests: list[Request], max_rows: int = 64, pad: bool = True) -> None:
    try:
        run_requests(loaded, requests, max_rows=max_rows, pad=pad)
    except torch.OutOfMemoryError:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        configs, rows = sum(len(r.configs) for r in requests), sum(r.rows for r in requests)
        raise GenerationError(
            f"out of memory running {configs} configs (batch of {bucket_rows(min(rows, max_rows) or 1)} rows): "
            "run fewer configs, or lower max_new_tokens"
        ) from None


__all__ = ["Completion", "GenerationError", "StepEvent", "bucket_rows", "check_context", "check_engine", "encode_prompt",
           "generate_local", "generate_parts", "generate_prompts", "new_request"]
