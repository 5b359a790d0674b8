"""The llama.cpp engine (--engine llama.cpp) on SmolLM2's GGUF file, checked against llama.cpp's own sampler.

The reference is llama-cpp-python's low-level API on a context of its own: llama.cpp's greedy sampler picks each
token from llama.cpp's own logits, and its loop stops on an end-of-generation token, as llama-server does.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from decodelab.engine import DecodingConfig, generate_many
from decodelab.engine.backends.base import Part, generate_parts
from decodelab.engine.decoding.run import encode_prompt
from decodelab.engine.results import PromptError

pytest.importorskip("llama_cpp")

from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

PROMPTS = {"plain": ("The best way to learn a new language is", False),
           "chat": ("What is the capital of France? Answer in one short sentence.", True)}


def chat(loaded, on: bool):
    return dataclasses.replace(loaded, spec=dataclasses.replace(loaded.spec, chat=on))


def llama_cpp_greedy(path, prompt_ids: list[int], n: int) -> tuple[list[int], list[float]]:
    """llama.cpp's own greedy decoding (llama_sampler_init_greedy on its logits; F16 cache and flash attention, as
    llama-server runs on a CPU),
    stopping on an end-of-generation token; with each chosen token's log-probability."""
    import llama_cpp as L

    from decodelab.engine.experiments.peers import last_logits, open_gguf

    llm = open_gguf(path, n_ctx=512, n_threads=1, f32_kv=False, flash_attn=True)
    sampler = L.llama_sampler_init_greedy()
    ids, logprobs = [], []
    llm.eval(list(prompt_ids))
    for _ in range(n):
        token = L.llama_sampler_sample(sampler, llm._ctx.ctx, -1)
        logits = torch.from_numpy(last_logits(llm))
        logprobs.append(float(torch.log_softmax(logits, -1)[token]))
        ids.append(token)
        if L.llama_vocab_is_eog(llm._model.vocab, token):
            break
        llm.eval([token])
    L.llama_sampler_free(sampler)
    return ids, logprobs


@pytest.mark.parametrize("name", sorted(PROMPTS))
def test_greedy_equals_llama_cpps_own_greedy(smollm2_llamacpp, name):
    prompt, on = PROMPTS[name]
    loaded = chat(smollm2_llamacpp, on)
    ours = generate_many(loaded, prompt, [DecodingConfig(max_new_tokens=48)])[0]
    theirs, logprobs = llama_cpp_greedy(loaded.source, encode_prompt(loaded, prompt).tolist(), 48)
    assert [s.token_id for s in ours.steps] == theirs
    assert [s.logprob for s in ours.steps] == pytest.approx(logprobs, abs=1e-4)  # the model's own probabilities
    if on:
        assert ours.stop_reason == "eos" and ours.steps[-1].token_id in loaded.runner.eos_ids()


def test_seeds_reproduce_alone_in_a_batch_and_again(smollm2_llamacpp):
    sampled = DecodingConfig(name="s", do_sample=True, temperature=1.0, top_p=0.95, seed=11, max_new_tokens=32,
                             min_new_tokens=32)
    others = [DecodingConfig(name=f"o{i}", do_sample=True, temperature=0.7 + 0.1 * i, top_k=20 + i, seed=i,
                             max_new_tokens=32) for i in range(7)]
    prompt = "Once upon a time"
    alone = generate_many(smollm2_llamacpp, prompt, [sampled])[0]
    together = generate_many(smollm2_llamacpp, prompt, others[:3] + [sampled] + others[3:])[3]
    again = generate_many(smollm2_llamacpp, prompt, [sampled])[0]
    ids = [s.token_id for s in alone.steps]
    assert len(ids) == 32 and len(set(ids)) > 8
    assert [s.token_id for s in together.steps] == ids == [s.token_id for s in again.steps]
    # llama.cpp's CPU rows do not depend on the batch: the same logits alone and among 8 rows (no padding needed)
    assert [s.logprob for s in together.steps] == [s.logprob for s in alone.steps]


