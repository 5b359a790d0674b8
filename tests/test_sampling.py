"""The per-row sampler against HF transformers' own processors and warpers, on the same logits."""

from __future__ import annotations

import pytest
import torch
from transformers.generation.logits_process import (
    MinNewTokensLengthLogitsProcessor,
    MinPLogitsWarper,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)

from decodelab.engine import DecodingConfig
from decodelab.engine.decoding.hf_generate import FrequencyPresencePenalty
from decodelab.engine.sampling import Sampler, banned_ngram_tokens, step_statistics

V = 64
EOS = 3


def hf_reference(logits_row, config: DecodingConfig, prompt, generated, step):
    """The same row through HF's processors, in HF's order, plus the OpenAI penalty processor."""
    ids = torch.tensor([prompt + generated])
    x = logits_row[None, :].clone()
    if config.repetition_penalty != 1:
        x = RepetitionPenaltyLogitsProcessor(config.repetition_penalty)(ids, x)
    if config.frequency_penalty or config.presence_penalty:
        x = FrequencyPresencePenalty(config.frequency_penalty, config.presence_penalty, len(prompt))(ids, x)
    if config.no_repeat_ngram_size:
        x = NoRepeatNGramLogitsProcessor(config.no_repeat_ngram_size)(ids, x)
    if config.min_new_tokens:
        x = MinNewTokensLengthLogitsProcessor(len(prompt), config.min_new_tokens, EOS)(ids, x)
    if config.samples:
        if config.temperature != 1:
            x = TemperatureLogitsWarper(config.temperature)(ids, x)
        if config.top_k:
            x = TopKLogitsWarper(config.top_k)(ids, x)
        if config.top_p < 1:
            x = TopPLogitsWarper(config.top_p)(ids, x)
        if config.min_p:
            x = MinPLogitsWarper(config.min_p)(ids, x)
        if config.typical_p < 1:
            x = TypicalLogitsWarper(config.typical_p)(ids, x)
    return x[0]


CONFIGS = [
    DecodingConfig(),
    DecodingConfig(repetition_penalty=1.5),
    DecodingConfig(repetition_penalty=0.7, no_repeat_ngram_size=2),
    DecodingConfig(frequency_penalty=0.8, presence_penalty=-0.5),
    DecodingConfig(min_new_tokens=5, max_new_tokens=10),
    DecodingConfig(do_sample=True, temperature=0.6),
    DecodingConfig(do_sample=True, top_k=7),
    DecodingConfig(do_sample=True, top_p=0.8),
    DecodingConfig(do_sample=True, min_p=0.2),
    DecodingConfig(do_sample=True, typical_p=0.7),
    DecodingConfig(do_sample=True, temperature=1.3, top_k=20, top_p=0.9, min_p=0.05, typical_p=0.95,
                   repetition_penalty=1.2, frequency_penalty=0.3, presence_penalty=0.2, no_repeat_ngram_size=3),
    DecodingConfig(do_sample=False, temperature=0.3, top_k=2),  # warpers ignored without sampling
]


def _run_rows(configs, steps=6, seed=0):
    """Feed random logits through our batched process and HF's per-row chain; return both."""
    gen = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, V, (8,), generator=gen).tolist()
    prompt[3:5] = prompt[0:2]  # a repeated bigram so no-repeat-ngram has work from the start
    n = len(configs)
    sampler = Sampler(configs, list(range(n)), V, prompts=torch.tensor(prompt), max_new=steps,
                      eos_ids=torch.tensor([EOS]))
    generated = [[] for _ in range(n)]
    pairs = []
    for step in range(steps):
        logits = torch.randn(n, V, generator=gen) * 3
        ours = sampler.process(logits, step)
        for r, config in enumerate(configs):
            pairs.append((ours[r], hf_reference(logits[r], config, prompt, generated[r], step), config))
        tokens = torch.randint(0, V, (n,), generator=gen)
        tokens[0] = prompt[0]  # make repeats happen
        sampler.accept(tokens)
        for r in range(n):
            generated[r].append(int(tokens[r]))
    return pairs


