"""The sampler chain stage by stage: what each stage did at each step, and which settings never mattered.

When a run asks for it (trace_stages), chain.py hands every stage's output to a StageTrace. Per row and
stage it keeps: how many candidates are left, how much probability the stage moved (the total variation
distance between its input and output distributions: for a filter, exactly the mass it removed),
whether the most likely token changed, and the log-probabilities after the stage of the chosen token and
of the raw top-k alternatives. It costs nothing when off; when on, a few passes over [N, V] per stage and
one more host transfer per step.

engine/experiments/stage_use.py reads the traced steps back and names the dead settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch

from .chain import STAGES

if TYPE_CHECKING:
    from ..results import StageStep

MASKS = frozenset(stage.name for stage in STAGES if stage.effect == "mask")
"""Stages that only remove tokens (set logits to -inf) and leave the others' logits as they were."""
KEEPS_TOP = frozenset(stage.name for stage in STAGES if stage.keeps_top)
"""Masks that always keep the most likely token (typical-p, XTC and the bans can remove it)."""
NEVER_REMOVE = frozenset(stage.name for stage in STAGES if stage.effect == "reshape")
"""Stages that change logits but never remove a token: the count kept carries over."""
NEG = float("-inf")


class StageTrace:
    """Every stage's effect on one step's logits, for the rows of one group.

    A stage that only removes tokens is recorded cheaply: after it, a kept token's probability is its
    probability at the last reshaping stage divided by the mass still kept, so only its mask is read.
    """

    def __init__(self, raw: torch.Tensor) -> None:
        self.n = raw.shape[0]
        self.entries: list[tuple[str, torch.Tensor | None, tuple]] = []
        self._last: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor] | None = None
        """(latest output, base logprobs, base probs, mass of the base still kept or None when the output is the
        base itself, argmax): the next stage's input, so nothing is computed twice."""
        self.add("raw", None, None, raw.float())

    def add(self, name: str, rows: torch.Tensor | None, before: torch.Tensor | None, after: torch.Tensor) -> None:
        """Record a stage's output (rows: which of the group's rows these are; None for all)."""
        last = self._last if self._last is not None and before is not None and self._last[0] is before else None
        if last is not None and name in NEVER_REMOVE:
            keep, kept = None, self.entries[-1][2][3]
        else:
            keep = (after != NEG).float()  # no stage makes +inf or NaN; a float mask sums and dots fast
            kept = keep.sum(dim=-1)
        if last is not None and name in MASKS:
            _, logp, probs, mass_before, top_before = last
            mass = torch.linalg.vecdot(probs, keep)  # the base probability still kept
            moved = 1 - (mass if mass_before is None else mass / mass_before)
            top = top_before if name in KEEPS_TOP else after.argmax(dim=-1)
            self._last = (after, logp, probs, mass, top)
            self.entries.append((name, rows, (logp, mass, after, kept, moved, (top != top_before).float())))
            return
        logp = torch.log_softmax(after, dim=-1)
        probs = torch.softmax(after, dim=-1)  # faster than logp.exp() on a CPU
        top = after.argmax(dim=-1)
        if before is None:
            moved = changed = torch.zeros_like(kept)
        else:
            if last is None:
                previous, before_top = before.softmax(dim=-1), before.argmax(dim=-1)
            elif last[3] is None:  # the previous stage's own distribution
                previous, before_top = last[2], last[4]
            else:  # masks came last: the base distribution, cut and renormalised. The cut needs no multiply:
                # a token they removed stays removed, so probs is 0 there and the minimum below is 0 anyway
                previous, before_top = last[2] / last[3][:, None], last[4]
            moved = 1 - torch.minimum(previous, probs).nansum(dim=-1)  # total variation distance
            changed = (before_top != top).float()
        self._last = (after, logp, probs, None, top)
        self.entries.append((name, rows, (logp, None, None, kept, moved, changed)))

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self.entries]

    def top_ids(self, k: int) -> torch.Tensor:
        """The raw top-k ids, taken exactly as step_statistics takes them (so the alternatives line up)."""
        return self.entries[0][2][0].topk(k, dim=-1).indices

    def pack(self, tokens: torch.Tensor, top_ids: torch.Tensor) -> torch.Tensor:
        """[N, E, 4 + k]: per row and entry kept, moved, top changed, the chosen token's logprob, then the
        logprobs of the alternatives top_ids [N, k]; NaN where an entry does not cover the row."""
        k = top_ids.shape[1]
        out = torch.full((self.n, len(self.entries), 4 + k), torch.nan, device=tokens.device)
        for e, (_, rows, (logp, mass, after, kept, moved, changed)) in enumerate(self.entries):
            index = rows if rows is not None else torch.arange(self.n, device=tokens.device)
            ids = torch.cat([tokens[index, None], top_ids[index]], dim=1)
            values = logp.gather(1, ids)
            if mass is not None:  # a mask: renormalise over what is kept; removed tokens are -inf
                values = (values - mass.log()[:, None]).masked_fill(after.gather(1, ids) == NEG, NEG)
            out[index, e] = torch.cat([kept[:, None], moved[:, None], changed[:, None], values], dim=1)
        return out


def unpack_stages(values: Sequence[Sequence[float]], names: Sequence[str],
                  active: frozenset[str]) -> tuple[StageStep, ...]:
    """A row's StageSteps from its [E, 4 + k] slice of StageTrace.pack: the raw entry, then each stage the row
    itself uses, in the order they ran."""
    from ..results import StageStep

    out = []
    for name, row in zip(names, values):
        if math.isnan(row[0]) or (name != "raw" and name not in active):
            continue
        out.append(StageStep(stage=name, kept=int(row[0]), moved=row[1], top_changed=bool(row[2]), logprob=row[3],
                             alternatives=tuple(row[4:])))
    return tuple(out)