def test_every_statistic_and_feature_works_unchanged(smollm2_llamacpp):
    loaded = smollm2_llamacpp
    stop = DecodingConfig(name="stop", max_new_tokens=40, stop_strings=["."])
    top = DecodingConfig(name="top", max_new_tokens=6, top_k=5, do_sample=True, seed=1, logprob_tokens=[" the"])
    prompt = "The best way to learn a new language is"
    out = generate_many(loaded, prompt, [stop, top], top_alternatives=5, trace_stages=True)
    assert out[0].stop_reason == "stop_string" and len(out[0].steps) > 3 and "." not in out[0].text
    step = out[1].steps[0]
    assert len(step.top) == 5 and step.stages  # alternatives and the stage trace
    assert math.isclose(sum(math.exp(a.logprob) for a in step.top[:5]), 1.0, abs_tol=0.5)
    assert 0 <= step.rank < 5 and step.entropy > 0
    # a branch: forced tokens replayed with their statistics (the scoring context), then decoding goes on
    forced = out[0].steps[0].token_id, out[0].steps[1].token_id
    branched = loaded.generate(prompt, [DecodingConfig(max_new_tokens=3)], prefix_ids=forced)[0]
    assert [s.token_id for s in branched.steps[:2]] == list(forced)
    assert [s.logprob for s in branched.steps[:2]] == pytest.approx([s.logprob for s in out[0].steps[:2]], abs=1e-4)
    assert [s.token_id for s in branched.steps] == [s.token_id for s in out[0].steps[:3]]


def test_several_prompts_run_one_after_another(smollm2_llamacpp):
    greedy = DecodingConfig(max_new_tokens=6)
    parts = [Part("Paris is", [greedy]), Part("Rome is", [greedy, greedy.replace(name="b")])]
    both = generate_parts(smollm2_llamacpp, parts)
    assert [c.text for c in both[0]] == [c.text for c in generate_many(smollm2_llamacpp, "Paris is", [greedy])]
    assert both[1][0].text == both[1][1].text == generate_many(smollm2_llamacpp, "Rome is", [greedy])[0].text


def test_what_the_engine_cannot_do_is_said(smollm2_llamacpp, tmp_path):
    from decodelab.engine.backends.loading import ModelLoadError, ModelSpec, load_model

    with pytest.raises(PromptError, match="beam search .* not available on the llama.cpp engine: beam search runs through transformers"):
        generate_many(smollm2_llamacpp, "Hi", [DecodingConfig(num_beams=2, max_new_tokens=4)])
    with pytest.raises(ModelLoadError, match="llama.cpp engine runs GGUF files"):
        load_model(ModelSpec(path="demo", engine="llama.cpp"))
    from decodelab.engine.config import ConfigError

    with pytest.raises(ConfigError, match="keeps its own quantization"):
        ModelSpec(path="smollm2", engine="llama.cpp", quantization="4bit")
    with pytest.raises(ConfigError, match="dtype=bfloat16 .* is for the transformers engine"):
        ModelSpec(path="smollm2", engine="llama.cpp", dtype="bfloat16")
    with pytest.raises(PromptError, match="guidance .* the llama.cpp engine"):
        generate_many(smollm2_llamacpp, "Hi", [DecodingConfig(guidance_scale=1.5, max_new_tokens=4)])
    assert "Q4_1 GGUF on llama.cpp" in smollm2_llamacpp.describe()


def test_a_gguf_of_its_own_runs_and_its_tokenizer_is_cached_not_listed(tmp_path, monkeypatch):
    """The demo model written as GGUF, on the llama.cpp engine: its tokenizer is read out of the file once and kept
    in the cache (not listed as a model), and greedy equals llama.cpp's own greedy on that file too."""
    import importlib.util

    from decodelab.engine.backends.gguf import list_converted, tokenizer_folder
    from decodelab.engine.backends.loading import ModelSpec, load_model

    monkeypatch.setenv("DECODELAB_CACHE_DIR", str(tmp_path / "cache"))
    spec = importlib.util.spec_from_file_location("demo_to_gguf", ROOT / "scripts" / "demo_to_gguf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from decodelab.engine.backends.loading import demo_model_path

    path = module.write_gguf(demo_model_path(), tmp_path / "demo.gguf")
    loaded = load_model(ModelSpec(path=str(path), engine="llama.cpp"))
    folder = tokenizer_folder(path)
    assert folder.is_dir() and tokenizer_folder(path) == folder and list_converted() == []
    out = generate_many(loaded, "The for statement", [DecodingConfig(max_new_tokens=16, min_new_tokens=16)])[0]
    theirs, _ = llama_cpp_greedy(str(path), encode_prompt(loaded, "The for statement").tolist(), 16)
    assert [s.token_id for s in out.steps] == theirs[: len(out.steps)]
