"""Per-step token statistics, packed into one float32 tensor so they reach the host in one transfer."""

from __future__ import annotations

import torch


def step_statistics(raw: torch.Tensor, processed: torch.Tensor, tokens: torch.Tensor, k: int) -> torch.Tensor:
    """Each row's statistics as one float32 tensor [N, 6 + 3k].

    Columns: token id, rank, logprob, logprob_processed, entropy, entropy_processed, then k top
    token ids, their raw logprobs and their processed logprobs. Ids and ranks are exact in float32
    below 2**24.
    """
    raw_lp = torch.log_softmax(raw.float(), dim=-1)
    proc_lp = torch.log_softmax(processed, dim=-1)
    chosen = tokens[:, None]
    lp = raw_lp.gather(1, chosen)
    lpp = proc_lp.gather(1, chosen)
    rank = (raw_lp > lp).sum(dim=-1, keepdim=True)
    cols = [chosen.float(), rank.float(), lp, lpp, _entropy(raw_lp), _entropy(proc_lp)]
    if k:
        top_lp, top_ids = raw_lp.topk(k, dim=-1)
        cols += [top_ids.float(), top_lp, proc_lp.gather(1, top_ids)]
    return torch.cat(cols, dim=1)


def _entropy(logp: torch.Tensor) -> torch.Tensor:
    return -(logp.exp() * logp).nansum(dim=-1, keepdim=True)  # 0 * -inf (a filtered token) is nan: skipped
