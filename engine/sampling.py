"""Per-row logits processing, seeded sampling and token statistics on [N, V] tensors.

Every setting is a per-row tensor and every neutral value is an exact no-op, so each stage can run
for the whole batch and no row's result depends on another row's settings. A stage that no row uses
is skipped, which changes nothing for the same reason.

Processing order (written once, here; matches HF transformers 5.x for the processors it has):

    1. repetition penalty          (HF RepetitionPenaltyLogitsProcessor; prompt and output tokens)
    2. frequency, presence penalty (OpenAI / vLLM; tokens generated so far)
    3. no-repeat-ngram             (HF NoRepeatNGramLogitsProcessor; prompt and output tokens)
    4. min-new-tokens              (HF MinNewTokensLengthLogitsProcessor: EOS forbidden early)
       -- greedy rows stop here and take the argmax, as HF does with do_sample=False --
    5. temperature                 (HF TemperatureLogitsWarper)
    6. top-k                       (HF TopKLogitsWarper; ties with the k-th logit are kept)
    7. top-p                       (HF TopPLogitsWarper; keeps the token that crosses p)
    8. min-p                       (HF MinPLogitsWarper)
    9. typical-p                   (HF TypicalLogitsWarper)

Sampling uses the Gumbel-max trick with stateless noise: the noise for (row, step, token id) is a
hash of the row's seed, the step and the token id. So a row's draw depends only on its own seed and
step, never on the batch it runs in or on the order of its sorted logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.config import DecodingConfig

NEG_INF = float("-inf")
_M32 = 0xFFFFFFFF


# -- stateless counter-based noise ------------------------------------------------------------------

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


def gumbel_noise(seed_lo: torch.Tensor, seed_hi: torch.Tensor, step: int, token_hash: torch.Tensor) -> torch.Tensor:
    """Gumbel(0, 1) noise [N, V] that depends only on (row seed, step, token id).

    23 random bits per draw keep u = (h + 0.5) / 2**23 exactly representable in float32 and strictly
    inside (0, 1); the noise then lies in [-2.8, 16.6], so only a token more than ~19 nats below the
    best one (probability < 1e-8) can never be drawn.
    """
    step_key = hash32(torch.full_like(seed_lo, (step * 0x9E3779B9 + 0x632BE5AB) & _M32))
    row_key = hash32(seed_lo ^ hash32(seed_hi ^ step_key))
    bits = hash32(row_key[:, None] ^ token_hash[None, :]) >> 9
    u = (bits.float() + 0.5) * (1.0 / 2**23)
    return -torch.log(-torch.log(u))


def token_hashes(vocab_size: int, device: torch.device) -> torch.Tensor:
    return hash32(torch.arange(vocab_size, dtype=torch.int64, device=device) + 0x165667B1)


# -- per-row settings -----------------------------------------------------------------------------------

@dataclass
class RowSettings:
    """Each decoding setting as a tensor with one entry per row, plus which stages any row uses."""

    temperature: torch.Tensor  # [N, 1]
    top_k: torch.Tensor  # [N] (vocab size when off)
    top_p: torch.Tensor  # [N, 1]
    min_p: torch.Tensor  # [N, 1]
    typical_p: torch.Tensor  # [N, 1]
    repetition_penalty: torch.Tensor  # [N, 1]
    frequency_penalty: torch.Tensor  # [N, 1]
    presence_penalty: torch.Tensor  # [N, 1]
    ngram: torch.Tensor  # [N]
    min_new_tokens: torch.Tensor  # [N]
    seed_lo: torch.Tensor  # [N] int64
    seed_hi: torch.Tensor  # [N] int64
    uses: frozenset[str]
    rows: dict[str, torch.Tensor]
    """Row indices per row-subset stage ("sort", "typical", "sample"), fixed for a run: no device syncs."""

    @classmethod
    def build(cls, configs: list[DecodingConfig | None], seeds: list[int], vocab_size: int,
              device: torch.device) -> RowSettings:
        """Settings for each row; None rows (batch padding) are neutral greedy rows."""
        neutral = DecodingConfig()
        rows = [c if c is not None else neutral for c in configs]

        def col(values, dtype=torch.float32, column=True):
            t = torch.tensor(values, dtype=dtype, device=device)
            return t[:, None] if column else t

        # Warpers only apply to sampling rows (HF skips them when do_sample is false).
        warp = [c.samples for c in rows]
        temperature = [c.temperature if w else 1.0 for c, w in zip(rows, warp)]
        top_k = [min(c.top_k, vocab_size) if (w and c.top_k) else vocab_size for c, w in zip(rows, warp)]
        top_p = [c.top_p if w else 1.0 for c, w in zip(rows, warp)]
        min_p = [c.min_p if w else 0.0 for c, w in zip(rows, warp)]
        typical_p = [c.typical_p if w else 1.0 for c, w in zip(rows, warp)]
        uses = set()
        for name, values, off in (("temperature", temperature, 1.0), ("top_k", top_k, vocab_size),
                                  ("top_p", top_p, 1.0), ("min_p", min_p, 0.0), ("typical_p", typical_p, 1.0)):
            if any(v != off for v in values):
                uses.add(name)
        for name, off in (("repetition_penalty", 1.0), ("frequency_penalty", 0.0), ("presence_penalty", 0.0),
                          ("no_repeat_ngram_size", 0), ("min_new_tokens", 0)):
            if any(getattr(c, name) != off for c in rows):
                uses.add(name)
        if any(warp):
            uses.add("sample")
        return cls(
            temperature=col(temperature), top_k=col(top_k, torch.long, False), top_p=col(top_p),
            min_p=col(min_p), typical_p=col(typical_p),
            repetition_penalty=col([c.repetition_penalty for c in rows]),
            frequency_penalty=col([c.frequency_penalty for c in rows]),
            presence_penalty=col([c.presence_penalty for c in rows]),
            ngram=col([c.no_repeat_ngram_size for c in rows], torch.long, False),
            min_new_tokens=col([c.min_new_tokens for c in rows], torch.long, False),
            seed_lo=col([s & _M32 for s in seeds], torch.int64, False),
            seed_hi=col([(s >> 32) & _M32 for s in seeds], torch.int64, False),
            uses=frozenset(uses),
            rows={
                "sort": col([i for i, (k, p) in enumerate(zip(top_k, top_p)) if k < vocab_size or p < 1],
                            torch.long, False),
                "typical": col([i for i, t in enumerate(typical_p) if t < 1], torch.long, False),
                "sample": col([i for i, w in enumerate(warp) if w], torch.long, False),
            },
        )


class PenaltyState:
    """What the penalties need to know about each row's tokens so far, updated once per step."""

    def __init__(self, settings: RowSettings, prompt_ids: torch.Tensor, vocab_size: int, max_new: int):
        n = settings.temperature.shape[0]
        device = prompt_ids.device
        self.uses = settings.uses
        self.seen = self.counts = self.seq = None
        if "repetition_penalty" in self.uses:
            self.seen = torch.zeros(n, vocab_size, dtype=torch.bool, device=device)
            self.seen[:, prompt_ids] = True
        if self.uses & {"frequency_penalty", "presence_penalty"}:
            self.counts = torch.zeros(n, vocab_size, dtype=torch.float32, device=device)
        if "no_repeat_ngram_size" in self.uses:
            self.seq = torch.empty(n, prompt_ids.numel() + max_new, dtype=torch.long, device=device)
            self.seq[:, : prompt_ids.numel()] = prompt_ids
        self.length = prompt_ids.numel()

    def update(self, tokens: torch.Tensor) -> None:
        if self.seen is not None:
            self.seen.scatter_(1, tokens[:, None], True)
        if self.counts is not None:
            self.counts.scatter_add_(1, tokens[:, None], torch.ones_like(tokens[:, None], dtype=torch.float32))
        if self.seq is not None:
            self.seq[:, self.length] = tokens
        self.length += 1


