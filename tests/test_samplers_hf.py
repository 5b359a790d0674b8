"""HF-exactness of the filters on tied and bfloat16 logits, epsilon/eta against HF's warpers, and the
new stages mixed in one batch (alone == together, reproducible, neutral = no-op)."""

from __future__ import annotations

import pytest
import torch
from transformers.generation.logits_process import (
    EpsilonLogitsWarper,
    EtaLogitsWarper,
    NoBadWordsLogitsProcessor,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from decodelab.engine import DecodingConfig
from decodelab.engine.sampling import Sampler

V = 64


def run(configs, logits, history=(1, 2, 3), tokenizer=None, step=0):
    sampler = Sampler(configs, list(range(len(configs))), logits.shape[-1], tokenizer=tokenizer,
                      prompts=torch.tensor(list(history)), max_new=16)
    return sampler.process(logits.clone(), step)


def same(a, b):
    assert torch.equal(torch.isinf(a), torch.isinf(b)), (torch.isinf(a).nonzero().flatten().tolist(),
                                                         torch.isinf(b).nonzero().flatten().tolist())
    keep = torch.isfinite(a)
    torch.testing.assert_close(a[keep], b[keep], rtol=1e-6, atol=1e-6)


def test_top_p_ties_keep_the_same_ids_as_hf():
    """HF sorts ascending, so among equal logits it keeps the highest ids: [0,0,0,0] at p=0.5 keeps {2, 3}."""
    x = torch.zeros(1, 4)
    got = run([DecodingConfig(do_sample=True, top_p=0.5)], x)[0]
    assert torch.isfinite(got).nonzero().flatten().tolist() == [2, 3]
    same(got, TopPLogitsWarper(0.5)(None, x.clone())[0])


def _bf16_rows(seed, n=16, vocab=2048):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, vocab, generator=gen) * 2.5).to(torch.bfloat16).float()  # many exact ties


@pytest.mark.parametrize("p", [0.3, 0.5, 0.8, 0.9, 0.95])
def test_top_p_matches_hf_on_bfloat16_logits(p):
    x = _bf16_rows(int(p * 100))
    got = run([DecodingConfig(do_sample=True, top_p=p)] * x.shape[0], x)
    for r in range(x.shape[0]):
        same(got[r], TopPLogitsWarper(p)(None, x[r : r + 1].clone())[0])


@pytest.mark.parametrize("k,p", [(5, 0.9), (50, 0.5), (200, 0.95)])
def test_top_k_then_top_p_matches_hf_on_bfloat16_logits(k, p):
    x = _bf16_rows(k)
    got = run([DecodingConfig(do_sample=True, top_k=k, top_p=p)] * x.shape[0], x)
    for r in range(x.shape[0]):
        expected = TopPLogitsWarper(p)(None, TopKLogitsWarper(k)(None, x[r : r + 1].clone()))
        same(got[r], expected[0])


def _logit_cases():
    gen = torch.Generator().manual_seed(0)
    cases = [torch.randn(V, generator=gen) * s for s in (0.5, 2.0, 6.0)]
    cases.append(torch.tensor([2.0, 2.0, 1.0, 1.0] * (V // 4)))  # ties
    cases.append(torch.zeros(V))  # all tied: nothing below epsilon unless epsilon > 1/V
    flat = torch.randn(V, generator=gen)
    flat[10:] = float("-inf")  # already filtered tokens
    cases.append(flat)
    cases.append(_bf16_rows(3, n=1, vocab=V)[0])
    return cases


@pytest.mark.parametrize("cutoff", [3e-4, 1e-3, 0.01, 0.05, 0.2])
@pytest.mark.parametrize("index", range(7))
def test_epsilon_and_eta_match_hf(cutoff, index):
    x = _logit_cases()[index]
    got = run([DecodingConfig(do_sample=True, epsilon_cutoff=cutoff),
               DecodingConfig(do_sample=True, eta_cutoff=cutoff)],
              torch.stack([x, x]))
    same(got[0], EpsilonLogitsWarper(cutoff)(None, x[None].clone())[0])
    same(got[1], EtaLogitsWarper(cutoff)(None, x[None].clone())[0])
    assert torch.isfinite(got).any(dim=1).all()  # the top token always survives


def test_banned_strings_match_hf_bad_words_ids(tiny_tokenizer):
    banned = ["for", " statement", " is used to"]
    ids = [tiny_tokenizer.encode(t, add_special_tokens=False) for t in banned]
    vocab = len(tiny_tokenizer)
    x = torch.randn(vocab)
    histories = [tiny_tokenizer.encode(t, add_special_tokens=False) for t in
                 ("The for statement is used", "The for statement is", "a sequence")]
    for history in histories:
        got = run([DecodingConfig(banned_strings=banned)], x[None], history=history, tokenizer=tiny_tokenizer)[0]
        expected = NoBadWordsLogitsProcessor(ids, eos_token_id=0)(torch.tensor([history]), x[None].clone())[0]
        same(got, expected)


def test_epsilon_and_eta_property_over_many_random_rows():
    """Random scales, sizes, ties (rounded logits) and pre-filtered tokens: always HF's kept set."""
    gen = torch.Generator().manual_seed(42)
    for case in range(60):
        vocab = int(torch.randint(2, 300, (1,), generator=gen))
        x = torch.randn(vocab, generator=gen) * float(torch.rand(1, generator=gen) * 8 + 0.1)
        if case % 3 == 0:
            x = x.round()  # many ties
        if case % 4 == 0:
            x[torch.rand(vocab, generator=gen) < 0.3] = float("-inf")
            x[0] = 1.0
        cutoff = float(10 ** (-torch.rand(1, generator=gen) * 3 - 1))  # 1e-4 .. 1e-1
        got = run([DecodingConfig(do_sample=True, epsilon_cutoff=cutoff),
                   DecodingConfig(do_sample=True, eta_cutoff=cutoff)], torch.stack([x, x]))
        same(got[0], EpsilonLogitsWarper(cutoff)(None, x[None].clone())[0])
        same(got[1], EtaLogitsWarper(cutoff)(None, x[None].clone())[0])
