"""The samplers of issue 20 against their references on the same logits:

- top_h: HF transformers' own TopHLogitsWarper (ties and bfloat16 logits included);
- adaptive-p: llama.cpp's own sampler (llama_sampler_init_adaptive_p, llama-cpp-python's low-level API),
  over many steps so its running average is compared too;
- tfs, top_a, smoothing (quadratic / cubic): text-generation-webui is not installable, so the reference
  is its algorithm transcribed per row in plain Python (sorted lists, scalar arithmetic), written here
  independently of the batched torch code it checks.

And in a batch: each new stage leaves the other rows exactly as they are alone, and its neutral value
is an exact no-op.
"""

from __future__ import annotations

import math

import pytest
import torch
from transformers.generation import logits_process

from decodelab.engine import DecodingConfig
from decodelab.engine.config import ConfigError
from decodelab.engine.sampling import Sampler

V = 300
NEG = float("-inf")
TopHLogitsWarper = getattr(logits_process, "TopHLogitsWarper", None)
needs_top_h = pytest.mark.skipif(TopHLogitsWarper is None, reason="this transformers has no TopHLogitsWarper")


def run(configs, logits, history=(1, 2, 3), step=0, state=None):
    """Our chain on the rows: (processed, the sampler, the sampler); pass the sampler back as state to go on."""
    if state is None:
        state = Sampler(configs, list(range(len(configs))), logits.shape[-1], prompts=torch.tensor(list(history)),
                        max_new=64)
    return state.process(logits.clone(), step), state, state


def random_rows(seed, n=6, vocab=V, scale=3.0, masked=0, bf16=False):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, vocab, generator=gen) * scale
    if bf16:
        x = x.to(torch.bfloat16).float()  # many exact ties
    if masked:
        for r in range(n):
            x[r, torch.randperm(vocab, generator=gen)[:masked]] = NEG
    return x


CASES = [random_rows(0), random_rows(1, scale=0.5), random_rows(2, scale=8.0), random_rows(3, masked=120),
         random_rows(4, vocab=2048, bf16=True), torch.tensor([[1.0, 1.0, 1.0, 0.5, 0.5, 0.0] * 50])]


def kept(x: torch.Tensor) -> list[int]:
    return torch.isfinite(x).nonzero().flatten().tolist()


def same(a, b, tol=1e-5):
    assert kept(a) == kept(b), f"kept sets differ: ours only {set(kept(a)) - set(kept(b))}, " \
                               f"reference only {set(kept(b)) - set(kept(a))}"
    keep = torch.isfinite(a)
    torch.testing.assert_close(a[keep], b[keep], rtol=tol, atol=tol)


# -- top_h against HF ---------------------------------------------------------------------------------
@needs_top_h
@pytest.mark.parametrize("h", [0.1, 0.4, 0.7, 1.0])
@pytest.mark.parametrize("index", range(len(CASES)))
def test_top_h_matches_hf(h, index):
    x = CASES[index]
    got = run([DecodingConfig(do_sample=True, top_h=h)] * x.shape[0], x)[0]
    for r in range(x.shape[0]):
        same(got[r], TopHLogitsWarper(top_h=h)(None, x[r: r + 1].clone())[0], tol=0)


@needs_top_h
def test_top_h_after_temperature_matches_hf_order():
    """HF applies temperature, then top-H, then top-k: the default chain does the same."""
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper

    x = random_rows(7, n=1)
    expected = TopKLogitsWarper(20)(None, TopHLogitsWarper(0.6)(None, TemperatureLogitsWarper(0.7)(None, x.clone())))
    got = run([DecodingConfig(do_sample=True, temperature=0.7, top_h=0.6, top_k=20)], x)[0]
    same(got[0], expected[0])


# -- text-generation-webui's samplers, transcribed per row ---------------------------------------------
def _sorted_probs(row: list[float]) -> tuple[list[int], list[float]]:
    order = sorted(range(len(row)), key=lambda i: -row[i])  # descending; stable among ties
    top = max(row)
    weights = [math.exp(row[i] - top) if row[i] != NEG else 0.0 for i in order]
    total = sum(weights)
    return order, [w / total for w in weights]


def webui_top_a(row: list[float], a: float) -> list[float]:
    _, probs = _sorted_probs(row)
    limit = probs[0] * probs[0] * a
    top = max(row)
    total = sum(math.exp(v - top) for v in row if v != NEG)
    return [v if v != NEG and math.exp(v - top) / total >= limit else NEG for v in row]


def webui_tfs(row: list[float], z: float) -> list[float]:
    order, probs = _sorted_probs(row)
    first = [probs[i + 1] - probs[i] for i in range(len(probs) - 1)]
    second = [abs(first[i + 1] - first[i]) for i in range(len(first) - 1)]
    total = sum(second)
    remove = [False]
    running = 0.0
    for value in second:
        running += value / total
        remove.append(running > z)
    remove.append(True)
    out = list(row)
    for position, token in enumerate(order):
        if remove[position]:
            out[token] = NEG
    return out


def webui_smoothing(row: list[float], factor: float, curve: float) -> list[float]:
    top = max(row)
    k, s = (3 - curve) / 2, (curve - 1) / 2
    return [v if v == NEG else -(k * factor * (v - top) ** 2) + s * factor * (v - top) ** 3 + top for v in row]


@pytest.mark.parametrize("a", [0.01, 0.2, 0.5, 1.0])
@pytest.mark.parametrize("index", range(len(CASES)))
def test_top_a_matches_the_webui(a, index):
    x = CASES[index]
    got = run([DecodingConfig(do_sample=True, top_a=a)] * x.shape[0], x)[0]
    for r in range(x.shape[0]):
        same(got[r], torch.tensor(webui_top_a(x[r].tolist(), a)))


