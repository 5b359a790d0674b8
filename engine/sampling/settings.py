"""RowSettings: every decoding setting as a per-row tensor, plus which stages any row uses.

Neutral values are exact no-ops, so a stage runs for the whole batch (or skips when no row uses it)
and no row's result depends on another row's settings. Warpers (temperature and every filter) apply
only to sampling rows, as in HF: a greedy row takes the argmax of its penalised logits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..config import SETTINGS, ConfigError, DecodingConfig, effective_order
from ..grammars import constraint_of
from . import vocab as vocab_tools
from .stages import BY_NAME, STAGES

_M32 = 0xFFFFFFFF

# (field, neutral, warper?) for every setting the batch holds per row, read from the settings table: a
# stage is "used" when some row's value differs from neutral.
_FLOATS = tuple((x.name, x.default, x.warper) for x in SETTINGS if x.per_row and x.kind == "float")
_INTS = tuple((x.name, x.default, x.warper) for x in SETTINGS if x.per_row and x.kind == "int")


@dataclass
class RowSettings:
    """Per-row tensors (floats as [N, 1] columns, ints as [N]) and the derived per-stage row subsets."""

    t: dict[str, torch.Tensor]
    uses: frozenset[str]
    rows: dict[str, torch.Tensor]
    """Row indices per row-subset stage, fixed for a run so no stage needs a device sync."""
    vocab: int
    bias: torch.Tensor | None = None  # [N, V] logit bias
    banned: vocab_tools.BannedSequences | None = None
    dry: vocab_tools.DryBreakers | None = None
    named: torch.Tensor | None = None
    """[N, M] the token ids each row's logprob_tokens names (-1: none), for the statistics."""
    named_lists: list[list[int]] = field(default_factory=list)
    constraints: list = field(default_factory=list)
    """Each row's (field, value) structured-output constraint or None (engine/grammars.py), when a row has one."""
    tokenizer: object = None
    order: tuple[str, ...] = ()
    kmax: int = 0
    """The largest top_k any row uses (0: none)."""
    views: dict[str, tuple[torch.Tensor, RowSettings]] = field(default_factory=dict)
    """For a stage only some rows use: those rows and their settings, so the stage runs on them alone."""
    groups: list[tuple[torch.Tensor, RowSettings]] = field(default_factory=list)
    """Rows with a sampler_order other than the first row's, each group with its own settings."""

    def __getattr__(self, name: str) -> torch.Tensor:
        try:
            return self.__dict__["t"][name]
        except KeyError:
            raise AttributeError(name) from None

    @classmethod
    def build(cls, configs: list[DecodingConfig | None], seeds: list[int], vocab_size: int,
              device: torch.device, tokenizer=None) -> RowSettings:
        """Settings for each row; None rows (batch padding) are neutral greedy rows."""
        neutral = DecodingConfig()
        rows = [c if c is not None else neutral for c in configs]
        warp = [c.samples for c in rows]

        def value(c, w, name, neutral_value, warper):
            return getattr(c, name) if (w or not warper) else neutral_value

        t, uses = {}, set()
        for names, dtype in ((_FLOATS, torch.float32), (_INTS, torch.long)):
            for name, off, warper in names:
                values = [value(c, w, name, off, warper) for c, w in zip(rows, warp)]
                tensor = torch.tensor(values, dtype=dtype, device=device)
                t[name] = tensor[:, None] if dtype == torch.float32 else tensor
                if any(v != off for v in values):
                    uses.add(name)
        top_k = [min(c.top_k, vocab_size) if (w and c.top_k) else vocab_size for c, w in zip(rows, warp)]
        t["top_k"] = torch.tensor(top_k, dtype=torch.long, device=device)
        t["seed_lo"] = torch.tensor([s & _M32 for s in seeds], dtype=torch.int64, device=device)
        t["seed_hi"] = torch.tensor([(s >> 32) & _M32 for s in seeds], dtype=torch.int64, device=device)
        uses = _stage_uses(uses, rows, warp)
        if all(k >= vocab_size for k in top_k):
            uses.discard("top_k")  # a top_k at or above the vocabulary keeps everything
        settings = cls(t=t, uses=frozenset(uses), rows=_row_subsets(rows, warp, top_k, vocab_size, device),
                       vocab=vocab_size, kmax=max((k for k in top_k if k < vocab_size), default=0))
        _resolve_tokens(settings, rows, tokenizer, vocab_size, device)
        _build_views(settings, rows, warp)
        orders = [effective_order(c) if c is not None else None for c in configs]
        settings.order = next((o for o in orders if o is not None), effective_order(neutral))
        orders = [o or settings.order for o in orders]
        if len(set(orders)) > 1:
            for order in dict.fromkeys(orders):
                members = [i for i, o in enumerate(orders) if o == order]
                sub = cls.build([configs[i] for i in members], [seeds[i] for i in members], vocab_size, device,
                                tokenizer)
                settings.groups.append((torch.tensor(members, dtype=torch.long, device=device), sub))
        return settings


