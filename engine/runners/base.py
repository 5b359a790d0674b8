"""The ModelRunner protocol: everything the engine asks of a model, whichever engine runs it.

    prefill        run a prompt once and give N rows its cache (RowBatch); the logits of its last k positions
                   come back too, so a branch's forced tokens are scored by the same pass
    PromptChunks   a long prompt prefilled a slice at a time between decode steps (where the runner can)
    RowBatch       the running rows' cache: step (one token per row -> next logits), select (keep, drop or
                   reorder rows, padded to a bucket size), join (append another batch's rows)
    score          teacher-forced logits of a token sequence on a scratch context: no running row is touched
    facts          vocabulary size and which ids are tokens, end-of-sequence ids, context length, KV bytes per
                   token, and capabilities

The decode loop (engine/decoding/), beams, branching, the agreement figures and the server use nothing else;
nothing outside engine/runners/ looks inside a model object. What a runner cannot do is refused with its
engine's name in the message (require()).
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import torch

from ..results import PromptError

CAPABILITIES = {
    "beams": "beam search (num_beams > 1)",
    "guidance": "classifier-free guidance (guidance_scale)",
    "join": "rows of different prompts share one batch and join it while it runs",
    "chunked_prefill": "a long prompt prefilled in slices between decode steps",
    "batch_invariant": "a row's logits do not depend on the batch it runs in (no padding to bucket sizes needed)",
}

HOW_TO = {
    "beams": "beam search runs through transformers' generate; run beam configs on the transformers engine "
             "(--engine transformers, or engine=transformers on a pane's model), or set num_beams=1",
    "guidance": "set guidance_scale=1, or run it on the transformers engine (--engine transformers, or "
                "engine=transformers on a pane's model)",
}


class RowBatch(Protocol):
    """The cache of the rows decoding now. Rows are numbered 0..n-1 in the order the loop keeps them."""

    @property
    def logits(self) -> torch.Tensor:
        """[n, V] float32: each live row's next-token logits."""

    @property
    def rows(self) -> int:
        """Live rows."""

    @property
    def width(self) -> int:
        """Tokens of cache the longest row holds (what the key/value budget counts per row)."""

    def step(self, tokens: torch.Tensor) -> None:
        """Feed each live row its token ([n]); logits become the next step's."""

    def select(self, index: torch.Tensor, pad_to: int) -> None:
        """Keep the rows at these indices (in this order); pad_to: physical rows to run (copies nobody reads)."""

    def join(self, other: RowBatch) -> None:
        """Append other's rows after these (needs the "join" capability); on failure the batch is as it was."""


class PromptChunks(Protocol):
    """A prompt being prefilled a slice at a time."""

    done: int
    """Tokens prefilled so far."""

    def advance(self, tokens: int) -> None:
        """Prefill up to `tokens` more of the prompt."""

    def rows(self, n: int, pad_to: int) -> RowBatch:
        """Once every token is in: the prompt's cache for n rows."""


class ModelRunner(Protocol):
    engine: str
    """"transformers" or "llama.cpp": named in every refusal."""
    device: torch.device
    vocab_size: int
    """The width of the logits (token ids are 0..vocab_size-1)."""
    context_length: int | None
    kv_bytes_per_token: int | None
    """Bytes of key/value cache one row keeps per token (None: unknown, and no budget can be held)."""
    capabilities: frozenset[str]

    def eos_ids(self) -> list[int]: ...

    def prefill(self, context: torch.Tensor, rows: int, pad_to: int, max_new: int = 0,
                keep: int = 1) -> tuple[RowBatch, torch.Tensor]:
        """The prompt [T] once, its cache copied to `rows` rows (run as pad_to physical rows where the runner
        pads); returns the batch and the logits of the last `keep` positions [keep, V]. max_new: the most tokens
        any row will add (a runner that sizes its cache first reserves it)."""

    def chunks(self, context: torch.Tensor) -> PromptChunks: ...

    def score(self, ids: torch.Tensor, keep: int) -> torch.Tensor:
        """Logits [keep, V] of the last `keep` positions of ids [T], teacher-forced, on a scratch context."""

    def kv_bytes(self, rows: int, context: int, new: int) -> int | None:
        """Bytes of key/value cache for `rows` rows sharing a `context`-token prompt, each adding `new` tokens."""

    def close(self) -> None: ...


def eos_tensor(eos: Sequence[int], device: torch.device | str) -> torch.Tensor | None:
    """The EOS ids as a tensor for the sampler's min_new_tokens mask (None when the model has none)."""
    return torch.tensor(eos, dtype=torch.long, device=device) if eos else None


class LocalModel(Protocol):
    """What the decode loop needs of a model loaded in this process (backends' LoadedModel is one): its runner, its
    tokenizer, its load spec and its context. Declared here, below the decoding layer, so that decoding names the
    type without reaching up into backends/."""

    @property
    def runner(self) -> Any: ...

    @property
    def tokenizer(self) -> Any: ...

    @property
    def spec(self) -> Any: ...

    @property
    def context_length(self) -> int | None: ...


class RunnerBase:
    """What both runners share: capability checks with the engine's name, token-id checks."""

    engine = "?"
    capabilities: frozenset[str] = frozenset()
    vocab_size = 0
    kv_bytes_per_token: int | None = None

    def can(self, capability: str) -> bool:
        if capability not in CAPABILITIES:
            raise ValueError(f"unknown capability {capability!r}: one of {', '.join(CAPABILITIES)}")
        return capability in self.capabilities

    def require(self, capability: str) -> None:
        """PromptError naming the engine when it lacks the capability."""
        if not self.can(capability):
            raise PromptError(f"{CAPABILITIES[capability]} is not available on the {self.engine} engine: "
                              f"{HOW_TO.get(capability, 'use the transformers engine (--engine transformers)')}")

    def is_token(self, token: int) -> bool:
        return 0 <= token < self.vocab_size

    def check_token_ids(self, ids: Sequence[int]) -> list[int]:
        """The ids, or PromptError naming the first that is not one of the model's tokens."""
        bad = [t for t in ids if not self.is_token(t)]
        if bad:
            raise PromptError(f"token id {bad[0]} is outside this model's vocabulary (0..{self.vocab_size - 1})")
        return list(ids)

    def kv_bytes(self, rows: int, context: int, new: int) -> int | None:
        """Every row keeps its own copy of the prompt (a padded batch of transformers rows)."""
        per_token = self.kv_bytes_per_token
        return rows * (context + new) * per_token if per_token else None

    def close(self) -> None:
        pass
