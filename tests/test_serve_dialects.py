"""Issue 21 item 10: every decodelab setting over HTTP under its llama.cpp, vLLM, HF and text-generation-webui
names, validated as everywhere else (a 400 names the field as the client sent it); /tokenize and /detokenize.
Driven with the official openai SDK (extra_body) and plain HTTP."""

from __future__ import annotations

import httpx
import pytest

from decodelab.engine import DecodingConfig, generate_many
from serving import PROMPT, client, demo, error_of, server, transformers_only  # noqa: F401 - fixtures


REPEATING = "def f(x):\n    return x\ndef f(x):\n    return"
"""A prompt that repeats itself, so DRY has something to penalise."""


def local(demo, prompt=PROMPT, **fields):
    return generate_many(demo, prompt, [DecodingConfig(max_new_tokens=8, **fields)])[0]


@pytest.mark.parametrize("sent,fields", [
    ({"repeat_penalty": 1.3, "temperature": 1.0, "seed": 9}, {"repetition_penalty": 1.3, "do_sample": True,
                                                               "seed": 9}),
    ({"top_n_sigma": 1.0, "temperature": 1.0, "seed": 3}, {"top_n_sigma": 1.0, "do_sample": True, "seed": 3}),
    ({"xtc_probability": 0.9, "xtc_threshold": 0.05, "seed": 4}, {"xtc_probability": 0.9, "xtc_threshold": 0.05,
                                                                   "do_sample": True, "seed": 4}),
    ({"dry_multiplier": 0.8, "dry_allowed_length": 1, "prompt": REPEATING},
     {"dry_multiplier": 0.8, "dry_allowed_length": 1, "prompt": REPEATING}),
    ({"mirostat_mode": 2, "mirostat_tau": 3.0, "seed": 5}, {"mirostat": 2, "mirostat_tau": 3.0, "do_sample": True,
                                                            "seed": 5}),
    ({"tfs": 0.9, "top_a": 0.1, "smoothing_factor": 0.5, "seed": 6}, {"tfs": 0.9, "top_a": 0.1,
                                                                      "smoothing_factor": 0.5, "do_sample": True,
                                                                      "seed": 6}),
    ({"guidance_scale": 2.0, "negative_prompt": "Write about dogs."}, {"guidance_scale": 2.0,
                                                                        "negative_prompt": "Write about dogs."}),
    ({"logit_bias": {"12": -100, "13": 5}}, {"logit_bias": {"12": -100.0, "13": 5.0}}),
    ({"bad_words": [" the"]}, {"banned_strings": (" the",)}),
    ({"samplers": "top_k;temperature", "top_k": 20, "seed": 7}, {"sampler_order": ("top_k", "temperature"),
                                                                 "top_k": 20, "do_sample": True, "seed": 7}),
    ({"sampler_priority": ["top_k", "temperature", "encoder_repetition_penalty"], "top_k": 20, "seed": 7},
     {"sampler_order": ("top_k", "temperature"), "top_k": 20, "do_sample": True, "seed": 7}),
    ({"repeat_last_n": -1, "repeat_penalty": 1.3, "temperature": 1.0, "seed": 9},
     {"repetition_penalty": 1.3, "do_sample": True, "seed": 9}),
    ({"adaptive_target": 0.3, "min_p": 0.05, "seed": 8}, {"adaptive_target": 0.3, "min_p": 0.05, "do_sample": True,
                                                          "seed": 8}),
])
def test_each_dialects_setting_decodes_as_the_engine_does(demo, server, client, sent, fields):
    if "guidance_scale" in sent:
        transformers_only(server, "classifier-free guidance")
    sent, fields = dict(sent), dict(fields)
    prompt = sent.pop("prompt", PROMPT)
    fields["prompt"] = fields.get("prompt", PROMPT)
    greedy = "temperature" not in sent and not fields.get("do_sample")
    body = {"temperature": 0.0} if greedy else {}
    out = client.completions.create(model="demo", prompt=prompt, max_tokens=8, extra_body={**body, **sent})
    ours = local(demo, **fields)
    assert out.choices[0].text == ours.text
    if "sampler_order" not in fields:  # the case is strong enough to show a server that dropped the setting
        plain = local(demo, **{k: v for k, v in fields.items() if k in ("do_sample", "seed", "top_k", "min_p",
                                                                        "prompt")})
        assert plain.text != ours.text


def test_nothing_is_listed_as_ignored_for_decodelabs_own_settings(server):
    r = httpx.post(f"{server.url}/completions", json={"prompt": PROMPT, "max_tokens": 2, "top_h": 0.5,
                                                      "dynatemp_range": 0.3, "temperature": 0.8, "seed": 1},
                   timeout=60)
    assert r.status_code == 200 and "x-decodelab-ignored" not in r.headers


