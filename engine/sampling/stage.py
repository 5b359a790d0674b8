"""The Stage interface: one sampler stage, built for the rows that use it, owning their per-row state.

In the spirit of llama.cpp's llama_sampler_i (apply / accept) and vLLM v1's logits processors:

    settings   the rows of engine/config.py's table whose `stage` column names this stage (read from the
               table, never listed twice); `switches` are those of them whose non-neutral value turns it on
    active     whether a row with this config uses the stage (a warper acts on sampling rows only, as in HF)
    prepare    build the per-row tensors and state for the rows that use it (`self.n` of them), once per batch
    apply      logits [n, V] of those rows -> new logits [n, V]; the chain runs it on them alone, so every
               other row is untouched, and a neutral value never needs to be an exact no-op
    accept     the tokens those rows took this step, for stages that keep state (history, counts, mu, ...)
    select     keep some of those rows (others finished or left the batch)

What the stage trace records of it (engine/sampling/trace.py) is declared here too: `effect` ("mask":
only sets logits to -inf; "reshape": changes them, never removes one; "mixed") and `keeps_top`.
A new sampler: its settings as rows of the table (stage=its name), a stage row in the table's STAGE_TABLE
(its place in the chain), a Stage class in a family file, and its class in chain.py's CLASSES.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch

from ..config import SETTING, STAGE, DecodingConfig, settings_of, stage_active, switches_of

NEG_INF = float("-inf")


@dataclass
class Rows:
    """The rows one stage is built for: their configs, seeds, prompts, and what the batch shares."""

    configs: list[DecodingConfig]
    seeds: list[int]
    prompts: list[torch.Tensor]
    """Each row's prompt token ids [T_i] (the repetition penalty and the history start from it)."""
    vocab: int
    device: torch.device
    tokenizer: Any = None
    """The model's tokenizer (a transformers tokenizer), or None."""
    eos_ids: torch.Tensor | None = None
    max_new: int = 0
    """The most tokens any row may generate (the history's room)."""

    def __len__(self) -> int:
        return len(self.configs)

    def subset(self, members: Sequence[int]) -> Rows:
        return Rows([self.configs[i] for i in members], [self.seeds[i] for i in members],
                    [self.prompts[i] for i in members], self.vocab, self.device, self.tokenizer, self.eos_ids,
                    self.max_new)


@dataclass
class Step:
    """What a stage may read at a step besides the logits: the step, the rows' history, guidance logits."""

    step: int
    history: torch.Tensor | None = None
    """[n, L] the stage's rows' tokens so far, prompt included (left-padded with -1), when the stage needs it."""
    uncond: torch.Tensor | None = None
    """[n, V] classifier-free guidance's unconditional logits for the stage's rows (the cfg stage only)."""


class Stage:
    """One sampler stage over the rows that use it (see the module docstring)."""

    name: ClassVar[str]
    switches: ClassVar[tuple[str, ...]] = ()
    """From the table: the settings whose value away from neutral turns the stage on."""
    effect: ClassVar[str] = "mixed"
    keeps_top: ClassVar[bool] = False
    """A mask that always keeps the most likely token."""
    history: ClassVar[bool] = False
    """apply() reads Step.history."""
    whole_batch: ClassVar[bool] = False
    """Cheap, and an exact no-op at its neutral values: built for every row of the chain (the rows that do not use
    it hold neutral values), so it runs without picking rows out and putting them back."""
    settings: ClassVar[tuple[str, ...]] = ()
    """Filled from the table: every setting whose `stage` column names this stage."""
    warper: ClassVar[bool] = False
    """From the table: the stage acts on sampling rows only (HF applies warpers only when sampling)."""
    place: ClassVar[str] = "chain"
    """From the table's STAGE_TABLE: constraint (first), chain (reorderable) or selection (last)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            return
        cls.settings = settings_of(cls.name)
        cls.switches = switches_of(cls.name)
        assert cls.switches and set(cls.switches) <= set(cls.settings), f"{cls.name}: switches outside its settings"
        cls.warper = SETTING[cls.switches[0]].warper
        cls.place = STAGE[cls.name].place

    @classmethod
    def active(cls, config: DecodingConfig, samples: bool) -> bool:
        """Whether a row with this config (sampling or not) uses the stage (the table's rule: stage_active)."""
        return stage_active(cls.name, config, samples)

    def __init__(self, rows: Rows) -> None:
        self.rows, self.n, self.vocab, self.device = rows, len(rows), rows.vocab, rows.device
        self._per_row: list[str] = []
        self.prepare()

    # -- the interface ----------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Per-row tensors and state for self.rows (called once, from __init__). By default every number setting
        of the stage becomes a per-row column attribute of its own name (self.top_p: [n, 1])."""
        self.columns(*(name for name in self.settings if SETTING[name].kind in ("float", "int")))

    def apply(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        raise NotImplementedError

    def accept(self, tokens: torch.Tensor, processed: torch.Tensor | None) -> None:
        """This step's tokens [n] of the stage's rows (and their processed logits; None for forced tokens)."""

    def select(self, keep: torch.Tensor) -> None:
        """Keep only these rows (indices into the stage's rows): every tensor hold() registered is indexed."""
        for key in self._per_row:
            value = getattr(self, key)
            if value is not None:
                setattr(self, key, value.index_select(0, keep))
        self.rows = self.rows.subset(keep.tolist())
        self.n = len(self.rows)

    @property
    def reads_history(self) -> bool:
        """Whether apply() needs Step.history for these rows (the class's `history`, unless a stage knows better)."""
        return self.history

    # -- helpers ----------------------------------------------------------------------------------------
    def hold(self, **tensors: torch.Tensor | None) -> None:
        """Set per-row tensors (first dimension: the stage's rows) as attributes that select() keeps in step."""
        for key, value in tensors.items():
            setattr(self, key, value)
            if key not in self._per_row:
                self._per_row.append(key)

    def columns(self, *names: str) -> None:
        """hold() each named setting as a column (see column())."""
        self.hold(**{name: self.column(name) for name in names})

    def column(self, name: str) -> torch.Tensor:
        """A setting of the stage's rows as a tensor: floats as an [n, 1] column, ints as [n]."""
        if SETTING[name].kind == "float":
            return torch.tensor([getattr(c, name) for c in self.rows.configs], dtype=torch.float32,
                                device=self.device)[:, None]
        return torch.tensor([getattr(c, name) for c in self.rows.configs], dtype=torch.long, device=self.device)
