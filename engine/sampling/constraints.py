"""Structured output's stage: each constrained row's matcher (engine/grammars.py, llguidance) says which
tokens may come next, and every other token's logit becomes -inf, before any other stage.

The matchers live in RowState (one per row, None for rows without a constraint) and take each step's
token in RowState.update. End-of-sequence is allowed exactly where the grammar accepts (llguidance puts
it in the mask then). A row left with no token at all (its constraint is complete but min_new_tokens
forbids the end, or a ban removed every token the grammar allows) may only end: the constraint wins.
"""

from __future__ import annotations

import numpy as np
import torch


def allowed_tokens(matchers: list, vocab: int, device) -> torch.Tensor:
    """[n, vocab] bool: the tokens each matcher allows next (from llguidance's bitmasks, one bit per token:
    token t is bit t % 8 of byte t // 8)."""
    packed = np.frombuffer(b"".join(m.compute_bitmask() for m in matchers), dtype=np.uint8)
    bits = np.unpackbits(packed.reshape(len(matchers), -1), axis=1, bitorder="little")
    allowed = torch.from_numpy(bits).view(torch.bool)[:, :vocab]
    if allowed.shape[1] < vocab:  # tokens past the tokenizer's table (padding of the embedding) are never allowed
        allowed = torch.cat([allowed, allowed.new_zeros(len(matchers), vocab - allowed.shape[1])], dim=1)
    return allowed.to(device, non_blocking=True)


def constrain(x: torch.Tensor, allowed: torch.Tensor, eos) -> torch.Tensor:
    """x with the tokens `allowed` forbids at -inf; a row left with nothing may only end (eos, an id or a 0-d
    tensor, at 0; None: no end token)."""
    out = x.masked_fill(~allowed, float("-inf"))
    dead = ~torch.isfinite(out).any(dim=-1)
    if eos is not None and bool(dead.any()):
        out[dead, eos] = 0.0  # nothing left to say: the row ends
    return out


def grammar(x: torch.Tensor, s, state, step: int) -> torch.Tensor:
    """The constraint's mask on the rows that have one."""
    rows = [i for i, m in enumerate(state.matchers) if m is not None]
    if not rows:
        return x
    allowed = allowed_tokens([state.matchers[i] for i in rows], x.shape[1], x.device)
    eos = state.eos_ids[0] if state.eos_ids is not None else None  # a tensor: no host sync on a GPU
    if len(rows) == x.shape[0]:  # every row is constrained: no copies
        return constrain(x, allowed, eos)
    index = torch.tensor(rows, dtype=torch.long, device=x.device)
    out = x.clone()
    out[index] = constrain(x[index], allowed, eos)
    return out