def _stage_uses(uses: set[str], rows, warp) -> set[str]:
    """Names of the stages some row needs (the chain skips every other one), from the stage registry."""
    stages = {stage.name for stage in STAGES if any(stage.active(c, w) for c, w in zip(rows, warp))}
    if any(warp):
        stages.add("sample")
    return uses | stages


def _build_views(s: RowSettings, rows, warp) -> None:
    for stage in STAGES:
        if not stage.own_rows or stage.name not in s.uses:
            continue
        name = stage.name
        members = [i for i, (c, w) in enumerate(zip(rows, warp)) if stage.active(c, w)]
        if len(members) < len(rows):
            index = torch.tensor(members, dtype=torch.long, device=s.seed_lo.device)
            sub = RowSettings(t={k: v[index] for k, v in s.t.items()}, uses=s.uses, rows={}, vocab=s.vocab,
                              kmax=s.kmax, dry=s.dry.subset(members) if s.dry is not None else None)
            s.views[name] = (index, sub)


ROW_SUBSET_STAGES = ("top_p", "typical_p", "mirostat", "top_h", "tfs", "cfg", "adaptive_p")
"""Stages that pick their rows out themselves (on_rows): each gets the rows its registry rule makes active."""


def _row_subsets(rows, warp, top_k, vocab_size, device) -> dict[str, torch.Tensor]:
    def idx(flags):
        return torch.tensor([i for i, f in enumerate(flags) if f], dtype=torch.long, device=device)

    subsets = {name: idx(BY_NAME[name].active(c, w) for c, w in zip(rows, warp)) for name in ROW_SUBSET_STAGES}
    subsets["dynatemp"] = idx(w and c.dynatemp_range > 0 for c, w in zip(rows, warp))  # part of temperature
    subsets["sample"] = idx(warp)
    return subsets


def _resolve_tokens(s: RowSettings, rows, tokenizer, vocab_size: int, device) -> None:
    """Turn texts into token ids: logit-bias keys, banned strings and DRY sequence breakers."""
    if "logit_bias" in s.uses:
        s.bias = vocab_tools.bias_matrix([c.logit_bias for c in rows], tokenizer, vocab_size, device)
    if "banned_strings" in s.uses:
        s.banned = vocab_tools.BannedSequences.build([c.banned_strings for c in rows], tokenizer, vocab_size,
                                                     device)
    if any(c.logprob_tokens for c in rows):
        s.named_lists = [vocab_tools.named_ids(c.logprob_tokens, tokenizer, vocab_size) for c in rows]
        width = max(len(ids) for ids in s.named_lists)
        s.named = torch.tensor([ids + [-1] * (width - len(ids)) for ids in s.named_lists], dtype=torch.long,
                               device=device)
    if "grammar" in s.uses:
        s.constraints, s.tokenizer = [constraint_of(c) for c in rows], tokenizer
        if tokenizer is None:
            raise ConfigError("structured output (json_schema, regex, choice, grammar) needs the model's tokenizer")
    if "dry" in s.uses:
        breakers = [c.dry_sequence_breakers if c.dry_multiplier else () for c in rows]
        s.dry = vocab_tools.DryBreakers.build(breakers, tokenizer, vocab_size, device)
