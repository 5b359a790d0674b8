"""The llama.cpp-family stages against llama.cpp's own samplers (llama-cpp-python's low-level API), same logits."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("llama_cpp", reason="llama-cpp-python is installed by `make test` / CI")

import llama_cpp as L  # noqa: E402

from decodelab.engine import DecodingConfig  # noqa: E402
from decodelab.engine.sampling import Sampler, uniform_rows  # noqa: E402
from decodelab.engine.sampling.noise import SALT_XTC  # noqa: E402
from tests import llama_samplers as ref  # noqa: E402

V = 300


def ours(config: DecodingConfig, logits: torch.Tensor, history=(0,), tokenizer=None, state=None, step=0):
    """Our chain on one row; returns (processed [V], the sampler, the sampler: pass it back as state to go on)."""
    config = config.replace(do_sample=True) if not config.do_sample else config
    if state is None:
        state = Sampler([config], [config.seed or 0], logits.shape[-1], tokenizer=tokenizer,
                        prompts=torch.tensor(list(history)), max_new=64)
    return state.process(logits[None, :].clone(), step)[0], state, state


def same(a: torch.Tensor, b: torch.Tensor, tol=1e-5):
    ours_kept, theirs_kept = (set(torch.isfinite(t).nonzero().flatten().tolist()) for t in (a, b))
    assert ours_kept == theirs_kept, (f"kept sets differ: ours only {sorted(ours_kept - theirs_kept)}, "
                                      f"llama.cpp only {sorted(theirs_kept - ours_kept)}")
    keep = torch.isfinite(a)
    torch.testing.assert_close(a[keep], b[keep], rtol=tol, atol=tol)


def random_logits(seed: int, scale=3.0, n=V, masked=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=gen) * scale
    if masked:
        x[torch.randperm(n, generator=gen)[:masked]] = float("-inf")
    return x


LOGITS = [random_logits(s) for s in range(4)] + [random_logits(9, scale=0.3), random_logits(10, masked=50),
                                                 torch.tensor([1.0, 1.0, 1.0, 0.5, 0.5, 0.0] * 50)]


@pytest.mark.parametrize("n", [0.5, 1.0, 2.0, 3.5])
@pytest.mark.parametrize("index", range(len(LOGITS)))
def test_top_n_sigma(n, index):
    x = LOGITS[index]
    expected = ref.Chain(L.llama_sampler_init_top_n_sigma(n)).apply(x)["logits"]
    same(ours(DecodingConfig(top_n_sigma=n), x)[0], expected)


@pytest.mark.parametrize("t,delta,exponent", [(1.0, 0.5, 1.0), (0.7, 0.7, 2.0), (1.5, 0.3, 0.5), (0.8, 0.0, 1.0)])
@pytest.mark.parametrize("index", range(len(LOGITS)))
def test_dynamic_temperature(t, delta, exponent, index):
    """Removed tokens do not count as candidates (llama.cpp's array after a truncating sampler)."""
    x = LOGITS[index]
    expected = ref.Chain(L.llama_sampler_init_temp_ext(t, delta, exponent)).apply(x, truncated=True)["logits"]
    config = DecodingConfig(temperature=t, dynatemp_range=delta, dynatemp_exponent=exponent)
    same(ours(config, x)[0], expected)


@pytest.mark.parametrize("threshold", [0.05, 0.1, 0.2, 0.4, 0.6])
@pytest.mark.parametrize("index", range(len(LOGITS) - 1))
def test_xtc_given_the_coin(threshold, index):
    x = LOGITS[index] * 1.5
    expected = ref.Chain(L.llama_sampler_init_xtc(1.0, threshold, 1, 0)).apply(x)["logits"]
    got = ours(DecodingConfig(xtc_probability=1.0, xtc_threshold=threshold), x)[0]
    same(got.isfinite().float(), expected.isfinite().float())  # XTC only removes: same kept set


def test_xtc_coin_is_the_rows_own_and_fair():
    seeds = torch.arange(4000, dtype=torch.int64)
    coins = torch.cat([uniform_rows(seeds, seeds * 0, step, SALT_XTC) for step in range(3)])
    assert abs(float((coins <= 0.3).float().mean()) - 0.3) < 0.02
    assert torch.equal(uniform_rows(seeds[5:6], seeds[5:6] * 0, 2, SALT_XTC), coins[4000 * 2 + 5][None])


def test_xtc_fires_with_its_probability():
    x = torch.tensor([3.0, 2.9, 2.8, 0.0] + [-5.0] * 20)
    fired = 0
    for seed in range(400):
        got = ours(DecodingConfig(xtc_probability=0.25, xtc_threshold=0.1, seed=seed), x, step=seed % 7)[0]
        fired += bool(torch.isinf(got[0]))
    assert 0.18 < fired / 400 < 0.32


@pytest.mark.parametrize("version,tau,eta", [(2, 5.0, 0.1), (2, 2.0, 0.5), (1, 5.0, 0.1), (1, 3.0, 0.3)])
def test_mirostat_keeps_the_same_tokens_and_moves_mu_alike(version, tau, eta):
    sampler = (L.llama_sampler_init_mirostat_v2(7, tau, eta) if version == 2
               else L.llama_sampler_init_mirostat(V, 7, tau, eta, 100))
    chain = ref.Chain(sampler)
    config = DecodingConfig(do_sample=True, mirostat=version, mirostat_tau=tau, mirostat_eta=eta)
    state = None
    for step in range(25):
        x = random_logits(100 + step, scale=2.0 + step % 3)
        expected = chain.apply(x)
        got, settings, state = ours(config, x, state=state, step=step)
        same(got.isfinite().float(), expected["logits"].isfinite().float())
        kept = expected["p"] > 0
        torch.testing.assert_close(got.softmax(-1)[kept], expected["p"][kept], rtol=1e-4, atol=1e-6)
        state.accept(torch.tensor([expected["selected"]]), got[None, :])  # llama.cpp's draw moves both mus


def test_logit_bias():
    x = random_logits(3)
    pairs = [(5, 2.5), (17, -100.0), (5, 1.0), (200, -1.5)]
    expected = ref.Chain(ref.logit_bias(V, pairs)).apply(x)["logits"]
    got = ours(DecodingConfig(do_sample=False, logit_bias=pairs), x)[0]
    same(got, expected)


@pytest.mark.parametrize("window", [4, 16, 0])
def test_repetition_penalty_window(window):
    gen = torch.Generator().manual_seed(5)
    history = torch.randint(0, V, (40,), generator=gen).tolist()
    x = random_logits(4)
    # decodelab's 0 is the whole context (llama.cpp's -1): give llama.cpp a window as long as the history
    chain = ref.Chain(L.llama_sampler_init_penalties(V, window or len(history), 1.4, 0.0, 0.0))
    chain.accept(history)
    got = ours(DecodingConfig(do_sample=False, repetition_penalty=1.4, repetition_penalty_last_n=window), x,
               history=history)[0]
    same(got, chain.apply(x)["logits"])


@pytest.fixture(scope="module")
def demo_vocab(tmp_path_factory):
    model, vocab = ref.demo_vocab(tmp_path_factory.mktemp("gguf"))
    yield vocab
    L.llama_model_free(model)


@pytest.fixture(scope="module")
def demo_tokenizer():
    from transformers import AutoTokenizer

    from decodelab.engine.backends.loading import demo_model_path

    return AutoTokenizer.from_pretrained(str(demo_model_path()))


TEXTS = [
    "the cat sat on the mat and the cat sat on the",
    "for x in range(10): print(x)\nfor x in range(10): print",
    "a b c d e f a b c d e f a b c d e f a b c",
    "one two three four\none two three four\none two",
    "x = 1; y = 2; x = 1; y = 2; x = 1; y",
    "\"hello\" said the man. \"hello\" said the man. \"hello\" said",
]


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("multiplier,base,allowed,last_n", [(0.8, 1.75, 2, 64), (1.0, 2.0, 1, 12), (0.5, 1.1, 3, 0)])
@pytest.mark.parametrize("breakers", [("\n", ":", "\"", "*"), (), (" said", ";")])
def test_dry(demo_vocab, demo_tokenizer, text, multiplier, base, allowed, last_n, breakers):
    history = demo_tokenizer.encode(text, add_special_tokens=False)
    vocab = len(demo_tokenizer)
    x = random_logits(7, n=vocab)
    chain = ref.Chain(ref.dry(demo_vocab, multiplier, base, allowed, last_n or len(history), list(breakers)))
    chain.accept(history)
    config = DecodingConfig(do_sample=False, dry_multiplier=multiplier, dry_base=base, dry_allowed_length=allowed,
                            dry_penalty_last_n=last_n, dry_sequence_breakers=breakers)
    got = ours(config, x, history=history, tokenizer=demo_tokenizer)[0]
    expected = chain.apply(x)["logits"]
    same(got, expected)


def test_dry_penalty_formula_on_a_known_case(demo_tokenizer):
    """a b c d a b c -> d extends a repeat of 3: penalty = 0.8 * 1.75^(3 - 2)."""
    ids = demo_tokenizer.encode(" alpha beta gamma delta", add_special_tokens=False)
    history = ids + ids[:-1]
    x = torch.zeros(len(demo_tokenizer))
    got = ours(DecodingConfig(do_sample=False, dry_multiplier=0.8, dry_allowed_length=2,
                              dry_sequence_breakers=()), x, history=history, tokenizer=demo_tokenizer)[0]
    repeat = len(ids) - 1
    assert got[ids[-1]] == pytest.approx(-0.8 * 1.75 ** (repeat - 2))
    assert int((got != 0).sum()) == 1
    assert math.isfinite(float(got.sum()))
