"""Sampler: the sampler chain over a batch's rows, the rows' token history, and their seeded pick.

    process   every row's stages on float32 logits [N, V] (one Chain per distinct sampler_order)
    pick      greedy rows take the argmax; a sampling row draws with its own uniform number (seed, step)
    accept    this step's tokens go to every stage that keeps state, and to the history
    select    keep some rows (the others finished or left the batch)

The history (each row's prompt, left-padded with -1, then its tokens) is kept only when some stage reads it.
Everything else a stage needs per row it holds itself (engine/sampling/stage.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import torch

from ..config import DecodingConfig, effective_order
from . import vocab as vocab_tools
from .chain import Chain, active_stages
from .constraints import Grammar
from .noise import sample_uniforms
from .stage import Rows

if TYPE_CHECKING:
    from .trace import StageTrace

_M32 = 0xFFFFFFFF


class Sampler:
    """The sampler of N rows. Not thread-safe: the decode loop's thread drives it."""

    def __init__(self, configs: Sequence[DecodingConfig | None], seeds: Sequence[int], vocab: int,
                 device: torch.device | str = "cpu", *, tokenizer: Any = None,
                 prompts: torch.Tensor | Sequence[torch.Tensor] | None = None, max_new: int = 0,
                 eos_ids: torch.Tensor | None = None) -> None:
        """configs: one per row (None: a neutral greedy row); prompts: one tensor for every row, or one per row."""
        device = torch.device(device)
        neutral = DecodingConfig()
        filled = [c if c is not None else neutral for c in configs]
        n = len(filled)
        if prompts is None:
            prompts = [torch.zeros(0, dtype=torch.long, device=device)] * n
        elif isinstance(prompts, torch.Tensor):
            prompts = [prompts] * n
        self.n, self.vocab, self.device = n, vocab, device
        self.rows = Rows(list(filled), [int(s) for s in seeds], list(prompts), vocab, device, tokenizer, eos_ids,
                         max_new)
        self.active = [active_stages(c) for c in filled]
        """Each row's stage names (what its trace shows)."""
        self.uses = frozenset().union(*self.active) | ({"sample"} if any(c.samples for c in filled) else set())
        orders = [effective_order(c) for c in filled]
        self.chains: list[tuple[list[int], torch.Tensor | None, Chain]] = []
        for order in dict.fromkeys(orders):
            members = [i for i, o in enumerate(orders) if o == order]
            index = None if len(members) == n else torch.tensor(members, dtype=torch.long, device=device)
            self.chains.append((members, index, Chain(self.rows if index is None else self.rows.subset(members),
                                                      order)))
        self._sampling(filled)
        self._named(filled, tokenizer)
        self._history(prompts, max_new)

    def _sampling(self, configs: Sequence[DecodingConfig]) -> None:
        seeds = self.rows.seeds
        self.seed_lo = torch.tensor([s & _M32 for s in seeds], dtype=torch.int64, device=self.device)
        self.seed_hi = torch.tensor([(s >> 32) & _M32 for s in seeds], dtype=torch.int64, device=self.device)
        self.sample_rows = torch.tensor([i for i, c in enumerate(configs) if c.samples], dtype=torch.long,
                                        device=self.device)

    def _named(self, configs: Sequence[DecodingConfig], tokenizer: Any) -> None:
        """logprob_tokens: the token ids each row names, for the statistics (not a stage: it changes nothing)."""
        self.named_lists: list[list[int]] = []
        self.named: torch.Tensor | None = None
        """[N, M] the token ids each row's logprob_tokens names (-1: none)."""
        if any(c.logprob_tokens for c in configs):
            self.named_lists = [vocab_tools.named_ids(c.logprob_tokens, tokenizer, self.vocab) for c in configs]
            width = max(len(ids) for ids in self.named_lists)
            self.named = torch.tensor([ids + [-1] * (width - len(ids)) for ids in self.named_lists],
                                      dtype=torch.long, device=self.device)

    def _history(self, prompts: Sequence[torch.Tensor], max_new: int) -> None:
        self.seq: torch.Tensor | None = None
        self.length = max((p.numel() for p in prompts), default=0)
        if any(chain.reads_history for _, _, chain in self.chains):
            self.seq = torch.full((self.n, self.length + max(max_new, 1)), -1, dtype=torch.long, device=self.device)
            for row, p in enumerate(prompts):
                if p.numel():
                    self.seq[row, self.length - p.numel(): self.length] = p

    @property
    def history(self) -> torch.Tensor | None:
        """[N, L] every row's tokens so far (prompt included, left-padded with -1), when some stage reads it."""
        return None if self.seq is None else self.seq[:, : self.length]

    # -- a step ---------------------------------------------------------------------------------------------
    def process(self, logits: torch.Tensor, step: int, trace: StageTrace | None = None,
                uncond: torch.Tensor | None = None) -> torch.Tensor:
        """Every row's stages on its logits [N, V] (as float32). trace: a StageTrace (trace.py) recording each
        stage's output, or None. uncond: [N, V] the guided rows' guidance logits (classifier-free guidance)."""
        x = logits.float()
        history = self.history
        if len(self.chains) == 1:
            return self.chains[0][2].process(x, step, history, uncond, trace, None)
        out = x.clone()
        for _, index, chain in self.chains:  # rows whose sampler_order differs run their own chain
            part = chain.process(x[index], step, None if history is None else history[index],
                                 None if uncond is None else uncond[index], trace, index)
            out[index] = part
        return out

    def pick(self, processed: torch.Tensor, step: int) -> torch.Tensor:
        """Greedy rows take the argmax; a sampling row draws from its own distribution with its own uniform
        number u (seed, step): the first token, in id order, whose cumulative probability passes u.

        Zero-probability (filtered) tokens can never be drawn; the draw depends on nothing but the row's
        processed logits, seed and step.
        """
        tokens = processed.argmax(dim=-1)
        rows = self.sample_rows
        if not rows.numel():
            return tokens
        sub = processed if rows.numel() == processed.shape[0] else processed[rows]
        weights = (sub - sub.amax(dim=-1, keepdim=True)).exp_()  # unnormalised: the total scales u instead
        cdf = weights.double().cumsum_(dim=-1)
        u = sample_uniforms(self.seed_lo[rows], self.seed_hi[rows], step)
        drawn = torch.searchsorted(cdf, u * cdf[:, -1:], right=True)[:, 0]
        tokens[rows] = drawn.clamp_(max=processed.shape[1] - 1)
        return tokens

    def accept(self, tokens: torch.Tensor, processed: torch.Tensor | None = None) -> None:
        """This step's tokens [N] (and the processed logits they were drawn from; None for forced tokens)."""
        if self.seq is not None:
            if self.length == self.seq.shape[1]:  # more tokens than planned (forced ones): room for as many again
                self.seq = torch.cat([self.seq, torch.full_like(self.seq, -1)], dim=1)
            self.seq[:, self.length] = tokens
        self.length += 1
        for members, index, chain in self.chains:
            if index is None:
                chain.accept(tokens, processed)
            else:
                chain.accept(tokens[index], None if processed is None else processed[index])

    def select(self, keep: Sequence[int]) -> None:
        """Keep only these rows (indices, in their new order)."""
        keep = [int(i) for i in keep]
        if keep == list(range(self.n)):
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        chains = []
        for members, _, chain in self.chains:
            where = {old: i for i, old in enumerate(members)}
            mine = [old for old in keep if old in where]
            if mine:
                chain.select([where[old] for old in mine], self.device)
                chains.append(([new for new, old in enumerate(keep) if old in where], chain))
        self.rows = self.rows.subset(keep)
        self.active = [self.active[i] for i in keep]
        self.n = len(keep)
        self.chains = [(members, None if len(members) == self.n else
                        torch.tensor(members, dtype=torch.long, device=self.device), chain)
                       for members, chain in chains]
        self._sampling(self.rows.configs)
        if self.named is not None:
            self.named_lists = [self.named_lists[i] for i in keep]
            self.named = self.named.index_select(0, index)
        if self.seq is not None:
            self.seq = self.seq.index_select(0, index)

    # -- what the loop asks -----------------------------------------------------------------------------------
    def rejected(self) -> list[tuple[int, int, str]]:
        """(row, token, constraint field) for each forced token a row's constraint refused, then forgets them."""
        out = []
        for members, rows, stage in self._grammars():
            out += [(members[rows[r]], token, stage.specs[r][0]) for r, token in stage.rejected]
            stage.rejected.clear()
        return out

    def gave_up(self) -> list[tuple[int, str]]:
        """(row, message) for each row whose constraint's matcher gave up since the last call (ConstraintFailed)."""
        out = []
        for members, rows, stage in self._grammars():
            out += [(members[rows[r]], message) for r, message in stage.gave_up]
            stage.gave_up.clear()
        return out

    def _grammars(self) -> list[tuple[list[int], Any, Grammar]]:
        """Each chain's structured-output stage, with its members and rows (stage row r is members[rows[r]])."""
        out = []
        for members, _, chain in self.chains:
            found = chain.stage("grammar")
            if found is not None:
                stage, rows = found
                assert isinstance(stage, Grammar)  # the stage named "grammar"
                out.append((members, rows, stage))
        return out


TOKEN_STAGES = frozenset({"logit_bias", "banned_strings", "dry"})
"""Stages whose settings name tokens (ids, or texts the tokenizer turns into ids)."""


def check_tokens(config: DecodingConfig, vocab: int, tokenizer: Any) -> None:
    """ConfigError naming the field when a setting names a token this vocabulary lacks, or a text its tokenizer
    cannot encode (logit_bias, banned_strings, DRY's breakers, logprob_tokens): the stages' own checks, run on
    one row on the CPU before anything is queued."""
    if config.stop_token_ids:
        vocab_tools.named_ids(config.stop_token_ids, tokenizer, vocab, "stop_token_ids")
    if not (active_stages(config) & TOKEN_STAGES or config.logprob_tokens):
        return
    Sampler([config], [0], vocab, "cpu", tokenizer=tokenizer)
