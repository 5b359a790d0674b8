"""decodelab serve on the llama.cpp engine, on SmolLM2's GGUF: the request kinds that answered 500 before the runner
seam (token-id prompts, logit_bias, bad words, DRY, /detokenize), the key/value budget, and the refusals that name the
engine. The engine-parametrized serve modules (test_serve*.py) run the rest of the protocol on both engines."""

from __future__ import annotations

import httpx
import openai
import pytest
import torch

from decodelab.engine import DecodingConfig, generate_many
from decodelab.server import Limits, Server
from serving import error_of

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def server(smollm2_llamacpp):
    server = Server(smollm2_llamacpp, port=0, header_timeout=2.0, model_name="smollm2").start()
    yield server
    server.stop()


def _complete(server, **body):
    return httpx.post(f"{server.url}/completions", json={"max_tokens": 6, "temperature": 0, **body}, timeout=120)


def test_a_token_id_prompt_decodes_as_the_local_engine(server, smollm2_llamacpp):
    ids = smollm2_llamacpp.tokenizer(PROMPT)["input_ids"]
    r = _complete(server, prompt=ids)
    assert r.status_code == 200, r.text
    local = generate_many(smollm2_llamacpp, PROMPT, [DecodingConfig(max_new_tokens=6)])[0]
    assert r.json()["choices"][0]["text"] == local.text
    bad = _complete(server, prompt=[ids[0], 10**7])
    assert bad.status_code == 400 and "10000000 is outside this model's vocabulary" in error_of(bad)["message"]


def test_logit_bias_on_completions_and_chat(server, smollm2_llamacpp):
    first = generate_many(smollm2_llamacpp, PROMPT, [DecodingConfig(max_new_tokens=1)])[0].token_ids[0]
    r = _complete(server, prompt=PROMPT, max_tokens=1, logit_bias={str(first): -100}, logprobs=1)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["logprobs"]["tokens"][0] != smollm2_llamacpp.tokenizer.decode([first])
    chat = httpx.post(f"{server.url}/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}],
                                                             "max_tokens": 3, "logit_bias": {"5": 2.0}}, timeout=120)
    assert chat.status_code == 200, chat.text
    outside = _complete(server, prompt=PROMPT, logit_bias={"999999": -100})
    assert outside.status_code == 400 and error_of(outside)["param"] == "logit_bias"
    assert "outside this model's vocabulary" in error_of(outside)["message"]


def test_bad_words_and_dry_run_and_equal_the_local_engine(server, smollm2_llamacpp):
    for sent, fields in (({"bad_words": [" Paris"]}, {"banned_strings": (" Paris",)}),
                         ({"banned_strings": [" Paris"]}, {"banned_strings": (" Paris",)}),
                         ({"dry_multiplier": 0.8, "dry_allowed_length": 1}, {"dry_multiplier": 0.8,
                                                                              "dry_allowed_length": 1})):
        r = _complete(server, prompt=PROMPT, max_tokens=12, **sent)
        assert r.status_code == 200, (sent, r.text)
        local = generate_many(smollm2_llamacpp, PROMPT, [DecodingConfig(max_new_tokens=12, **fields)])[0]
        assert r.json()["choices"][0]["text"] == local.text, sent
    assert "Paris" not in r.json()["choices"][0]["text"] or "dry_multiplier" in sent


def test_detokenize_and_tokenize(server, smollm2_llamacpp):
    ids = smollm2_llamacpp.tokenizer(PROMPT)["input_ids"]
    r = httpx.post(f"{server.url}/detokenize", json={"tokens": ids}, timeout=30)
    assert r.status_code == 200 and r.json()["content"] == PROMPT
    bad = httpx.post(f"{server.url}/detokenize", json={"tokens": [10**7]}, timeout=30)
    assert bad.status_code == 400 and error_of(bad)["param"] == "tokens"
    r = httpx.post(f"{server.url}/tokenize", json={"content": PROMPT}, timeout=30)
    assert r.status_code == 200 and r.json()["tokens"] == ids


def test_beams_and_guidance_are_a_400_naming_the_engine(server):
    for body, param in (({"num_beams": 2}, "num_beams"), ({"guidance_scale": 1.5}, "guidance_scale")):
        r = _complete(server, prompt=PROMPT, **body)
        assert r.status_code == 400 and error_of(r)["param"] == param
        assert "llama.cpp engine" in error_of(r)["message"]


