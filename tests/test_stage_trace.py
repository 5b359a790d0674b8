"""The chain stage by stage (sampling/trace.py), the dead-settings report (experiments/stage_use.py) and the
probabilities of named tokens (logprob_tokens), checked against independent computations: HF's own
warpers applied one after another, and the model's own forward pass."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from transformers.generation.logits_process import MinPLogitsWarper, TemperatureLogitsWarper, TopKLogitsWarper

from decodelab.engine import DecodingConfig, generate_many
from decodelab.engine.config import ConfigError
from decodelab.engine.experiments.stage_use import report_dict, stage_report
from decodelab.engine.results import completion_from_dict, completion_to_dict
from decodelab.engine.sampling import Sampler
from decodelab.engine.sampling.trace import StageTrace, unpack_stages

V = 500


def traced(configs, x, k=5):
    sampler = Sampler(configs, list(range(len(configs))), V, prompts=torch.tensor([1, 2, 3]), max_new=8)
    trace = StageTrace(x)
    processed = sampler.process(x.clone(), 0, trace)
    tokens = sampler.pick(processed, 0)
    top = torch.log_softmax(x, -1).topk(k).indices
    packed = trace.pack(tokens, top).tolist()
    rows = [unpack_stages(packed[r], trace.names, sampler.active[r]) for r in range(len(configs))]
    return rows, tokens, top, processed


def test_each_stage_equals_hf_warpers_applied_one_after_another():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, V, generator=gen) * 3
    config = DecodingConfig(do_sample=True, temperature=0.7, top_k=50, min_p=0.2, seed=1)
    (stages,), tokens, top, processed = traced([config], x)
    hf = [x]
    for warper in (TemperatureLogitsWarper(0.7), TopKLogitsWarper(50), MinPLogitsWarper(0.2)):
        hf.append(warper(None, hf[-1].clone()))
    assert [s.stage for s in stages] == ["raw", "temperature", "top_k", "min_p"]
    for stage, expected in zip(stages, hf):
        logp = torch.log_softmax(expected[0], -1)
        assert stage.kept == int(torch.isfinite(expected[0]).sum())
        assert stage.logprob == pytest.approx(logp[tokens[0]].item(), abs=1e-5)
        for got, token in zip(stage.alternatives, top[0].tolist()):
            assert got == pytest.approx(logp[token].item(), abs=1e-5) or got == logp[token].item() == -math.inf
    before, after = torch.softmax(hf[2][0], -1), torch.softmax(hf[3][0], -1)
    removed = before[~torch.isfinite(hf[3][0])].sum().item()
    assert stages[3].moved == pytest.approx(removed, abs=1e-5)  # a filter moves exactly the mass it removed
    assert stages[3].moved == pytest.approx(0.5 * (before - after).abs().sum().item(), abs=1e-5)
    assert torch.equal(processed, hf[3])


def test_rows_with_their_own_order_get_their_own_stage_list():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, V, generator=gen) * 3
    configs = [DecodingConfig(do_sample=True, top_k=20, min_p=0.1),
               DecodingConfig(do_sample=True, top_k=20, min_p=0.1, sampler_order=("min_p", "top_k")),
               DecodingConfig(repetition_penalty=1.5)]
    rows, *_ = traced(configs, x)
    assert [s.stage for s in rows[0]] == ["raw", "top_k", "min_p"]
    assert [s.stage for s in rows[1]] == ["raw", "min_p", "top_k"]
    assert [s.stage for s in rows[2]] == ["raw", "penalties"]  # greedy: the warpers are not its stages


def _completion(demo, config, prompt="The capital of France is"):
    return generate_many(demo, prompt, [config], trace_stages=True)[0]


def test_report_names_a_filter_that_never_decided_and_one_that_never_cut(demo):
    before = _completion(demo, DecodingConfig(do_sample=True, top_k=40, min_p=0.3, seed=3, max_new_tokens=10))
    report = {u.stage: u for u in stage_report(before)}
    assert report["top_k"].dead and report["top_k"].cut == report["top_k"].steps
    assert "min_p=0.3 always kept fewer" in report["top_k"].note
    assert not report["min_p"].dead and report["min_p"].decided == report["min_p"].steps
    after = _completion(demo, DecodingConfig(do_sample=True, top_k=40, min_p=0.3, seed=3, max_new_tokens=10,
                                             sampler_order=("min_p", "top_k")))
    report = {u.stage: u for u in stage_report(after)}
    assert report["top_k"].dead and report["top_k"].acted == 0
    assert "never cut anything: min_p left at most" in report["top_k"].note
    assert after.token_ids == before.token_ids  # min_p's set is inside top_k's either way


def test_tracing_changes_no_token_and_round_trips_through_json(demo):
    configs = [DecodingConfig(do_sample=True, top_p=0.9, seed=5, max_new_tokens=8),
               DecodingConfig(max_new_tokens=8, repetition_penalty=1.2, logprob_tokens=(5, " the"))]
    plain = generate_many(demo, "Once upon", configs)
    traced_run = generate_many(demo, "Once upon", configs, trace_stages=True)
    assert [c.token_ids for c in plain] == [c.token_ids for c in traced_run]
    assert all(not s.stages for c in plain for s in c.steps)
    for c in traced_run:
        data = completion_to_dict(c)
        assert report_dict(c) and all("stages" in t for t in data["tokens"])
        back = completion_from_dict(data)
        assert [s.stages for s in back.steps] == [s.stages for s in c.steps]
        assert [s.named for s in back.steps] == [s.named for s in c.steps]


def test_named_tokens_carry_the_models_own_logprobs_whatever_their_rank(demo):
    tok = demo.tokenizer
    names = (" the", 7, " of")
    ids = [tok.encode(" the", add_special_tokens=False)[0], 7, tok.encode(" of", add_special_tokens=False)[0]]
    c = generate_many(demo, "The capital of France is", [DecodingConfig(max_new_tokens=6, top_k=3, do_sample=True,
                                                                      seed=2, logprob_tokens=names)])[0]
    prompt = tok("The capital of France is", return_tensors="pt")["input_ids"][0].tolist()
    with torch.no_grad():
        logits = demo.model(torch.tensor([prompt + c.token_ids])).logits[0].float()
    for i, step in enumerate(c.steps):
        logp = torch.log_softmax(logits[len(prompt) - 1 + i], -1)
        assert [a.token_id for a in step.named] == ids
        for a in step.named:
            assert a.logprob == pytest.approx(logp[a.token_id].item(), abs=1e-4)
        kept = {a.token_id for a in step.top if a.logprob_processed > -math.inf}
        for a in step.named:  # processed: -inf exactly when top_k=3 cut the token
            assert (a.logprob_processed > -math.inf) == (a.token_id in kept or a.token_id == step.token_id)


def test_a_named_text_of_several_tokens_is_refused_with_its_tokens(demo):
    with pytest.raises(ConfigError, match="logprob_tokens entry 'unbelievably' is"):
        generate_many(demo, "Hi", [DecodingConfig(max_new_tokens=2, logprob_tokens=("unbelievably",))])
    with pytest.raises(ConfigError, match="must be a token id >= 0 or a non-empty text"):
        DecodingConfig(logprob_tokens=("",))


def test_run_stages_prints_the_dead_settings(tmp_path):
    out = subprocess.run([sys.executable, "-m", "decodelab", "run", "--prompt", "The sky is", "--set", "do_sample=true",
                          "--set", "top_k=40", "--set", "min_p=0.3", "--set", "max_new_tokens=6", "--seed", "1",
                          "--stages"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    flat = " ".join(out.stdout.replace("│", " ").split())  # the panel wraps lines
    assert "dead: top_k=40 cut on" in flat and "min_p=0.3 always kept fewer" in flat, flat


def test_a_reshaping_stage_after_masks_reports_the_mass_it_moved():
    """Temperature after top-k (a custom order): its input is top-k's cut, renormalised distribution."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(1, V, generator=gen) * 2
    config = DecodingConfig(do_sample=True, top_k=30, temperature=0.5, sampler_order=("top_k", "temperature"), seed=1)
    (stages,), tokens, _, _ = traced([config], x)
    cut = TopKLogitsWarper(30)(None, x.clone())
    cooled = TemperatureLogitsWarper(0.5)(None, cut.clone())
    before, after = torch.softmax(cut[0], -1), torch.softmax(cooled[0], -1)
    assert [s.stage for s in stages] == ["raw", "top_k", "temperature"]
    assert stages[2].moved == pytest.approx(0.5 * (before - after).abs().sum().item(), abs=1e-5)
    assert stages[2].kept == 30 and stages[2].logprob == pytest.approx(torch.log(after[tokens[0]]).item(), abs=1e-5)


