"""The seam between decodelab and whatever runs the model: one declared interface, two backends.

    Backend                 what the TUI, the CLI, the server and the experiments call
      LoadedModel           a transformers model in this process (backends/loading.py): every run goes
                            through decoding/loop.py's DecodeLoop
      RemoteModel           an OpenAI-compatible server (backends/remote.py): one request per config

Front ends ask a backend what it can do (`can(...)`) instead of asking whether it is remote.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Container, Sequence

from ..config import DecodingConfig
from ..conversation import Prompt
from ..decoding.requests import Part  # noqa: F401 - re-exported: the run's data lives in the decoding layer
from ..results import Completion, ModelLoadError, StepEvent  # noqa: F401 - ModelLoadError is re-exported

CAPABILITIES = {
    "stop_rows": "stop one config of a running batch while the others go on",
    "branch": "continue from a forced prefix of tokens (branching a pane from a token)",
    "raw_logprobs": "the model's own log-probabilities before any sampler stage",
    "top_n": "any number of alternatives per token",
    "shared_batches": "rows of different prompts decode in one batch",
    "tokenizer": "a local tokenizer (token bytes, prompt length before running)",
    "stages": "what each sampler stage did at each step (trace_stages)",
}


class Backend(ABC):
    """Runs decoding configs on prompts and reports Completions with per-token statistics."""

    capabilities: frozenset[str] = frozenset()
    """Names from CAPABILITIES that this backend supports."""
    tokenizer: Any
    """The local tokenizer, or None (remote servers). Declared here, set by each backend."""
    spec: Any
    """The backends/loading.py ModelSpec this backend was loaded from."""
    runner: Any = None
    """The ModelRunner (engine/runners/) of a model in this process; None for a remote server."""

    def can(self, capability: str) -> bool:
        if capability not in CAPABILITIES:
            raise ValueError(f"unknown capability {capability!r}: one of {', '.join(CAPABILITIES)}")
        return capability in self.capabilities

    @property
    @abstractmethod
    def name(self) -> str:
        """A short name for the model (titles, JSON output)."""

    @property
    @abstractmethod
    def context_length(self) -> int | None:
        """The model's context in tokens, or None when unknown."""

    @abstractmethod
    def describe(self) -> str:
        """One line for the model bar: name, size, dtype, device, or the server."""

    @abstractmethod
    def generate(self, prompt: Prompt, configs: Sequence[DecodingConfig], *,
                 on_step: Callable[[StepEvent], None] | None = None, cancel: threading.Event | None = None,
                 top_alternatives: int = 10, prefix_ids: Sequence[int] = (), stop_rows: Container[int] = (),
                 batch_invariant: bool = True, trace_stages: bool = False) -> list[Completion]:
        """Every config on one prompt (a text, or chat messages: engine/conversation.py); completions in config order.

        prefix_ids needs can("branch"); stop_rows needs can("stop_rows"): a backend without them refuses
        a non-empty prefix and ignores stop_rows (cancel still stops everything). trace_stages needs
        can("stages"): each TokenStep then carries what every sampler stage did (others ignore it)."""

    def generate_prompts(self, items: Sequence[tuple[str, Sequence[DecodingConfig]]], *,
                         cancel: threading.Event | None = None, top_alternatives: int = 10,
                         max_rows: int = 64) -> list[list[Completion]]:
        """Several prompts, each under its own configs; by default one prompt after another."""
        return [self.generate(prompt, configs, cancel=cancel, top_alternatives=top_alternatives)
                for prompt, configs in items]


def generate_parts(backend: Backend, parts: Sequence[Part], *, cancel: threading.Event | None = None,
                   top_alternatives: int = 10, batch_invariant: bool = True,
                   trace_stages: bool = False) -> list[list[Completion]]:
    """Several prompts (each pane of a conversation has its own), streamed; completions per part, in order.

    The local engine decodes every part in one batch (each prompt prefilled once); other backends run the
    parts one after another."""
    own = getattr(backend, "generate_parts", None)
    if own is not None:
        return own(parts, cancel=cancel, top_alternatives=top_alternatives, batch_invariant=batch_invariant,
                   trace_stages=trace_stages)
    out = []
    for part in parts:
        out.append(backend.generate(part.prompt, part.configs, on_step=part.on_step, cancel=cancel,
                                    top_alternatives=top_alternatives, prefix_ids=part.prefix_ids,
                                    stop_rows=part.stop_rows, batch_invariant=batch_invariant))
        if cancel is not None and cancel.is_set():
            break
    return out
