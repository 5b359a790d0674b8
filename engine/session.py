"""Session: the one way into the engine for the CLI, the TUI, the experiments and serve.

    model      load a model, or reuse the one already loaded with the same settings (backends/pool.py)
    check      the preflight (decoding/preflight.py): one wording per mistake, for every front end to format
    encode     a prompt (text or chat messages) as the model's token ids
    run        Jobs (a prompt under some configs, on one model, streaming its steps) grouped by model: each model's
               jobs decode as one batch (each prompt prefilled once), the models side by side on threads of their
               own, so a slow model does not hold back the others; an Outcome per job
    generate   one prompt under some configs on one model (a one-job run)

serve's scheduler keeps one long-running batch (decoding/loop.py's DecodeLoop) that requests join as they come;
its requests are checked and encoded here all the same.
"""

from __future__ import annotations

import threading
from collections.abc import Container
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .backends import base as backend_base
from .backends.base import Backend, Part
from .backends.pool import ModelPool
from .config import DecodingConfig
from .conversation import Prompt
from .results import Completion, GenerationError, StepEvent

if TYPE_CHECKING:
    import torch

    from .backends.loading import ModelSpec, Progress


@dataclass
class Job:
    """One prompt under some configs on one model, and where its steps go."""

    backend: Backend
    prompt: Prompt
    configs: list[DecodingConfig]
    on_step: Callable[[StepEvent], None] | None = None
    prefix_ids: Sequence[int] = ()
    """Forced first tokens (a branch)."""
    stop_rows: Container[int] = field(default_factory=set)
    """Config indices the caller may add to while the run goes on: each stops alone at the next step."""


@dataclass
class Outcome:
    """A job's completions (in config order), or why its model failed."""

    completions: list[Completion] | None = None
    error: BaseException | None = None


class Session:
    """Models loaded once and shared; every run and check goes through here."""

    def __init__(self, pool: ModelPool | None = None) -> None:
        self.pool = pool or ModelPool()

    # -- models -----------------------------------------------------------------------------------------------
    def model(self, spec: ModelSpec, progress: Progress | None = None, api_key: str | None = None, rows: int = 8,
              tokens: int = 1024) -> Backend:
        """The model for spec: loaded, or the one already loaded with the same load settings."""
        return self.pool.get(spec, progress, api_key, rows=rows, tokens=tokens)

    # -- checks -----------------------------------------------------------------------------------------------
    @staticmethod
    def check(backend: Backend, prompt: Prompt, configs: Sequence[DecodingConfig]) -> torch.Tensor | None:
        """The preflight for a local model (PromptError / ConfigError, one wording per mistake); the prompt's token
        ids. A remote server checks its own requests: None."""
        if backend.runner is None:
            return None
        from .decoding.preflight import preflight

        return preflight(backend, prompt, configs)

    @staticmethod
    def encode(backend: Backend, prompt: Prompt) -> torch.Tensor:
        """The prompt's token ids on this model (chat template included)."""
        from .decoding.preflight import encode_prompt

        return encode_prompt(backend, prompt)

    # -- runs -------------------------------------------------------------------------------------------------
    def run(self, jobs: Sequence[Job], *, cancel: threading.Event | None = None, top_alternatives: int = 10,
            batch_invariant: bool = True, trace_stages: bool = False, on_thread: Callable[[], Any] | None = None
            ) -> list[Outcome]:
        """Every job, each model's jobs as one batch and the models side by side; an Outcome per job, in order.
        on_thread: called on each model's thread as it starts (the TUI names the engine's threads)."""
        cancel = cancel or threading.Event()
        outcomes = [Outcome() for _ in jobs]
        by_model: dict[int, list[int]] = {}
        for index, job in enumerate(jobs):
            by_model.setdefault(id(job.backend), []).append(index)

        def one_model(indices: list[int]) -> None:
            if on_thread is not None:
                on_thread()
            backend = jobs[indices[0]].backend
            parts = [Part(jobs[i].prompt, list(jobs[i].configs), jobs[i].on_step, jobs[i].prefix_ids,
                          jobs[i].stop_rows) for i in indices]
            try:
                results = backend_base.generate_parts(backend, parts, cancel=cancel, top_alternatives=top_alternatives,
                                         batch_invariant=batch_invariant,
                                         trace_stages=trace_stages and backend.can("stages"))
            except Exception as exc:  # noqa: BLE001 - the model's failure is its jobs' outcome
                for i in indices:
                    outcomes[i].error = exc
                return
            for i, done in zip(indices, results):
                outcomes[i].completions = done

        groups = list(by_model.values())
        if len(groups) == 1:
            one_model(groups[0])
        else:
            threads = [threading.Thread(target=one_model, args=(g,), name=f"engine-{n}", daemon=True)
                       for n, g in enumerate(groups)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        return outcomes

    def generate(self, backend: Backend, prompt: Prompt, configs: Sequence[DecodingConfig], **kwargs: Any
                 ) -> list[Completion]:
        """One prompt under the configs on one model; its completions (its model's failure raised)."""
        on_step = kwargs.pop("on_step", None)
        prefix = kwargs.pop("prefix_ids", ())
        stop_rows = kwargs.pop("stop_rows", set())
        (outcome,) = self.run([Job(backend, prompt, list(configs), on_step, prefix, stop_rows)], **kwargs)
        return completions_of(outcome)

    def generate_prompts(self, backend: Backend, items: Sequence[tuple[Prompt, Sequence[DecodingConfig]]],
                         **kwargs: Any) -> list[list[Completion]]:
        """Several prompts, each under its own configs, in one batch on one model; completions per prompt."""
        return [completions_of(o) for o in self.run([Job(backend, p, list(c)) for p, c in items], **kwargs)]


def completions_of(outcome: Outcome) -> list[Completion]:
    if outcome.error is not None:
        raise outcome.error
    if outcome.completions is None:
        raise GenerationError("the run ended before this job's turn came")
    return outcome.completions


_DEFAULT: list[Session] = []


def default_session() -> Session:
    """The process's session (the experiments' and the Python API's, when none is given)."""
    if not _DEFAULT:
        _DEFAULT.append(Session())
    return _DEFAULT[0]


def generate_many(backend: Backend, prompt: Prompt, configs: Sequence[DecodingConfig], **kwargs: Any
                  ) -> list[Completion]:
    """The Python API's one call: every config on the prompt, on the backend, through the process's session."""
    return default_session().generate(backend, prompt, configs, **kwargs)


def run_prompts(backend: Backend, items: Sequence[tuple[Prompt, Sequence[DecodingConfig]]], **kwargs: Any
                ) -> list[list[Completion]]:
    """Several prompts, each under its own configs, sharing the backend's batch (the process's session)."""
    kwargs.pop("max_rows", None)  # rows join the one batch as others finish
    return default_session().generate_prompts(backend, items, **kwargs)
