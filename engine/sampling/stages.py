"""The stage registry: every sampler stage declared once, in its default place in the chain.

A stage has a name, the settings it reads (rows of engine/config.py's table), when a row uses it,
what it does to the logits, which kind of history it needs, and whether it runs on only the rows that
use it. chain.py runs them; settings.py and state.py ask the registry what a batch needs. As in
llama.cpp's sampler interface, a stage is (name, apply, accept); decodelab's accept for every stage is
RowState.update (history, penalty counts, Mirostat's mu), which runs once per step for all of them.

A new sampler: one row per setting in config.py, one function in a family file here, one Stage below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..config import CONSTRAINT_FIELDS, SAMPLER_STAGES, SETTING
from ..grammars import constraint_of
from . import adaptive, constraints, filters, penalties, repetition, shaping


@dataclass(frozen=True)
class Stage:
    name: str
    place: str
    """constraint (always first), chain (reorderable with sampler_order) or selection (always last)."""
    fields: tuple[str, ...]
    active: Callable[[object, bool], bool]
    """Whether a row with this config (and whether it samples) uses the stage."""
    apply: Callable
    """(logits [N, V], RowSettings, RowState, step) -> logits."""
    history: frozenset[str] = frozenset()
    """Names in RowSettings.uses for which the stage reads the token history (RowState.seq)."""
    own_rows: bool = False
    """Run on the rows that use it only, when some do not (worth it for costly stages)."""
    effect: str = "mixed"
    """What it does to the logits: "mask" (only sets some to -inf), "reshape" (changes them, never removes one)
    or "mixed" (may do both). The stage trace and the dead-settings report read it."""
    keeps_top: bool = False
    """A mask that always keeps the most likely token."""


MASK = {"effect": "mask"}
MASK_TOP = {"effect": "mask", "keeps_top": True}
RESHAPE = {"effect": "reshape"}

STAGES: tuple[Stage, ...] = (
    # guidance first, as HF runs it; then the constraints: masks commute with the penalties
    Stage("cfg", "constraint", ("guidance_scale", "negative_prompt"), lambda c, w: c.guidance_scale != 1,
          shaping.guidance, **RESHAPE),  # HF
    Stage("logit_bias", "constraint", ("logit_bias",), lambda c, w: bool(c.logit_bias), penalties.logit_bias),
    Stage("banned_strings", "constraint", ("banned_strings",), lambda c, w: bool(c.banned_strings),
          penalties.banned_strings, history=frozenset({"banned_strings"}), **MASK),
    Stage("min_new_tokens", "constraint", ("min_new_tokens",), lambda c, w: c.min_new_tokens > 0,
          penalties.min_new_tokens, **MASK),
    # structured output last of the constraints: where min_new_tokens or a ban leaves a finished grammar no token,
    # the grammar's end wins (constraints.py)
    Stage("grammar", "constraint", CONSTRAINT_FIELDS, lambda c, w: constraint_of(c) is not None,
          constraints.grammar, **MASK),
    # the chain, in HF transformers 5.x's order for the processors it has (sampler_order reorders it)
    Stage("penalties", "chain", ("repetition_penalty", "frequency_penalty", "presence_penalty",
                                 "repetition_penalty_last_n"),
          lambda c, w: c.repetition_penalty != 1 or bool(c.frequency_penalty) or bool(c.presence_penalty),
          penalties.penalties, history=frozenset({"repetition_penalty_last_n"}), own_rows=True,
          **RESHAPE),  # HF + OpenAI
    Stage("dry", "chain", ("dry_multiplier", "dry_base", "dry_allowed_length", "dry_penalty_last_n",
                           "dry_sequence_breakers"), lambda c, w: c.dry_multiplier > 0, repetition.dry,
          history=frozenset({"dry"}), own_rows=True, **RESHAPE),  # llama.cpp
    Stage("no_repeat_ngram", "chain", ("no_repeat_ngram_size",), lambda c, w: c.no_repeat_ngram_size > 0,
          repetition.no_repeat_ngram, history=frozenset({"no_repeat_ngram"}), **MASK),  # HF
    # -- greedy rows stop here: warpers are neutral for them (HF) --
    Stage("temperature", "chain", ("temperature", "dynatemp_range", "dynatemp_exponent"),
          lambda c, w: w and (c.temperature != 1 or c.dynatemp_range > 0), adaptive.temperature,
          **RESHAPE),  # HF, llama.cpp
    Stage("smoothing", "chain", ("smoothing_factor", "smoothing_curve"), lambda c, w: w and c.smoothing_factor > 0,
          shaping.smoothing, own_rows=True, **RESHAPE),  # text-generation-webui
    Stage("top_h", "chain", ("top_h",), lambda c, w: w and c.top_h > 0, filters.top_h, **MASK_TOP),  # HF
    Stage("top_n_sigma", "chain", ("top_n_sigma",), lambda c, w: w and c.top_n_sigma > 0, filters.top_n_sigma,
          own_rows=True, **MASK_TOP),  # llama.cpp
    Stage("top_k", "chain", ("top_k",), lambda c, w: w and c.top_k > 0, filters.top_k, own_rows=True, **MASK_TOP),  # HF
    Stage("top_p", "chain", ("top_p",), lambda c, w: w and c.top_p < 1, filters.top_p, **MASK_TOP),  # HF
    Stage("min_p", "chain", ("min_p",), lambda c, w: w and c.min_p > 0, filters.min_p, own_rows=True, **MASK_TOP),  # HF
    Stage("typical_p", "chain", ("typical_p",), lambda c, w: w and c.typical_p < 1, filters.typical_p, **MASK),  # HF
    Stage("epsilon_cutoff", "chain", ("epsilon_cutoff",), lambda c, w: w and c.epsilon_cutoff > 0,
          filters.epsilon_cutoff, own_rows=True, **MASK_TOP),  # HF
    Stage("eta_cutoff", "chain", ("eta_cutoff",), lambda c, w: w and c.eta_cutoff > 0, filters.eta_cutoff,
          own_rows=True, **MASK_TOP),  # HF
    Stage("tfs", "chain", ("tfs",), lambda c, w: w and c.tfs < 1, filters.tfs, **MASK_TOP),  # text-generation-webui
    Stage("top_a", "chain", ("top_a",), lambda c, w: w and c.top_a > 0, filters.top_a, own_rows=True,
          **MASK_TOP),  # text-generation-webui
    Stage("xtc", "chain", ("xtc_probability", "xtc_threshold"),
          lambda c, w: w and c.xtc_probability > 0 and c.xtc_threshold <= 0.5, filters.xtc, own_rows=True, **MASK),
    # selection: Mirostat ends the chain, as in llama.cpp; then pick() draws or takes the argmax
    Stage("mirostat", "selection", ("mirostat", "mirostat_tau", "mirostat_eta"), lambda c, w: w and c.mirostat > 0,
          adaptive.mirostat, **MASK_TOP),
    Stage("adaptive_p", "selection", ("adaptive_target", "adaptive_decay"), lambda c, w: w and c.adaptive_target >= 0,
          shaping.adaptive_p, **RESHAPE),  # llama.cpp
)

BY_NAME = {stage.name: stage for stage in STAGES}
HISTORY_USES = frozenset().union(*(stage.history for stage in STAGES))
"""Names in RowSettings.uses that need the token history kept."""

assert tuple(s.name for s in STAGES if s.place == "chain") == SAMPLER_STAGES, \
    "engine/config.py's SAMPLER_STAGES must list the chain stages in the same order"
assert all(f in SETTING for stage in STAGES for f in stage.fields), "a stage reads a setting the table lacks"