def test_settings_that_cannot_act_are_named_with_why():
    from decodelab.engine.experiments.stage_use import inert_notes, inert_settings

    greedy = DecodingConfig(temperature=0.9, top_p=0.95, negative_prompt="x", xtc_threshold=0.2)
    found = dict(inert_settings(greedy))
    assert "greedy" in found["temperature"] and "greedy" in found["top_p"]
    assert "guidance_scale is at its default" in found["negative_prompt"]
    assert "xtc_probability is at its default" in found["xtc_threshold"]
    assert inert_notes(greedy)[0].startswith("temperature=0.9, top_p=0.95 have no effect: the config is greedy")
    assert inert_settings(DecodingConfig(do_sample=True, temperature=0.9, top_p=0.95)) == []
    assert inert_settings(DecodingConfig(do_sample=True, xtc_probability=0.5, xtc_threshold=0.7))  # above 0.5: off


def test_run_with_only_sampling_settings_samples_and_says_so():
    out = subprocess.run([sys.executable, "-m", "decodelab", "run", "--prompt", "Hi", "--set", "temperature=0.9",
                          "--set", "top_p=0.95", "--seed", "7", "--set", "max_new_tokens=3", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "do_sample=true is set" in out.stderr
    import json

    assert json.loads(out.stdout)["completions"][0]["config"]["do_sample"] is True
    greedy = subprocess.run([sys.executable, "-m", "decodelab", "run", "--prompt", "Hi", "-p", "greedy", "--set",
                             "temperature=0.9", "--set", "max_new_tokens=3"], capture_output=True, text=True,
                            timeout=300)
    assert "pane 'greedy': temperature=0.9 has no effect: the config is greedy" in greedy.stderr