def test_the_openai_sdk_streams_chat(server):
    client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
    stream = client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Say hi"}],
                                            max_tokens=5, stream=True, seed=3, temperature=0.8, logprobs=True,
                                            top_logprobs=3, extra_body={"top_n_sigma": -1, "repeat_last_n": -1})
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert "".join(pieces)


def test_the_key_value_budget_holds_on_this_engine(smollm2_llamacpp):
    per_token = smollm2_llamacpp.runner.kv_bytes_per_token
    assert per_token == 23_040  # 30 layers x 2 x 3 KV heads x 64 x 2 bytes (F16), llama.cpp's own figure
    server = Server(smollm2_llamacpp, port=0, limits=Limits(kv_budget=int(0.001 * 2**30))).start()
    try:
        r = httpx.post(f"{server.url}/completions", json={"prompt": "Hello " * 50, "max_tokens": 300, "n": 4},
                       timeout=60)
        assert r.status_code == 400 and "key/value cache" in error_of(r)["message"]
        assert "llama.cpp engine" in error_of(r)["message"]
    finally:
        server.stop()


def test_scoring_leaves_the_running_rows_alone(smollm2_llamacpp):
    """A branch's or the agreement figures' teacher-forced scoring runs on llama.cpp's scratch context: rows that
    are decoding give the same logits with or without a score in between."""
    runner = smollm2_llamacpp.runner
    context = torch.tensor(smollm2_llamacpp.tokenizer(PROMPT)["input_ids"])
    tokens = torch.tensor([5, 6])

    def two_steps(score_between: bool) -> torch.Tensor:
        rows, _ = runner.prefill(context, 2, 2, max_new=4)
        rows.step(tokens)
        if score_between:
            runner.score(torch.tensor(smollm2_llamacpp.tokenizer("Something else entirely")["input_ids"]), 3)
        rows.step(tokens)
        return rows.logits.clone()

    assert torch.equal(two_steps(False), two_steps(True))


def test_a_branch_prefills_its_context_once(smollm2_llamacpp, monkeypatch):
    runtime = smollm2_llamacpp.runner.runtime
    calls = []
    for name in ("prefill", "score"):
        real = getattr(runtime, name)
        monkeypatch.setattr(runtime, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))
    greedy = DecodingConfig(max_new_tokens=8)
    full = generate_many(smollm2_llamacpp, PROMPT, [greedy])[0]
    calls.clear()
    branch = generate_many(smollm2_llamacpp, PROMPT, [greedy], prefix_ids=full.token_ids[:3])[0]
    assert calls == ["prefill"]  # prompt + forced tokens in one pass; their statistics come from it
    assert branch.token_ids == full.token_ids
    assert [s.logprob for s in branch.steps[:3]] == pytest.approx([s.logprob for s in full.steps[:3]], abs=1e-4)


def test_issue_35_fields_and_the_responses_api_on_smollm2(server, smollm2_llamacpp):
    """The real model through the openai SDK's Responses API (chat template and all), and the peers' fields."""
    client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
    chat = client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": PROMPT}],
                                          max_tokens=8, temperature=0)
    r = client.responses.create(model="smollm2", input=PROMPT, max_output_tokens=8, temperature=0)
    assert r.output_text == chat.choices[0].message.content and r.output_text
    with client.responses.stream(model="smollm2", input=PROMPT, max_output_tokens=8, temperature=0) as stream:
        deltas = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
    assert deltas == r.output_text
    local = generate_many(smollm2_llamacpp, PROMPT, [DecodingConfig(max_new_tokens=6, do_sample=False)])[0]
    stop_at = local.token_ids[2]
    first = local.token_ids.index(stop_at)
    stopped = _complete(server, prompt=PROMPT, stop_token_ids=[stop_at]).json()
    assert stopped["usage"]["completion_tokens"] == first + 1
    assert stopped["choices"][0]["text"] == smollm2_llamacpp.tokenizer.decode(local.token_ids[: first + 1])
    long = _complete(server, prompt=PROMPT, max_tokens=40, ignore_eos=True).json()
    assert long["usage"]["completion_tokens"] == 40
    echo = client.completions.create(model="smollm2", prompt=PROMPT, max_tokens=2, echo=True, logprobs=1)
    assert echo.choices[0].logprobs.token_logprobs[0] is None and echo.choices[0].text.startswith(PROMPT)
    assert error_of(_complete(server, prompt=PROMPT, guided_regex="a{1000000}"))["param"] == "guided_regex"