def _same(a, b):
    assert torch.equal(torch.isinf(a), torch.isinf(b)), "different tokens filtered"
    finite = torch.isfinite(a)
    torch.testing.assert_close(a[finite], b[finite], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("index", range(len(CONFIGS)))
def test_each_setting_matches_hf_alone(index):
    for ours, ref, _ in _run_rows([CONFIGS[index]]):
        _same(ours, ref)


def test_all_settings_match_hf_mixed_in_one_batch():
    for ours, ref, _ in _run_rows(CONFIGS):
        _same(ours, ref)


def test_a_row_does_not_depend_on_its_neighbours():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(5, V, generator=gen) * 3
    prompt = torch.tensor([1, 2, 1, 2])
    results = []
    for configs in ([CONFIGS[-2]], [CONFIGS[-2]] + CONFIGS[1:5]):
        sampler = Sampler(configs, [11] * len(configs), V, prompts=prompt, max_new=4, eos_ids=torch.tensor([EOS]))
        sampler.accept(torch.full((len(configs),), 7))
        results.append(sampler.process(logits[: len(configs)], 1)[0])
    assert torch.equal(results[0], results[1])


def test_neutral_settings_are_exact_no_ops():
    logits = torch.randn(4, V) * 5
    sampler = Sampler([DecodingConfig(do_sample=True)] * 4, [1, 2, 3, 4], V, prompts=torch.tensor([1, 2]), max_new=4,
                      eos_ids=torch.tensor([EOS]))
    assert torch.equal(sampler.process(logits, 0), logits)


def test_ngram_mask_with_mixed_sizes():
    seq = torch.tensor([[5, 6, 7, 5, 6], [5, 6, 7, 5, 6], [1, 2, 1, 2, 1]])
    banned = banned_ngram_tokens(seq, torch.tensor([3, 0, 2]), 10)
    assert banned[0].nonzero().flatten().tolist() == [7]  # "5 6" was followed by 7
    assert not banned[1].any()  # size 0 is off
    assert banned[2].nonzero().flatten().tolist() == [2]  # "1" was followed by 2


# -- sampling ----------------------------------------------------------------------------------------------

def _draws(config, logits, n_rows=2000, steps=10):
    sampler = Sampler([config] * n_rows, list(range(n_rows)), V, prompts=torch.tensor([0]), max_new=1)
    processed = sampler.process(logits.expand(n_rows, V), 0)
    return torch.cat([sampler.pick(processed, step) for step in range(steps)]), processed[0]


@pytest.mark.parametrize("config", [
    DecodingConfig(do_sample=True),
    DecodingConfig(do_sample=True, temperature=0.7, top_p=0.9),
    DecodingConfig(do_sample=True, temperature=1.5, top_k=10),
    DecodingConfig(do_sample=True, min_p=0.05),
    DecodingConfig(do_sample=True, typical_p=0.8),
])
def test_sampled_tokens_follow_the_hf_warped_distribution(config):
    logits = torch.randn(V, generator=torch.Generator().manual_seed(7)) * 2
    draws, _ = _draws(config, logits)
    expected = torch.softmax(hf_reference(logits, config, [0], [], 0), dim=-1)
    observed = torch.bincount(draws, minlength=V).float() / draws.numel()
    assert observed[expected == 0].sum() == 0, "a filtered token was sampled"
    total_variation = 0.5 * (observed - expected).abs().sum().item()
    assert total_variation < 0.02, total_variation


def test_noise_depends_only_on_seed_and_step():
    from decodelab.engine.sampling import sample_uniforms

    lo, hi = torch.tensor([5, 5, 9]), torch.tensor([0, 0, 1])
    a = sample_uniforms(lo, hi, 3)
    assert a[0] == a[1] and a[0] != a[2]
    assert torch.equal(sample_uniforms(lo[:1], hi[:1], 3)[0], a[0])  # same alone as in a batch
    assert not torch.equal(sample_uniforms(lo, hi, 4)[0], a[0])  # a new step, new draw
    many = sample_uniforms(torch.arange(20000), torch.zeros(20000, dtype=torch.long), 0)
    assert ((many > 0) & (many < 1)).all() and abs(float(many.mean()) - 0.5) < 0.01


def test_greedy_rows_take_the_argmax_of_penalised_logits():
    logits = torch.randn(3, V)
    configs = [DecodingConfig(), DecodingConfig(do_sample=True, temperature=0), DecodingConfig(do_sample=True)]
    tokens = Sampler(configs, [1, 2, 3], V).pick(logits, 0)
    assert tokens[:2].tolist() == logits[:2].argmax(-1).tolist()


def test_statistics_are_packed_in_one_tensor():
    raw = torch.randn(2, V)
    processed = raw.clone()
    processed[:, 10:] = float("-inf")
    tokens = torch.tensor([raw[0].argmax().item(), 3])
    stats = step_statistics(raw, processed, tokens, k=5)
    assert stats.shape == (2, 6 + 15)
    logp = torch.log_softmax(raw, -1)
    assert int(stats[0, 1]) == 0  # the argmax has rank 0
    assert int(stats[1, 1]) == int((logp[1] > logp[1, 3]).sum())
    torch.testing.assert_close(stats[1, 2], logp[1, 3])
    torch.testing.assert_close(stats[0, 4], -(logp[0].exp() * logp[0]).sum())
    assert stats[0, 5] < stats[0, 4]  # filtering lowers entropy
    assert stats[:, 6:11].tolist() == logp.topk(5).indices.float().tolist()


def _lowbias32_reference(x: int) -> int:
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def test_hash_matches_pure_python_reference():
    from decodelab.engine.sampling import hash32

    values = [0, 1, 2, 12345, 2**31 - 1, 2**31, 2**32 - 1, 0xDEADBEEF]
    got = hash32(torch.tensor(values, dtype=torch.int64)).tolist()
    assert got == [_lowbias32_reference(v) for v in values]
