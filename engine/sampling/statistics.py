"""Per-step token statistics, packed into one float32 tensor so they reach the host in one transfer."""

from __future__ import annotations

import torch


def step_statistics(raw: torch.Tensor, processed: torch.Tensor, tokens: torch.Tensor, k: int,
                    named: torch.Tensor | None = None) -> torch.Tensor:
    """Each row's statistics as one float32 tensor [N, 6 + 3k + 2m].

    Columns: token id, rank, logprob, logprob_processed, entropy, entropy_processed, then k top
    token ids, their raw logprobs and their processed logprobs; then, for the m tokens named per row
    (named [N, m], -1 for none), their raw and processed logprobs (NaN where a row names fewer). Ids and
    ranks are exact in float32 below 2**24.
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
    if named is not None and named.shape[1]:
        index, absent = named.clamp(min=0), named < 0
        cols += [raw_lp.gather(1, index).masked_fill(absent, torch.nan),
                 proc_lp.gather(1, index).masked_fill(absent, torch.nan)]
    return torch.cat(cols, dim=1)


def _entropy(logp: torch.Tensor) -> torch.Tensor:
    return -(logp.exp() * logp).nansum(dim=-1, keepdim=True)  # 0 * -inf (a filtered token) is nan: skipped
