"""How far one pane's model is from a reference pane's, measured on the same prompt (run --json, the TUI's figures).

    teacher-forced   the other model is run over the reference pane's prompt and tokens (one forward, no
                     sampling); at each of the reference's tokens both models' raw next-token distributions
                     are compared:
        kl           KL(reference || other) in nats per token, and its mean
        top-1        the share of tokens where both models' most likely next token is the same; the first
                     where they differ is where their greedy outputs part (when the reference pane is greedy)
    perplexity       each model's perplexity on the other pane's text (exp of the mean negative log-likelihood)

Across different tokenizers the tokens do not line up: KL and top-1 are not defined, and each model scores the
other's text re-tokenized with its own tokenizer; the figures then say so (same_tokenizer false) and add bits per
byte, which does not depend on the tokenizer. Remote servers give no full distribution: their panes are skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ..decoding.preflight import encode_prompt

if TYPE_CHECKING:
    from ..backends.base import Backend
    from ..conversation import Prompt
    from ..results import Completion


@dataclass
class Agreement:
    """One pane measured against the reference pane."""

    pane: str
    reference: str
    same_tokenizer: bool
    kl_per_token: list[float] = field(default_factory=list)
    """KL(reference || this pane's model) at each of the reference pane's tokens, in nats."""
    top1_agreement: float | None = None
    first_disagreement: int | None = None
    """The first reference token (0-based) where the two models' most likely tokens differ (None: nowhere)."""
    first_divergence: int | None = None
    """The first token where the two panes' outputs differ (None: one is a prefix of the other)."""
    perplexity_on_reference: float | None = None
    """This pane's model's perplexity on the reference pane's text."""
    reference_perplexity_on_pane: float | None = None
    """The reference model's perplexity on this pane's text."""
    bits_per_byte_on_reference: float | None = None
    reference_bits_per_byte_on_pane: float | None = None
    note: str = ""
    kl_on_pane: list[float] | None = None
    """KL(this pane's model || the reference's) at each of this pane's own tokens, when asked for (the TUI's kl
    heatmap colours a pane's tokens by it); None across different tokenizers."""

    @property
    def kl_mean(self) -> float | None:
        return sum(self.kl_per_token) / len(self.kl_per_token) if self.kl_per_token else None

    def to_dict(self) -> dict:
        return {"pane": self.pane, "reference": self.reference, "same_tokenizer": self.same_tokenizer,
                "kl_mean": _number(self.kl_mean), "kl_per_token": [_number(v) for v in self.kl_per_token],
                "top1_agreement": _number(self.top1_agreement), "first_disagreement": self.first_disagreement,
                "first_divergence": self.first_divergence,
                "perplexity_on_reference": _number(self.perplexity_on_reference),
                "reference_perplexity_on_pane": _number(self.reference_perplexity_on_pane),
                "bits_per_byte_on_reference": _number(self.bits_per_byte_on_reference),
                "reference_bits_per_byte_on_pane": _number(self.reference_bits_per_byte_on_pane),
                **({"note": self.note} if self.note else {})}


def scorable(backend: Backend) -> bool:
    """Whether the backend can give full next-token distributions (a local model: transformers or llama.cpp)."""
    return backend.can("raw_logprobs") and backend.can("tokenizer") and backend.runner is not None


def token_logprobs(backend: Backend, prompt: Prompt, token_ids: list[int]) -> torch.Tensor:
    """[T, V] the model's raw log-probabilities before each of token_ids, teacher-forced after the prompt (one
    forward, no cache); its prompt goes through its own tokenizer and chat template."""
    prompt_ids = encode_prompt(backend, prompt).cpu()
    if not token_ids:
        return torch.empty(0, 0)
    full = torch.cat([prompt_ids, torch.tensor(token_ids, dtype=torch.long)]).to(backend.runner.device)
    with torch.inference_mode():
        logits = backend.runner.score(full, len(token_ids) + 1)  # a scratch context: no running row is touched
    return torch.log_softmax(logits[:-1].float().cpu(), dim=-1)


def same_tokenizer(a: Any, b: Any) -> bool:
    """Whether the two tokenizers give every token of the smaller vocabulary the same id (one may add special
    tokens of its own on top, as Qwen2's class adds <|endoftext|>)."""
    if a is b:
        return True
    small, large = sorted((a.get_vocab(), b.get_vocab()), key=len)
    return all(large.get(token) == i for token, i in small.items())


def compare(reference_backend: Backend, reference: Completion, backend: Backend, other: Completion, prompt: Prompt,
            kl_on_pane: bool = False) -> Agreement:
    """`other` (a Completion of `backend`) against `reference` (a Completion of reference_backend), same prompt;
    kl_on_pane: also the KL on the pane's own tokens (one more forward, of the pane's model on its text)."""
    shared = same_tokenizer(reference_backend.tokenizer, backend.tokenizer)
    out = Agreement(pane=other.config.name, reference=reference.config.name, same_tokenizer=shared)
    ref_ids, ids = list(reference.token_ids), list(other.token_ids)
    if shared:
        ref_on_ref = token_logprobs(reference_backend, prompt, ref_ids)
        other_on_ref = token_logprobs(backend, prompt, ref_ids)
        vocab = min(ref_on_ref.shape[-1], other_on_ref.shape[-1])  # a padded embedding adds ids no text uses
        ref_on_ref, other_on_ref = ref_on_ref[:, :vocab], other_on_ref[:, :vocab]
        out.kl_per_token = kl_divergence(ref_on_ref, other_on_ref).tolist()
        agree = ref_on_ref.argmax(-1) == other_on_ref.argmax(-1)
        out.top1_agreement = float(agree.float().mean()) if agree.numel() else None
        apart = (~agree).nonzero()
        out.first_disagreement = int(apart[0]) if apart.numel() else None
        out.first_divergence = next((i for i, (a, b) in enumerate(zip(ref_ids, ids)) if a != b), None)
        out.perplexity_on_reference = perplexity(other_on_ref, ref_ids)
        ref_on_pane = token_logprobs(reference_backend, prompt, ids)
        out.reference_perplexity_on_pane = perplexity(ref_on_pane, ids)
        if kl_on_pane:
            own = token_logprobs(backend, prompt, ids)
            out.kl_on_pane = kl_divergence(own[:, :vocab], ref_on_pane[:, :vocab]).tolist() if ids else []
        scored = len(ref_ids), len(ids)
    else:
        out.note = ("different tokenizers: KL and top-1 need the same tokens, so only perplexities are given, each "
                    "model scoring the other's text in its own tokens; bits per byte compare across tokenizers")
        ref_again = _retokenized(backend, reference.text)
        ids_again = _retokenized(reference_backend, other.text)
        out.perplexity_on_reference = perplexity(token_logprobs(backend, prompt, ref_again), ref_again)
        out.reference_perplexity_on_pane = perplexity(token_logprobs(reference_backend, prompt, ids_again), ids_again)
        scored = len(ref_again), len(ids_again)
    out.bits_per_byte_on_reference = _bits_per_byte(out.perplexity_on_reference, scored[0], reference.text)
    out.reference_bits_per_byte_on_pane = _bits_per_byte(out.reference_perplexity_on_pane, scored[1], other.text)
    return out


def kl_divergence(p_log: torch.Tensor, q_log: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row, in nats, from log-probabilities [T, V] (0 * log 0 counts as 0)."""
    p = p_log.exp()
    terms = torch.where(p > 0, p * (p_log - q_log), torch.zeros_like(p))
    return terms.sum(-1)


def perplexity(logprobs: torch.Tensor, ids: list[int]) -> float | None:
    if not ids:
        return None
    chosen = logprobs[torch.arange(len(ids)), torch.tensor(ids)]
    return math.exp(-float(chosen.double().mean()))


def _retokenized(backend, text: str) -> list[int]:
    return backend.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def _bits_per_byte(ppl: float | None, tokens: int, text: str) -> float | None:
    """The whole text's negative log-likelihood in bits over its UTF-8 bytes (tokens: how many were scored)."""
    size = len(text.encode())
    if ppl is None or not size:
        return None
    return tokens * math.log2(ppl) / size


def _number(value):
    return None if value is None or not math.isfinite(value) else round(float(value), 6)
