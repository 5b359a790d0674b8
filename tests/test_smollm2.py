"""The real default model, SmolLM2-135M-Instruct: decodelab against HF generate, a fresh forward, and llama.cpp."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from decodelab.engine import DecodingConfig, generate_many
from decodelab.engine.decoding.run import encode_prompt

NEW = 48
CONFIGS = {
    "greedy": DecodingConfig(max_new_tokens=NEW),
    "repetition_penalty": DecodingConfig(max_new_tokens=NEW, repetition_penalty=1.3),
    "no_repeat_ngram": DecodingConfig(max_new_tokens=NEW, no_repeat_ngram_size=3),
    "min_new_tokens": DecodingConfig(max_new_tokens=NEW, min_new_tokens=NEW),
}
PROMPTS = {  # name -> (prompt, chat template on)
    "plain": ("The best way to learn a new language is", False),
    "chat": ("Give me three tips for staying focused while studying.", True),
}


def chat(loaded, on: bool):
    return dataclasses.replace(loaded, spec=dataclasses.replace(loaded.spec, chat=on))


@pytest.fixture(scope="module", params=sorted(PROMPTS))
def run(request, smollm2):
    """One batched run of every config on one prompt: (loaded, prompt ids, {config name: completion})."""
    prompt, on = PROMPTS[request.param]
    loaded = chat(smollm2, on)
    completions = generate_many(loaded, prompt, list(CONFIGS.values()))
    return loaded, encode_prompt(loaded, prompt), dict(zip(CONFIGS, completions))


def hf_generate(loaded, prompt_ids, config):
    eos = loaded.model.generation_config.eos_token_id
    with torch.inference_mode():
        out = loaded.model.generate(
            input_ids=prompt_ids[None, :], attention_mask=torch.ones_like(prompt_ids)[None, :], do_sample=False,
            max_new_tokens=config.max_new_tokens, min_new_tokens=config.min_new_tokens or None,
            repetition_penalty=config.repetition_penalty, no_repeat_ngram_size=config.no_repeat_ngram_size,
            pad_token_id=eos, temperature=None, top_p=None, top_k=None)
    ids = out[0, prompt_ids.numel():].tolist()
    return ids[: ids.index(eos) + 1] if eos in ids else ids


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_greedy_tokens_equal_hf_generate(run, name):
    loaded, prompt_ids, completions = run
    ours = [s.token_id for s in completions[name].steps]
    theirs = hf_generate(loaded, prompt_ids, CONFIGS[name])
    assert ours == theirs
    if name == "min_new_tokens" or completions[name].stop_reason != "eos":
        assert len(ours) >= 48


def test_logprobs_equal_a_fresh_forward(run):
    loaded, prompt_ids, completions = run
    for completion in completions.values():
        generated = [s.token_id for s in completion.steps]
        ids = torch.cat([prompt_ids, torch.tensor(generated)])[None, :]
        with torch.inference_mode():
            logits = loaded.model(input_ids=ids, use_cache=False).logits[0].float()
        expected = torch.log_softmax(logits, -1)[prompt_ids.numel() - 1 : -1].gather(1, ids[0, prompt_ids.numel():, None])
        ours = torch.tensor([s.logprob for s in completion.steps])
        assert torch.allclose(ours, expected[:, 0], atol=1e-4), (ours - expected[:, 0]).abs().max()


# Plain prompts whose greedy path has no near-tie in the first 16 tokens. llama.cpp computes in Q4_1
# with activations quantized to 8 bits, decodelab in float32 after de-quantizing, so near-ties may
# break apart (see BENCHMARKS.md for all prompts measured, including ones that diverge early).
LLAMACPP_PROMPTS = ["The capital of France is", "Water boils at", "The best way to learn a new language is",
                    "The sun is a star that"]


def test_llamacpp_agrees_on_the_same_gguf(smollm2):
    pytest.importorskip("llama_cpp")
    from decodelab.engine.backends.gguf import smollm2_file
    from decodelab.engine.experiments.peers import greedy, open_gguf

    llm = open_gguf(smollm2_file(), n_ctx=256, n_threads=2)
    for prompt in LLAMACPP_PROMPTS:
        prompt_ids = smollm2.tokenizer(prompt)["input_ids"]
        assert llm.tokenize(prompt.encode(), add_bos=False, special=False) == prompt_ids
        (c,) = generate_many(smollm2, prompt, [DecodingConfig(max_new_tokens=16)])
        theirs, logprobs = greedy(llm, prompt_ids, 16, stop={2})
        assert [s.token_id for s in c.steps] == theirs, prompt
        assert abs(c.steps[0].logprob - logprobs[0]) < 0.05, prompt