@pytest.mark.parametrize("body,param,words", [
    ({"tfs": 1.5}, "tfs", "it must be in [0, 1]"),
    ({"mirostat_mode": 7}, "mirostat_mode", "mirostat_mode=7 is invalid"),
    ({"repeat_penalty": 0}, "repeat_penalty", "repeat_penalty=0 is invalid"),
    ({"repeat_penalty": 1.1, "repetition_penalty": 1.2}, "repeat_penalty", "same setting"),
    ({"mirostat": 2, "mirostat_mode": 1}, "mirostat_mode", "same setting"),
    ({"repeat_last_n": 0}, "repeat_last_n", "send -1 for the whole context"),
    ({"samplers": ["top_k", "warp_drive"]}, "samplers", "'warp_drive' is not a sampler"),
    ({"logit_bias": {"999999": -100}}, "logit_bias", "outside this model's vocabulary"),
    ({"dry_multiplier": 0.5, "dry_sequence_breakers": "x"}, "dry_sequence_breakers", "list"),
    ({"adaptive_target": 0.3, "mirostat": 2}, "adaptive_target", "both pick the token"),
    ({"top_aa": 0.2}, "top_aa", "top_aa"),
])
def test_a_bad_setting_is_a_400_naming_the_field_as_sent(server, body, param, words):
    r = httpx.post(f"{server.url}/completions", json={"prompt": PROMPT, "max_tokens": 2, **body}, timeout=60)
    assert r.status_code == 400, r.text
    error = error_of(r)
    assert error["param"] == param and words in error["message"], error


def test_tokenize_and_detokenize_in_llamacpps_and_vllms_shapes(demo, server):
    ids = demo.tokenizer(PROMPT)["input_ids"]
    llama = httpx.post(f"{server.url.removesuffix('/v1')}/tokenize", json={"content": PROMPT}, timeout=30).json()
    assert llama["tokens"] == ids
    vllm = httpx.post(f"{server.url}/tokenize", json={"model": "demo", "prompt": PROMPT}, timeout=30).json()
    assert vllm["tokens"] == ids and vllm["count"] == len(ids) and vllm["max_model_len"] == demo.context_length
    pieces = httpx.post(f"{server.url}/tokenize", json={"content": PROMPT, "with_pieces": True}, timeout=30).json()
    assert "".join(t["piece"] for t in pieces["tokens"]) == PROMPT and [t["id"] for t in pieces["tokens"]] == ids
    back = httpx.post(f"{server.url}/detokenize", json={"tokens": ids}, timeout=30).json()
    assert back["content"] == back["prompt"] == PROMPT
    chat = httpx.post(f"{server.url}/tokenize", json={"messages": [{"role": "user", "content": "Hi"}]}, timeout=30)
    assert chat.json()["tokens"] == demo.tokenizer("Hi")["input_ids"]  # no template: as /chat/completions reads it
    both = httpx.post(f"{server.url}/tokenize", json={"content": "a", "prompt": "b"}, timeout=30)
    assert both.status_code == 400 and error_of(both)["param"] == "prompt"
    bad = httpx.post(f"{server.url}/detokenize", json={"tokens": [10**9]}, timeout=30)
    assert bad.status_code == 400 and error_of(bad)["param"] == "tokens"
    empty = httpx.post(f"{server.url}/tokenize", json={}, timeout=30)
    assert empty.status_code == 400 and "content" in error_of(empty)["message"]


def test_n_probs_and_post_sampling_probs_as_llamacpp_asks_for_them(demo, server):
    body = {"prompt": PROMPT, "max_tokens": 4, "temperature": 0.7, "top_k": 3, "seed": 2, "n_probs": 3}
    raw = httpx.post(f"{server.url}/completions", json=body, timeout=60).json()["choices"][0]["logprobs"]
    after = httpx.post(f"{server.url}/completions", json={**body, "post_sampling_probs": True},
                       timeout=60).json()["choices"][0]["logprobs"]
    ours = generate_many(demo, PROMPT, [DecodingConfig(do_sample=True, temperature=0.7, top_k=3, seed=2,
                                                       max_new_tokens=4)])[0]
    assert len(raw["top_logprobs"][0]) == 3 and raw["tokens"] == after["tokens"]
    for step, r, a in zip(ours.steps, raw["token_logprobs"], after["token_logprobs"]):
        assert r == pytest.approx(step.logprob, abs=1e-5) and a == pytest.approx(step.logprob_processed, abs=1e-5)
    chat = httpx.post(f"{server.url}/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}],
                                                               "max_tokens": 2, "n_probs": 2}, timeout=60).json()
    assert len(chat["choices"][0]["logprobs"]["content"][0]["top_logprobs"]) == 2
    clash = httpx.post(f"{server.url}/completions", json={**body, "logprobs": 5}, timeout=60)
    assert clash.status_code == 400 and error_of(clash)["param"] == "n_probs"


def test_vllms_bad_words_ban_the_word_with_its_leading_space_too(demo, server):
    from decodelab.server.dialects import vllm_bad_words

    assert vllm_bad_words(["the", " loop"]) == ["the", " the", " loop"]
    word = generate_many(demo, PROMPT, [DecodingConfig(max_new_tokens=6)])[0].steps[0].text.strip()
    for field in ("bad_words", "banned_strings"):
        r = httpx.post(f"{server.url}/completions", json={"prompt": PROMPT, "max_tokens": 6, "temperature": 0,
                                                           field: [word]}, timeout=60)
        assert r.status_code == 200, r.text
        first = r.json()["choices"][0]["text"]
        if field == "bad_words":  # vLLM's meaning: " word" is banned as well
            assert not first.startswith(" " + word), first
