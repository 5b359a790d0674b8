"""Per-row logits processing, seeded sampling and token statistics on [N, V] tensors.

    stage.py       the Stage interface: settings from the table, per-row state, prepare / apply / accept
    chain.py       every stage class, in the table's order (STAGE_TABLE in engine/config.py); a Chain of rows
    batch.py       Sampler: the chains of a batch, its history, the seeded pick (read this first)
    penalties.py   logit bias, banned strings, min-new-tokens, repetition/frequency/presence
    repetition.py  DRY, no-repeat-ngram
    filters.py     top-k, top-p, min-p, p-less, typical-p, epsilon, eta, top-n-sigma, XTC, top-H, tail-free, top-a
    adaptive.py    temperature with dynamic temperature, Mirostat
    shaping.py     classifier-free guidance, quadratic sampling, adaptive-p
    constraints.py structured output (llguidance matchers)
    noise.py       stateless counter-based noise (the sampling draw, stage coins)
    statistics.py  per-step statistics packed for one host transfer
    trace.py       what each stage did at each step
    vocab.py       texts to token ids (logit-bias keys, banned strings, DRY breakers)
"""

from .batch import Sampler, check_tokens
from .chain import active_stages
from .noise import hash32, sample_uniforms, uniform_rows
from .repetition import banned_ngram_tokens
from .statistics import step_statistics

__all__ = ["Sampler", "active_stages", "banned_ngram_tokens", "check_tokens", "hash32", "sample_uniforms",
           "step_statistics", "uniform_rows"]
