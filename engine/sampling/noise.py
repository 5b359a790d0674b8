"""Stateless counter-based noise: every random number is a hash of (the row's seed, the step, a counter).

So a row's draws depend only on its own seed and step, never on the batch it runs in, and no global
RNG is touched. One 53-bit uniform number per row and step picks the token (inverting the row's CDF
in token-id order, so the draw never depends on sorted positions); another drives coin flips inside a
stage (XTC).
"""

from __future__ import annotations

import torch

_M32 = 0xFFFFFFFF
SALT_XTC = 0x2545F491
SALT_SAMPLE = 0x61C88647


def hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mixer (lowbias32) on int64 tensors holding values in [0, 2**32).

    The products can pass 2**63 and wrap; only their low 32 bits are kept, which wrapping leaves
    exact. A test checks this against a pure-Python reference.
    """
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def row_keys(seed_lo: torch.Tensor, seed_hi: torch.Tensor, step: int, salt: int = 0) -> torch.Tensor:
    """One 32-bit key per row for (seed, step, salt)."""
    step_key = hash32(torch.full_like(seed_lo, (step * 0x9E3779B9 + 0x632BE5AB + salt) & _M32))
    return hash32(seed_lo ^ hash32(seed_hi ^ step_key))


def sample_uniforms(seed_lo: torch.Tensor, seed_hi: torch.Tensor, step: int) -> torch.Tensor:
    """One float64 Uniform(0, 1) per row [N, 1] with 53 random bits: the draw that picks this step's token."""
    hi = hash32(row_keys(seed_lo, seed_hi, step, SALT_SAMPLE)) >> 6  # 26 bits
    lo = hash32(row_keys(seed_lo, seed_hi, step, SALT_SAMPLE + 1)) >> 5  # 27 bits
    return ((hi.double() * 2**27 + lo.double() + 0.5) * 2.0**-53)[:, None]


def uniform_rows(seed_lo: torch.Tensor, seed_hi: torch.Tensor, step: int, salt: int) -> torch.Tensor:
    """One Uniform(0, 1) number per row [N, 1] for (seed, step, salt): a stage's coin flip."""
    bits = hash32(row_keys(seed_lo, seed_hi, step, salt) ^ 0x5BD1E995) >> 8
    return ((bits.float() + 0.5) * (1.0 / 2**24))[:, None]


