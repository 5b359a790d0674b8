"""Classifier-free guidance (guidance_scale, negative_prompt) against HF generate's own
UnbatchedClassifierFreeGuidanceLogitsProcessor: the guidance rows join the batch, and every row still
decodes as it does alone."""

from __future__ import annotations

import threading

import pytest

from decodelab.engine import DecodingConfig, generate_many
from decodelab.engine.config import ConfigError
from decodelab.engine.results import PromptError

from conftest import ARCHS

PROMPT = "The capital of France is"
NEGATIVE = "Write about dogs."


def hf_guided(loaded, prompt, scale, negative, n=10, **more):
    tok = loaded.tokenizer
    ids = tok(prompt, return_tensors="pt")
    kwargs = {"negative_prompt_ids": tok(negative, return_tensors="pt")["input_ids"]} if negative else {}
    out = loaded.model.generate(**ids, max_new_tokens=n, do_sample=False, guidance_scale=scale, pad_token_id=0,
                                eos_token_id=None, **kwargs, **more)
    return out[0, ids["input_ids"].shape[1]:].tolist()


@pytest.mark.parametrize("scale,negative", [(1.5, NEGATIVE), (3.0, NEGATIVE), (0.5, NEGATIVE), (2.0, "")])
def test_greedy_guidance_equals_hf_generate(demo, scale, negative):
    config = DecodingConfig(max_new_tokens=10, guidance_scale=scale, negative_prompt=negative)
    ours = generate_many(demo, PROMPT, [config])[0]
    assert ours.token_ids[: len(ours.token_ids)] == hf_guided(demo, PROMPT, scale, negative)[: len(ours.token_ids)]


def test_guidance_runs_before_the_repetition_penalty_as_in_hf(demo):
    config = DecodingConfig(max_new_tokens=10, guidance_scale=1.8, negative_prompt=NEGATIVE, repetition_penalty=1.3)
    ours = generate_many(demo, PROMPT, [config])[0]
    assert ours.token_ids == hf_guided(demo, PROMPT, 1.8, NEGATIVE, repetition_penalty=1.3)[: len(ours.token_ids)]


@pytest.mark.parametrize("arch", ARCHS)
def test_guidance_equals_hf_across_architectures(tiny_models, arch):
    loaded = tiny_models[arch]
    config = DecodingConfig(max_new_tokens=8, guidance_scale=2.0, negative_prompt="is not")
    generate_many(loaded, "The for statement", [DecodingConfig(max_new_tokens=2)])  # the loop learns the cache kind
    if loaded.runner.joins is False:  # sliding-window caches cannot take the guidance rows
        with pytest.raises(PromptError, match="classifier-free guidance adds rows"):
            generate_many(loaded, "The for statement", [config])
        return
    ours = generate_many(loaded, "The for statement", [config])[0]
    assert ours.token_ids == hf_guided(loaded, "The for statement", 2.0, "is not", n=8)[: len(ours.token_ids)]


def test_guided_rows_decode_alone_as_in_a_mixed_batch(demo):
    configs = [DecodingConfig(max_new_tokens=12, guidance_scale=2.0, negative_prompt=NEGATIVE),
               DecodingConfig(max_new_tokens=12),
               DecodingConfig(do_sample=True, seed=4, max_new_tokens=12, guidance_scale=1.5, negative_prompt="Cats"),
               DecodingConfig(do_sample=True, seed=5, top_p=0.9, max_new_tokens=12),
               DecodingConfig(do_sample=True, seed=4, max_new_tokens=12, guidance_scale=1.5, negative_prompt="Cats")]
    together = generate_many(demo, PROMPT, configs)
    for config, mixed in zip(configs, together):
        assert generate_many(demo, PROMPT, [config])[0].token_ids == mixed.token_ids, config.summary()
    assert together[2].token_ids == together[4].token_ids  # same seed, same guidance
    assert together[0].token_ids != together[1].token_ids  # the guidance changed something


def test_raw_logprobs_stay_the_models_own_and_a_stop_ends_the_guidance_row(demo):
    plain = generate_many(demo, PROMPT, [DecodingConfig(max_new_tokens=6)])[0]
    guided = generate_many(demo, PROMPT, [DecodingConfig(max_new_tokens=6, guidance_scale=1.01,
                                                         negative_prompt=NEGATIVE)])[0]
    if guided.token_ids[:1] == plain.token_ids[:1]:  # same context for the first token: same raw logprob
        assert guided.steps[0].logprob == pytest.approx(plain.steps[0].logprob, abs=1e-5)
    first = guided.text.strip().split()[0] if guided.text.strip() else None
    if first:
        stopped = generate_many(demo, PROMPT, [DecodingConfig(max_new_tokens=6, guidance_scale=1.01,
                                                              negative_prompt=NEGATIVE, stop_strings=(first,))])
        assert stopped[0].stop_reason == "stop_string"


def test_cancel_and_beams():
    with pytest.raises(ConfigError, match="guidance_scale"):
        DecodingConfig(num_beams=2, guidance_scale=2.0)
    with pytest.raises(ConfigError, match="guidance_scale"):
        DecodingConfig(guidance_scale=-1.0)


def test_a_cancelled_guided_run_ends(demo):
    cancel = threading.Event()
    cancel.set()
    out = generate_many(demo, PROMPT, [DecodingConfig(max_new_tokens=50, guidance_scale=2.0)], cancel=cancel)
    assert out[0].stop_reason == "cancelled" and len(out[0].token_ids) <= 1
