"""The seam between decodelab and whatever runs the model: one interface, two backends.

    Backend                 what the UI, the CLI and the experiments call
      LocalBackend          a transformers model in this process (engine/loading.py's LoadedModel):
                            one prompt -> generation.generate_local; many prompts -> batching
      RemoteModel           an OpenAI-compatible server (engine/remote.py): one request per config

Callers use generate_many(loaded, ...) and run_prompts(loaded, ...), which ask the backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

from ..config import DecodingConfig
from ..results import Completion


class Backend(ABC):
    """Runs decoding configs on prompts and reports Completions with per-token statistics."""

    remote: bool = False
    """True when the model runs elsewhere (no tokenizer, no branching, statistics as the server reports them)."""

    @abstractmethod
    def generate(self, prompt: str, configs: Sequence[DecodingConfig], *, on_step=None, cancel=None,
                 top_alternatives: int = 10, prefix_ids: Sequence[int] = (), **options) -> list[Completion]:
        """Every config on one prompt; completions in the order of configs."""

    def generate_prompts(self, items: Sequence[tuple[str, Sequence[DecodingConfig]]], *, cancel=None,
                         top_alternatives: int = 10, max_rows: int = 64) -> list[list[Completion]]:
        """Several prompts, each under its own configs; by default one prompt after another."""
        return [self.generate(prompt, configs, cancel=cancel, top_alternatives=top_alternatives)
                for prompt, configs in items]


class LocalBackend(Backend):
    """A model in this process: batched decoding, multi-prompt batches, branching."""

    def generate(self, prompt, configs, *, on_step=None, cancel=None, top_alternatives=10, prefix_ids=(),
                 **options) -> list[Completion]:
        from ..decoding.run import generate_local

        return generate_local(self, prompt, configs, on_step=on_step, cancel=cancel,
                              top_alternatives=top_alternatives, prefix_ids=prefix_ids, **options)

    def generate_prompts(self, items, *, cancel=None, top_alternatives=10, max_rows=64) -> list[list[Completion]]:
        from ..decoding.loop import generate_prompts

        return generate_prompts(self, items, cancel=cancel, top_alternatives=top_alternatives, max_rows=max_rows)


def run_prompts(loaded, items, **kwargs) -> list[list[Completion]]:
    """Several prompts through loaded's backend (rows of different prompts share batches when local)."""
    if isinstance(loaded, Backend):
        return loaded.generate_prompts(items, **kwargs)
    from ..decoding.loop import generate_prompts

    return generate_prompts(loaded, items, **kwargs)