def banned_ngram_tokens(seq: torch.Tensor, sizes: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """[N, V] mask of tokens that would repeat an n-gram already in each row (n per row, 0 = off)."""
    n_rows, length = seq.shape
    n_max = int(sizes.max())
    padded = torch.cat([seq, seq.new_full((n_rows, n_max - 1), -1)], dim=1)
    windows = padded.unfold(1, n_max, 1)  # [N, L, n_max]: the n-gram starting at each position
    k = torch.arange(n_max - 1, device=seq.device)
    tail_idx = (length - sizes[:, None] + 1 + k[None, :]).clamp(0, max(length - 1, 0))
    tail = seq.gather(1, tail_idx)  # the last n-1 tokens of each row
    in_prefix = k[None, :] < (sizes[:, None] - 1)  # [N, n_max-1]
    same = (windows[:, :, : n_max - 1] == tail[:, None, :]) | ~in_prefix[:, None, :]
    target = windows.gather(2, (sizes - 1).clamp(min=0)[:, None, None].expand(n_rows, length, 1))[..., 0]
    starts = torch.arange(length, device=seq.device)
    valid = (starts[None, :] + sizes[:, None] <= length) & (sizes[:, None] > 0) & (length + 1 >= sizes[:, None])
    hit = same.all(dim=2) & valid & (target >= 0)
    banned = torch.zeros(n_rows, vocab_size + 1, dtype=torch.bool, device=seq.device)
    banned.scatter_(1, torch.where(hit, target, vocab_size), True)
    return banned[:, :vocab_size]


# -- the pipeline ---------------------------------------------------------------------------------------

def process(logits: torch.Tensor, s: RowSettings, state: PenaltyState, step: int,
            eos_ids: torch.Tensor | None) -> torch.Tensor:
    """Apply every row's penalties, temperature and filters to float32 logits [N, V]."""
    x = logits.float()
    uses = s.uses
    if state.seen is not None:
        x = torch.where(state.seen, torch.where(x < 0, x * s.repetition_penalty, x / s.repetition_penalty), x)
    if state.counts is not None:
        x = x - s.frequency_penalty * state.counts - s.presence_penalty * (state.counts > 0)
    if state.seq is not None:
        x = x.masked_fill(banned_ngram_tokens(state.seq[:, : state.length], s.ngram, x.shape[1]), NEG_INF)
    if "min_new_tokens" in uses and eos_ids is not None and eos_ids.numel():
        early = (step < s.min_new_tokens)[:, None]
        x = x.clone() if x is logits else x
        x[:, eos_ids] = torch.where(early, NEG_INF, x[:, eos_ids])
    if "temperature" in uses:
        x = x / s.temperature
    if uses & {"top_k", "top_p"}:
        x = _on_rows(x, s.rows["sort"], lambda rows, sub: _sorted_filters(sub, s, rows))
    if "min_p" in uses:
        # HF's MinPLogitsWarper sorts only to keep one token; the top token always passes, so no sort is needed.
        probs = x.softmax(dim=-1)
        x = x.masked_fill(probs < s.min_p * probs.amax(dim=-1, keepdim=True), NEG_INF)
    if "typical_p" in uses:
        x = _on_rows(x, s.rows["typical"], lambda rows, sub: _typical(sub, s.typical_p[rows]))
    return x


def _on_rows(x: torch.Tensor, rows: torch.Tensor, fn) -> torch.Tensor:
    """Apply fn only to the given rows (the stage is an exact no-op for the others)."""
    if rows.numel() == x.shape[0]:
        return fn(rows, x)
    if rows.numel() == 0:
        return x
    out = x.clone()
    out[rows] = fn(rows, x[rows])
    return out


def _sorted_filters(x: torch.Tensor, s: RowSettings, rows: torch.Tensor) -> torch.Tensor:
    """top-k then top-p on one descending sort, each exactly as HF computes it."""
    sorted_x, order = torch.sort(x, dim=-1, descending=True)
    top_k, top_p = s.top_k[rows], s.top_p[rows]
    kth = sorted_x.gather(1, (top_k - 1)[:, None])
    sorted_x = sorted_x.masked_fill(sorted_x < kth, NEG_INF)
    # HF sorts ascending and drops tokens whose cumulative probability is <= 1 - p, always keeping the top one.
    ascending = sorted_x.flip(-1).softmax(dim=-1).cumsum(dim=-1)
    drop = (ascending <= 1 - top_p).flip(-1)
    drop[:, 0] = False
    sorted_x = sorted_x.masked_fill(drop & (top_p < 1), NEG_INF)
    return torch.empty_like(x).scatter_(1, order, sorted_x)


def _typical(x: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(x, dim=-1)
    ent = -(logp * logp.exp()).nansum(-1, keepdim=True)
    shifted = (-logp - ent).abs()
    sorted_scores, order = torch.sort(shifted, dim=-1)
    cumulative = x.gather(1, order).softmax(dim=-1).cumsum(dim=-1)
    last = (cumulative < mass).sum(dim=1).clamp(max=x.shape[1] - 1)
    drop_sorted = sorted_scores > sorted_scores.gather(1, last[:, None])
    drop_sorted[:, 0] = False
    drop = drop_sorted.scatter(1, order, drop_sorted)
    return x.masked_fill(drop & (mass < 1), NEG_INF)


def pick(processed: torch.Tensor, s: RowSettings, step: int, token_hash: torch.Tensor) -> torch.Tensor:
    """Greedy rows take the argmax; sampling rows the argmax after adding their own Gumbel noise."""
    tokens = processed.argmax(dim=-1)
    if "sample" not in s.uses:
        return tokens
    rows = s.rows["sample"]
    noise = gumbel_noise(s.seed_lo[rows], s.seed_hi[rows], step, token_hash)
    tokens[rows] = (processed[rows] + noise).argmax(dim=-1)
    return tokens


def step_statistics(raw: torch.Tensor, processed: torch.Tensor, tokens: torch.Tensor, k: int) -> torch.Tensor:
    """Pack each row's statistics into one float32 tensor [N, 6 + 3k] so they reach the host at once.

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
    p = logp.exp()
    return -torch.where(p > 0, p * logp, torch.zeros_like(p)).sum(dim=-1, keepdim=True)
