"""The sampler chain: every stage class, in the order of the settings table's STAGE_TABLE (engine/config.py).

    constraints (always first)   the table's "constraint" stages (guidance first, as in HF; the bans, then
                                 structured output, whose end wins where a ban leaves it no token)
    reorderable (sampler_order)  the "chain" stages, by default in HF transformers 5.x's order for the
                                 processors it has, text-generation-webui's and llama.cpp's where HF has none
                                 -- greedy rows stop after the penalties: warpers are neutral for them (HF) --
    selection (always last)      Mirostat or adaptive-p; then pick() takes the argmax, or draws with the
                                 row's own seeded uniform

A Chain holds one instance of each stage some of its rows use, built for exactly those rows (their
per-row tensors and state), and runs it on those rows alone: a stage no row uses costs nothing, and no
row's result depends on another row's settings. The batch (sampling/batch.py) keeps one Chain per
distinct sampler_order among its rows.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Sequence

import torch

from ..config import SAMPLER_STAGES, STAGE_TABLE, DecodingConfig, effective_order
from .adaptive import Mirostat, Temperature
from .constraints import Grammar
from .filters import (XTC, EpsilonCutoff, EtaCutoff, MinP, PLess, TailFree, TopA, TopH, TopK, TopNSigma, TopP,
                      TypicalP)
from .penalties import BannedStrings, LogitBias, MinNewTokens, Penalties
from .repetition import DRY, NoRepeatNgram
from .shaping import AdaptiveP, Guidance, Smoothing
from .stage import Rows, Stage, Step

if TYPE_CHECKING:
    from .trace import StageTrace

CLASSES: dict[str, type[Stage]] = {cls.name: cls for cls in (
    Guidance, LogitBias, BannedStrings, MinNewTokens, Grammar, Penalties, DRY, NoRepeatNgram, Temperature, Smoothing,
    TopH, TopNSigma, TopK, TopP, MinP, PLess, TypicalP, EpsilonCutoff, EtaCutoff, TailFree, TopA, XTC, Mirostat,
    AdaptiveP)}
"""Every stage class by name (its place in the chain comes from the table, not from this list)."""

STAGES: tuple[type[Stage], ...] = tuple(CLASSES[row.name] for row in STAGE_TABLE)
"""The stage classes in their default order."""
BY_NAME = CLASSES
CONSTRAINTS = tuple(s for s in STAGES if s.place == "constraint")
SELECTION = tuple(s for s in STAGES if s.place == "selection")

assert set(CLASSES) == {row.name for row in STAGE_TABLE}, "every row of STAGE_TABLE needs its Stage class"
assert tuple(s.name for s in STAGES if s.place == "chain") == SAMPLER_STAGES


def active_stages(config: DecodingConfig) -> frozenset[str]:
    """The names of the stages a row with this config uses."""
    return frozenset(cls.name for cls in STAGES if cls.active(config, config.samples))


class Chain:
    """The stages of some rows that share one sampler order, each built for the rows that use it."""

    def __init__(self, rows: Rows, order: tuple[str, ...]) -> None:
        self.n = len(rows)
        samples = [c.samples for c in rows.configs]
        self.stages: list[tuple[Stage, list[int], torch.Tensor | None]] = []
        """(stage, its rows as indices into the chain's rows, the same as a tensor or None when it is every row)."""
        for cls in (*CONSTRAINTS, *(CLASSES[name] for name in order), *SELECTION):
            members = [i for i, (c, w) in enumerate(zip(rows.configs, samples)) if cls.active(c, w)]
            if members and cls.whole_batch and len(members) < self.n:  # the others run it at neutral values
                neutral = DecodingConfig()
                configs = [c if i in members else neutral for i, c in enumerate(rows.configs)]
                self.stages.append((cls(dataclasses.replace(rows, configs=configs)), list(range(self.n)), None))
            elif members:
                stage = cls(rows if len(members) == self.n else rows.subset(members))
                self.stages.append((stage, members, self._index(members, rows.device)))

    def _index(self, members: list[int], device: torch.device) -> torch.Tensor | None:
        return None if len(members) == self.n else torch.tensor(members, dtype=torch.long, device=device)

    @property
    def reads_history(self) -> bool:
        return any(stage.reads_history for stage, _, _ in self.stages)

    def process(self, x: torch.Tensor, step: int, history: torch.Tensor | None, uncond: torch.Tensor | None,
                trace: StageTrace | None = None, trace_rows: torch.Tensor | None = None) -> torch.Tensor:
        """Every stage on its rows of x [n, V] (float32); trace (a StageTrace) records each stage's output."""
        for stage, _, index in self.stages:
            context = Step(step)
            if stage.reads_history and history is not None:
                context.history = history if index is None else history[index]
            if stage.name == "cfg" and uncond is not None:
                context.uncond = uncond if index is None else uncond[index]
            if index is None:
                out = stage.apply(x, context)
            else:
                out = x.clone()
                out[index] = stage.apply(x[index], context)
            if trace is not None:
                trace.add(stage.name, trace_rows, x, out)
            x = out
        return x

    def accept(self, tokens: torch.Tensor, processed: torch.Tensor | None) -> None:
        for stage, _, index in self.stages:
            if index is None:
                stage.accept(tokens, processed)
            else:
                stage.accept(tokens[index], None if processed is None else processed[index])

    def select(self, keep: Sequence[int], device: torch.device) -> None:
        """Keep these rows (indices into the chain's rows, in their new order)."""
        kept = []
        for stage, members, _ in self.stages:
            where = {old: i for i, old in enumerate(members)}
            local = [where[old] for old in keep if old in where]
            if not local:
                continue
            if len(local) != len(members) or local != list(range(len(members))):
                stage.select(torch.tensor(local, dtype=torch.long, device=device))
            kept.append((stage, [new for new, old in enumerate(keep) if old in where]))
        self.n = len(keep)
        self.stages = [(stage, members, self._index(members, device)) for stage, members in kept]

    def stage(self, name: str) -> tuple[Stage, list[int]] | None:
        """The stage of that name and its rows, when some row uses it."""
        return next(((s, m) for s, m, _ in self.stages if s.name == name), None)


__all__ = ["BY_NAME", "CLASSES", "STAGES", "Chain", "active_stages", "effective_order"]
