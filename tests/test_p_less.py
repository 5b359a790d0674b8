"""p-less sampling (Tan, Wu and Howard, ICLR 2026, arXiv 2509.23234) through the new stage seam, against the paper's
definition as the authors' reference code computes it (numpy here): keep p >= sum(p^2) of the distribution after
temperature; p-less-norm keeps p >= (V sum(p^2) - 1) / (V - 1). Then every front door: presets, --set, the
editor's field list, the trace, serve, the exports."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from decodelab.engine import DecodingConfig, generate_many
from decodelab.engine.config import ConfigError
from decodelab.engine.sampling import Sampler
from decodelab.engine.sampling.trace import StageTrace, unpack_stages

V = 400


def reference(logits: np.ndarray, temperature: float, norm: bool) -> np.ndarray:
    """The kept set of the paper's rule, in float64."""
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    collision = float((p * p).sum())
    threshold = (len(p) * collision - 1) / (len(p) - 1) if norm else collision
    return p >= threshold


def ours(configs, logits: torch.Tensor, step: int = 0) -> torch.Tensor:
    sampler = Sampler(configs, list(range(len(configs))), logits.shape[-1], prompts=torch.tensor([1, 2]), max_new=4)
    return sampler.process(logits, step)


@pytest.mark.parametrize("norm", [False, True])
@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("scale", [0.5, 2.0, 6.0])
def test_the_kept_set_is_the_papers(norm, temperature, scale):
    gen = torch.Generator().manual_seed(int(scale * 10 + temperature * 3 + norm))
    x = torch.randn(4, V, generator=gen) * scale
    config = DecodingConfig(do_sample=True, temperature=temperature, **({"p_less_norm": True} if norm else
                                                                        {"p_less": True}))
    got = ours([config] * 4, x)
    for row in range(4):
        expected = reference(x[row].numpy(), temperature, norm)
        kept = torch.isfinite(got[row]).numpy()
        mismatched = np.nonzero(kept != expected)[0]
        # float32 against float64: a token may differ only where it sits on the threshold itself
        for token in mismatched:
            z = x[row].double() / temperature
            p = torch.softmax(z, -1)
            c = float((p * p).sum())
            t = (V * c - 1) / (V - 1) if norm else c
            assert abs(float(p[token]) - t) < 1e-6, (token, float(p[token]), t)
        assert kept[int(x[row].argmax())], "the most likely token always stays"
        finite = got[row][torch.isfinite(got[row])]
        torch.testing.assert_close(finite, (x[row] / temperature)[torch.isfinite(got[row])])  # a mask, nothing more


def test_norm_keeps_at_least_as_many_as_p_less_and_a_flat_row_keeps_everything():
    x = torch.randn(1, V, generator=torch.Generator().manual_seed(3)) * 3
    plain = torch.isfinite(ours([DecodingConfig(do_sample=True, p_less=True)], x)).sum()
    relaxed = torch.isfinite(ours([DecodingConfig(do_sample=True, p_less_norm=True)], x)).sum()
    assert relaxed >= plain >= 1
    flat = torch.zeros(1, V)  # every p = 1/V = sum(p^2): float rounding must not empty the row
    for config in (DecodingConfig(do_sample=True, p_less=True), DecodingConfig(do_sample=True, p_less_norm=True)):
        assert torch.isfinite(ours([config], flat)).all()
    ties = torch.full((1, V), -30.0)
    ties[0, [5, 9]] = 4.0  # two tokens tied at the top keep each other
    assert torch.isfinite(ours([DecodingConfig(do_sample=True, p_less=True)], ties))[0].nonzero().flatten().tolist() \
        == [5, 9]


def test_bfloat16_logits_keep_the_same_tokens_as_their_float32_copy():
    x = (torch.randn(2, V, generator=torch.Generator().manual_seed(8)) * 4).to(torch.bfloat16)
    config = DecodingConfig(do_sample=True, p_less=True)
    assert torch.equal(torch.isfinite(ours([config] * 2, x)), torch.isfinite(ours([config] * 2, x.float())))


