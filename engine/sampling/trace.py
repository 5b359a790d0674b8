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

import torch

class StageTrace:
    """Every stage's effect on one step's logits, for the rows of one group."""

    def __init__(self, raw: torch.Tensor):
        self.n = raw.shape[0]
        self.entries: list[tuple[str, torch.Tensor | None, tuple[torch.Tensor, ...]]] = []
        self.add("raw", None, None, raw.float())

    def add(self, name: str, rows: torch.Tensor | None, before: torch.Tensor | None, after: torch.Tensor) -> None:
        """Record a stage's output (rows: which of the group's rows these are; None for all)."""
        logp = torch.log_softmax(after, dim=-1)
        kept = torch.isfinite(after).sum(dim=-1).float()
        if before is None:
            moved = torch.zeros_like(kept)
            changed = torch.zeros_like(kept)
        else:
            moved = 0.5 * (before.softmax(dim=-1) - logp.exp()).abs().nansum(dim=-1)
            changed = (before.argmax(dim=-1) != after.argmax(dim=-1)).float()
        self.entries.append((name, rows, (logp, kept, moved, changed)))

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self.entries]

    def pack(self, tokens: torch.Tensor, top_ids: torch.Tensor) -> torch.Tensor:
        """[N, E, 4 + k]: per row and entry kept, moved, top changed, the chosen token's logprob, then the
        logprobs of the alternatives top_ids [N, k]; NaN where an entry does not cover the row."""
        k = top_ids.shape[1]
        out = torch.full((self.n, len(self.entries), 4 + k), torch.nan, device=tokens.device)
        for e, (_, rows, (logp, kept, moved, changed)) in enumerate(self.entries):
            index = rows if rows is not None else torch.arange(self.n, device=tokens.device)
            chosen = logp.gather(1, tokens[index, None])
            out[index, e] = torch.cat([kept[:, None], moved[:, None], changed[:, None], chosen,
                                       logp.gather(1, top_ids[index])], dim=1)
        return out


def unpack_stages(values: list[list[float]], names: list[str], active: frozenset[str]):
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