@pytest.mark.parametrize("z", [0.3, 0.9, 0.95, 0.0])
@pytest.mark.parametrize("index", range(len(CASES)))
def test_tfs_matches_the_webui(z, index):
    """Among tied logits, which ids the cut keeps follows torch.sort's order, as in the webui (the very same
    call); the per-row reference sorts stably, so on ties only the kept values are compared."""
    x = CASES[index]
    got = run([DecodingConfig(do_sample=True, tfs=z)] * x.shape[0], x)[0]
    for r in range(x.shape[0]):
        expected = torch.tensor(webui_tfs(x[r].tolist(), z))
        if index in (4, 5):
            assert sorted(got[r][got[r].isfinite()].tolist()) == sorted(expected[expected.isfinite()].tolist())
        else:
            same(got[r], expected)


@pytest.mark.parametrize("factor,curve", [(0.1, 1.0), (0.3, 1.0), (1.0, 2.0), (0.5, 3.0), (2.0, 4.5)])
@pytest.mark.parametrize("index", range(len(CASES)))
def test_smoothing_matches_the_webui(factor, curve, index):
    x = CASES[index]
    got = run([DecodingConfig(do_sample=True, smoothing_factor=factor, smoothing_curve=curve)] * x.shape[0], x)[0]
    for r in range(x.shape[0]):
        same(got[r], torch.tensor(webui_smoothing(x[r].tolist(), factor, curve)), tol=1e-4)


# -- adaptive-p against llama.cpp ----------------------------------------------------------------------
@pytest.mark.parametrize("target,decay", [(0.3, 0.9), (0.6, 0.5), (0.05, 0.99), (0.9, 0.0)])
def test_adaptive_p_matches_llamacpp_over_many_steps(target, decay):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is installed by `make test` / CI")
    import llama_cpp as L

    from tests import llama_samplers as ref

    chain = ref.Chain(L.llama_sampler_init_adaptive_p(target, decay, 11))
    config = DecodingConfig(do_sample=True, adaptive_target=target, adaptive_decay=decay)
    state = None
    for step in range(30):
        x = random_rows(200 + step, n=1, scale=1.0 + step % 4, masked=40 if step % 5 == 0 else 0)[0]
        expected = chain.apply(x, truncated=True)
        got, _, state = run([config], x[None, :], step=step, state=state)
        same(got[0], expected["logits"], tol=1e-4)
        token = expected["selected"]
        chain.accept([token])  # llama.cpp's draw moves both running averages
        state.accept(torch.tensor([token]), got)


def test_adaptive_p_runs_after_filters_and_samples_seeded():
    x = random_rows(9, n=1)
    config = DecodingConfig(do_sample=True, min_p=0.05, adaptive_target=0.4, seed=5)
    got, settings, _ = run([config], x)
    assert kept(got[0]) == kept(run([DecodingConfig(do_sample=True, min_p=0.05)], x)[0][0])
    first = settings.pick(got, 0)
    assert torch.equal(first, settings.pick(run([config], x)[0], 0))


def test_mirostat_and_adaptive_p_together_are_refused():
    with pytest.raises(ConfigError, match="adaptive_target"):
        DecodingConfig(do_sample=True, mirostat=2, adaptive_target=0.5)


# -- in a batch ----------------------------------------------------------------------------------------
NEW = [DecodingConfig(do_sample=True, top_h=0.5), DecodingConfig(do_sample=True, tfs=0.9),
       DecodingConfig(do_sample=True, top_a=0.2), DecodingConfig(do_sample=True, smoothing_factor=0.4),
       DecodingConfig(do_sample=True, adaptive_target=0.3), DecodingConfig(do_sample=True, temperature=0.8),
       DecodingConfig(), DecodingConfig(do_sample=True, top_k=5, smoothing_factor=0.2, smoothing_curve=3)]


def test_each_row_decodes_alone_as_in_the_mixed_batch():
    x = random_rows(21, n=len(NEW))
    together = run(NEW, x)[0]
    for r, config in enumerate(NEW):
        alone = run([config], x[r: r + 1])[0][0]
        assert torch.equal(torch.isfinite(alone), torch.isfinite(together[r]))
        assert torch.equal(alone[torch.isfinite(alone)], together[r][torch.isfinite(together[r])]), config.summary()


@pytest.mark.parametrize("field,neutral", [("top_h", 0.0), ("tfs", 1.0), ("top_a", 0.0), ("smoothing_factor", 0.0),
                                           ("adaptive_target", -1.0)])
def test_neutral_values_change_nothing(field, neutral):
    x = random_rows(22, n=2)
    plain = run([DecodingConfig(do_sample=True)] * 2, x)[0]
    other = DecodingConfig(do_sample=True, **{field: {"top_h": 0.5, "tfs": 0.9, "top_a": 0.3, "smoothing_factor": 0.5,
                                                      "adaptive_target": 0.2}[field]})
    mixed = run([DecodingConfig(do_sample=True, **{field: neutral}), other], x)[0]
    assert torch.equal(mixed[0], plain[0])
    assert not torch.equal(mixed[1], plain[1])


def test_greedy_rows_ignore_the_new_warpers():
    x = random_rows(23, n=1)
    greedy = DecodingConfig(top_h=0.3, tfs=0.5, top_a=0.9, smoothing_factor=2.0, adaptive_target=0.2)
    assert torch.equal(run([greedy], x)[0], x)