def test_rows_mix_with_others_and_a_greedy_row_is_untouched():
    x = torch.randn(3, V, generator=torch.Generator().manual_seed(1)) * 3
    configs = [DecodingConfig(do_sample=True, p_less=True), DecodingConfig(), DecodingConfig(do_sample=True, top_k=5)]
    together = ours(configs, x)
    for row, config in enumerate(configs):
        assert torch.equal(ours([config], x[row: row + 1])[0], together[row])
    assert torch.equal(together[1], x[1])  # greedy: p-less is a warper, as in HF


def test_sampled_tokens_follow_the_truncated_distribution():
    x = torch.randn(V, generator=torch.Generator().manual_seed(5)) * 2
    config = DecodingConfig(do_sample=True, p_less=True)
    n = 3000
    sampler = Sampler([config] * n, list(range(n)), V)
    processed = sampler.process(x.expand(n, V), 0)
    draws = torch.cat([sampler.pick(processed, step) for step in range(4)])
    keep = torch.from_numpy(reference(x.numpy(), 1.0, False))
    expected = torch.where(keep, torch.softmax(x.double(), -1), 0)
    expected /= expected.sum()
    observed = torch.bincount(draws, minlength=V).double() / draws.numel()
    assert observed[~keep].sum() == 0 and 0.5 * (observed - expected).abs().sum() < 0.03


def test_both_switches_at_once_are_refused_and_the_text_parsers_read_them():
    with pytest.raises(ConfigError, match="set one of p_less and p_less_norm"):
        DecodingConfig(p_less=True, p_less_norm=True)
    from decodelab.cli.common import parse_set
    from decodelab.engine.library.presets import dumps_preset, loads_preset

    assert parse_set(["p_less=true"]) == {"p_less": True}
    config = DecodingConfig(name="pl", do_sample=True, p_less_norm=True)
    assert loads_preset(dumps_preset(config)).p_less_norm is True
    assert "p-less-norm" in config.summary()


def test_the_stage_trace_names_it_and_runs_show_it(demo):
    x = torch.randn(1, V, generator=torch.Generator().manual_seed(2)) * 3
    config = DecodingConfig(do_sample=True, temperature=0.8, p_less=True, seed=1)
    sampler = Sampler([config], [1], V)
    trace = StageTrace(x)
    processed = sampler.process(x, 0, trace)
    tokens = sampler.pick(processed, 0)
    (stages,) = [unpack_stages(r, trace.names, sampler.active[0]) for r in trace.pack(tokens, x.topk(5).indices).tolist()]
    assert [s.stage for s in stages] == ["raw", "temperature", "p_less"]
    assert stages[-1].kept == int(torch.isfinite(processed).sum())
    run = generate_many(demo, "The for statement", [config.replace(max_new_tokens=6)], trace_stages=True)[0]
    assert all(step.stages[-1].stage == "p_less" for step in run.steps)


def test_serve_takes_p_less_and_the_exports_say_no_peer_has_it(server):
    import httpx

    from decodelab.engine.dialects import EXPORTERS

    body = {"prompt": "The for statement", "max_tokens": 4, "seed": 3, "temperature": 0.9, "p_less": True}
    r = httpx.post(f"{server.url}/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    local = generate_many(server.model, "The for statement",
                          [DecodingConfig(do_sample=True, temperature=0.9, seed=3, p_less=True, max_new_tokens=4)])[0]
    assert r.json()["choices"][0]["text"] == local.text
    bad = httpx.post(f"{server.url}/completions", json={**body, "p_less_norm": True}, timeout=60)
    assert bad.status_code == 400 and "p_less" in json.dumps(bad.json())
    for export in EXPORTERS.values():
        notes = " ".join(export(DecodingConfig(do_sample=True, p_less=True)).notes)
        assert "p_less=True is NOT carried over" in notes and "has shipped p-less yet" in notes


from serving import server  # noqa: E402,F401 - the serve fixture, on both engines
