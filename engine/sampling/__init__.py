"""Per-row logits processing, seeded sampling and token statistics on [N, V] tensors.

    chain.py       the stages and their default order (read this first)
    settings.py    RowSettings: each setting as a per-row tensor; which stages any row uses
    state.py       RowState: token history, penalty counts, Mirostat's mu
    penalties.py   logit bias, banned strings, min-new-tokens, repetition/frequency/presence
    repetition.py  DRY, no-repeat-ngram
    filters.py     top-k, top-p, min-p, typical-p, epsilon, eta, top-n-sigma, XTC
    adaptive.py    temperature with dynamic temperature, Mirostat
    noise.py       stateless counter-based noise (the sampling draw, stage coins)
    statistics.py  per-step statistics packed for one host transfer
    vocab.py       texts to token ids (logit-bias keys, banned strings, DRY breakers)
"""

from .chain import pick, process
from .noise import hash32, sample_uniforms, uniform_rows
from .repetition import banned_ngram_tokens
from .settings import RowSettings
from .state import PenaltyState, RowState
from .statistics import step_statistics

__all__ = ["PenaltyState", "RowSettings", "RowState", "banned_ngram_tokens", "hash32", "pick", "sample_uniforms",
           "process", "step_statistics", "uniform_rows"]
