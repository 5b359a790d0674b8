"""Issue 35: serve takes every field its peers take, refuses out loud what it cannot honour, and speaks the
Responses API and Prometheus. Every test runs on both engines (the server fixture: the demo model on
transformers, and its GGUF on llama.cpp), with the official openai SDK or raw httpx."""

from __future__ import annotations

import json
import math
import threading

import httpx
import jsonschema
import openai
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from decodelab.engine import DecodingConfig, generate_many
from decodelab.engine.config import ConfigError
from decodelab.server import Server
from decodelab.server.app import Limits
from serving import PROMPT, client, demo, error_of, server, wait_idle  # noqa: F401 - fixtures

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 99}}, "required": ["n"]}


def complete(server, **body) -> httpx.Response:
    return httpx.post(f"{server.url}/completions", json={"prompt": PROMPT, "max_tokens": 8, **body}, timeout=60)


def refused(r: httpx.Response, param: str, *words: str) -> dict:
    """The 400 in OpenAI's shape, naming the field; its message holds every word."""
    assert r.status_code == 400, r.text
    error = error_of(r)
    assert error["param"] == param and error["type"] == "invalid_request_error", error
    for word in words:
        assert word in error["message"], error["message"]
    return error


# -- 1-4: silent before, now refused or honoured --------------------------------------------------------------

def test_a_regex_the_matcher_gives_up_on_is_a_400_with_its_reason(server):
    error = refused(complete(server, guided_regex="a{1000000}"), "guided_regex", "regex", "llguidance gave up")
    assert "lexer" in error["message"]  # llguidance's own reason


class GivesUp:
    """An llguidance matcher that gives up after `after` tokens, as one out of fuel does (the real a{1000000} fails
    already on the first token, which the preflight catches)."""

    def __init__(self, real, after: int):
        self.real, self.after, self.taken = real, after, 0

    def __getattr__(self, name):
        return getattr(self.real, name)

    def consume_token(self, token: int) -> bool:
        self.taken += 1
        return self.real.consume_token(token) if self.taken <= self.after else False

    def is_error(self) -> bool:
        return self.taken > self.after

    def get_error(self) -> str:
        return "step lexer fuel exhausted" if self.taken > self.after else ""


@pytest.fixture
def matcher_gives_up(monkeypatch):
    from decodelab.engine.sampling import constraints

    real = constraints.matcher
    monkeypatch.setattr(constraints, "matcher", lambda *a: GivesUp(real(*a), 3))


def test_a_constraint_given_up_mid_run_fails_the_request_naming_it(server, matcher_gives_up):
    r = complete(server, guided_regex="[a-z ]{200}", max_tokens=10, temperature=0)
    assert r.status_code == 500, r.text
    message = error_of(r)["message"]
    assert "regex constraint could not be enforced" in message and "output token 4" in message
    assert "fuel exhausted" in message
    assert wait_idle(server)
    assert complete(server, max_tokens=3).status_code == 200  # the server goes on
    with httpx.stream("POST", f"{server.url}/completions", json={"prompt": PROMPT, "max_tokens": 10, "stream": True,
                                                                 "guided_regex": "[a-z ]{200}"}, timeout=60) as s:
        events = [line for line in s.iter_lines() if line.startswith("data: {")]
    last = json.loads(events[-1][6:])
    assert "regex constraint could not be enforced" in last["error"]["message"]
    assert not any(json.loads(e[6:]).get("choices", [{}])[0].get("finish_reason") for e in events[:-1])


def test_a_constraint_given_up_mid_run_fails_a_local_run(demo, matcher_gives_up):
    with pytest.raises(ConfigError, match="regex constraint could not be enforced") as caught:
        generate_many(demo, PROMPT, [DecodingConfig(regex="[a-z ]{200}", max_new_tokens=10, do_sample=False)])
    assert caught.value.field == "regex"


def test_llama_cpp_s_response_format_shape_is_honoured(server):
    r = complete(server, max_tokens=30, temperature=0, response_format={"type": "json_schema", "schema": SCHEMA})
    assert r.status_code == 200, r.text
    jsonschema.validate(json.loads(r.json()["choices"][0]["text"]), SCHEMA)


@pytest.mark.parametrize("form, param", [
    ({"type": "json_object", "foo": 1}, "response_format.foo"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA, "strictly": True}},
     "response_format.json_schema.strictly"),
])
def test_an_unknown_key_in_response_format_gets_openai_s_400(server, form, param):
    error = refused(complete(server, response_format=form), param, f"Unknown parameter: '{param}'.")
    assert error["code"] == "unknown_parameter"


@pytest.mark.parametrize("body, param", [
    ({"guided_choice": []}, "guided_choice"), ({"guided_regex": ""}, "guided_regex"),
    ({"structured_outputs": {"choice": []}}, "structured_outputs"), ({"grammar": ""}, "grammar"),
])
def test_an_empty_constraint_is_a_400_not_an_unconstrained_run(server, body, param):
    refused(complete(server, **body), param, "empty", "nothing would constrain")


@pytest.mark.parametrize("bias, words, code", [
    (101, "Expected a value <= 100, but got 101 instead.", "decimal_above_max_value"),
    (-1e6, "Expected a value >= -100, but got -1e+06 instead.", "decimal_below_min_value"),
])
def test_logit_bias_is_bounded_as_openai_bounds_it(server, client, bias, words, code):
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="demo", prompt=PROMPT, max_tokens=2, logit_bias={"5": bias})
    error = caught.value.body
    assert error["param"] == "logit_bias.5" and words in error["message"] and error["code"] == code
    assert complete(server, logit_bias={"5": -100}, max_tokens=2).status_code == 200
    assert complete(server, logit_bias={"5": "-inf"}, max_tokens=2).status_code == 200


# -- 5: the peers' fields -------------------------------------------------------------------------------------

def _eos(server) -> int:
    return server.model.runner.eos_ids()[0]


def test_ignore_eos_forbids_the_end_as_llama_cpp_does(server):
    """llama.cpp's ignore_eos sets every end token's logit to -inf: the same as banning it through logit_bias."""
    eos = str(_eos(server))
    ends_at_once = complete(server, max_tokens=12, temperature=0, logit_bias={eos: 100}).json()
    assert ends_at_once["usage"]["completion_tokens"] == 1
    body = {"max_tokens": 12, "temperature": 0, "seed": 4}
    ignored = complete(server, ignore_eos=True, **body).json()["choices"][0]
    banned = complete(server, logit_bias={eos: "-inf"}, **body).json()["choices"][0]
    assert ignored["finish_reason"] == "length" and ignored["text"] == banned["text"]
    forced = complete(server, ignore_eos=True, max_tokens=12, temperature=0, logit_bias={eos: 100}).json()
    assert forced["usage"]["completion_tokens"] == 12  # even a +100 end cannot end it


def test_stop_token_ids_stop_on_the_token_and_keep_it(server, demo):
    plain = complete(server, max_tokens=12, temperature=0, logprobs=0).json()["choices"][0]
    local = generate_many(demo, PROMPT, [DecodingConfig(max_new_tokens=12, do_sample=False)])[0]
    assert plain["text"] == local.text
    stop_at = local.token_ids[3]
    first = local.token_ids.index(stop_at)  # the first time it comes
    stopped = complete(server, max_tokens=12, temperature=0, stop_token_ids=[stop_at]).json()
    choice = stopped["choices"][0]
    assert choice["finish_reason"] == "stop" and stopped["usage"]["completion_tokens"] == first + 1
    assert choice["text"] == demo.tokenizer.decode(local.token_ids[: first + 1])
    refused(complete(server, stop_token_ids=[10**7]), "stop_token_ids", "outside this model's vocabulary")


def test_min_new_tokens_is_hf_s_name_for_min_tokens(server):
    eos = str(_eos(server))
    for name in ("min_new_tokens", "min_tokens"):
        r = complete(server, max_tokens=12, temperature=0, logit_bias={eos: 100}, **{name: 5}).json()
        assert r["usage"]["completion_tokens"] == 6, name  # 5 tokens held, then the end
    refused(complete(server, min_new_tokens=2, min_tokens=2), "min_tokens", "same setting")


def test_best_of_returns_the_n_best_candidates_by_summed_logprob(server, client):
    every = client.completions.create(model="demo", prompt=PROMPT, max_tokens=6, n=4, seed=11, logprobs=0,
                                      temperature=1)
    sums = sorted((sum(c.logprobs.token_logprobs), c.text) for c in every.choices)[::-1]
    best = client.completions.create(model="demo", prompt=PROMPT, max_tokens=6, n=2, seed=11, logprobs=0,
                                     temperature=1, extra_body={"best_of": 4})
    assert [c.text for c in best.choices] == [text for _, text in sums[:2]]
    assert [c.index for c in best.choices] == [0, 1]
    assert best.usage.completion_tokens == every.usage.completion_tokens  # every candidate counted
    refused(complete(server, best_of=2, n=3), "best_of", "at least n=3")
    refused(complete(server, best_of=2, stream=True), "best_of", "cannot be streamed")


def test_echo_with_logprobs_gives_the_prompt_s_own_logprobs(server, client, demo):
    r = client.completions.create(model="demo", prompt=PROMPT, max_tokens=3, temperature=0, echo=True, logprobs=2)
    lp = r.choices[0].logprobs
    ids = demo.tokenizer(PROMPT)["input_ids"]
    assert r.choices[0].text.startswith(PROMPT) and "".join(lp.tokens) == r.choices[0].text
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert len(lp.tokens) == len(ids) + 3 and lp.text_offset[0] == 0
    prompt_lps = lp.token_logprobs[1: len(ids)]
    # the reference: the model's own log-softmax over the prompt, one teacher-forced pass (HF's forward itself on
    # the transformers engine; llama.cpp's scratch context on the other)
    if server.engine == "transformers":
        with torch.no_grad():
            logits = demo.model(torch.tensor([ids])).logits[0].float()
    else:
        logits = demo.runner.score(torch.tensor(ids), len(ids)).float()
    want = torch.log_softmax(logits, -1)[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].tolist()
    assert all(math.isclose(a, b, abs_tol=1e-3) for a, b in zip(prompt_lps, want)), (prompt_lps, want)
    assert all(len(t) == 2 for t in lp.top_logprobs[1:])
    refused(complete(server, echo=True, logprobs=1, stream=True), "echo", "not streamed")


# -- 6-9: auth, limits, words -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keyed(server):
    keyed = Server(server.model, port=0, api_key="s3cret", model_name="demo", header_timeout=2.0,
                   max_queue=0, limits=Limits(max_rows=1)).start()
    yield keyed
    keyed.stop()


@pytest.mark.parametrize("headers, status", [
    ({"X-Api-Key": "s3cret"}, 200), ({"Authorization": "Bearer s3cret"}, 200), ({"X-Api-Key": "wrong"}, 401),
    ({}, 401), ({"Authorization": "Bearer s3cret", "X-Api-Key": "wrong"}, 401),
])
def test_x_api_key_is_held_to_the_same_key(keyed, headers, status):
    r = httpx.post(f"{keyed.url}/completions", json={"prompt": PROMPT, "max_tokens": 2}, headers=headers, timeout=30)
    assert r.status_code == status, r.text
    if status == 401:
        assert error_of(r)["code"] == "invalid_api_key" and "X-Api-Key" in error_of(r)["message"]
    models = httpx.get(f"{keyed.url}/models", headers=headers, timeout=30)
    assert models.status_code == status


def test_every_fresh_connection_sees_the_413_of_a_10_mb_body(server):
    body = b'{"prompt": "' + b"x" * (10 * 2**20) + b'"}'
    codes = []
    for _ in range(10):
        with httpx.Client() as fresh:  # a new connection each time
            r = fresh.post(f"{server.url}/completions", content=body, headers={"content-type": "application/json"},
                           timeout=30)
            codes.append((r.status_code, error_of(r)["code"]))
    assert codes == [(413, "request_too_large")] * 10


def test_the_429_counts_what_runs_and_waits_and_gives_the_limit(keyed):
    headers = {"X-Api-Key": "s3cret"}
    started = threading.Event()

    def long_one():
        with httpx.stream("POST", f"{keyed.url}/completions", headers=headers, timeout=60,
                          json={"prompt": PROMPT, "max_tokens": 400, "stream": True, "ignore_eos": True}) as s:
            for _ in s.iter_lines():
                started.set()

    thread = threading.Thread(target=long_one)
    thread.start()
    assert started.wait(30)
    r = httpx.post(f"{keyed.url}/completions", json={"prompt": PROMPT, "max_tokens": 2}, headers=headers, timeout=30)
    thread.join(60)
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    message = error_of(r)["message"]
    assert "1 request(s) decoding in 1 of 1 rows and 0 waiting" in message and "at most 0 may wait" in message


def test_a_schema_nested_too_deeply_says_how_deep_schemas_may_go(server):
    deep = '{"type": "object", "properties": {"a": ' * 450 + '{"type": "integer"}' + "}}" * 450
    body = '{"prompt": "x", "max_tokens": 2, "response_format": {"type": "json_schema", "json_schema": ' \
           '{"name": "d", "schema": ' + deep + "}}}"
    r = httpx.post(f"{server.url}/completions", content=body, headers={"content-type": "application/json"}, timeout=30)
    refused(r, "response_format", "nests more than 100 JSON levels")
    very = '{"a": ' * 900 + "1" + "}" * 900
    r = complete(server, guided_json=very)
    assert r.status_code == 400 and "100 levels" in error_of(r)["message"], r.text


# -- 10: the Responses API ----------------------------------------------------------------------------------

def test_the_responses_api_answers_as_chat_does(server, client):
    chat = client.chat.completions.create(model="demo", messages=[{"role": "system", "content": "Be brief."},
                                                                  {"role": "user", "content": PROMPT}],
                                          max_tokens=10, temperature=0)
    r = client.responses.create(model="demo", instructions="Be brief.", input=PROMPT, max_output_tokens=10,
                                temperature=0)
    assert r.object == "response" and r.output_text == chat.choices[0].message.content
    assert r.output[0].type == "message" and r.output[0].role == "assistant"
    assert r.usage.input_tokens == chat.usage.prompt_tokens and r.usage.output_tokens == chat.usage.completion_tokens
    cut = chat.choices[0].finish_reason == "length"
    assert r.status == ("incomplete" if cut else "completed")
    assert (r.incomplete_details.reason if cut else r.incomplete_details) == ("max_output_tokens" if cut else None)


def test_the_responses_api_streams_typed_events(client):
    with client.responses.stream(model="demo", input=[{"role": "user", "content": PROMPT}], max_output_tokens=10,
                                 temperature=0) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    whole = client.responses.create(model="demo", input=PROMPT, max_output_tokens=10, temperature=0)
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert final.output_text == whole.output_text


def test_the_responses_api_names_what_it_ignores(server):
    r = httpx.post(f"{server.url}/responses", json={"input": PROMPT, "max_output_tokens": 2, "store": True,
                                                    "metadata": {"a": "b"}, "truncation": "auto"}, timeout=30)
    assert r.status_code == 200 and r.headers["X-Decodelab-Ignored"] == "store, metadata, truncation"
    assert r.json()["metadata"] == {"a": "b"}


def test_the_responses_api_takes_text_format_logprobs_and_settings(client):
    r = client.responses.create(model="demo", input=PROMPT, max_output_tokens=30, temperature=0,
                                text={"format": {"type": "json_schema", "name": "n", "schema": SCHEMA,
                                                 "strict": True}})
    jsonschema.validate(json.loads(r.output_text), SCHEMA)
    r = client.responses.create(model="demo", input=PROMPT, max_output_tokens=4, top_logprobs=3,
                                extra_body={"top_k": 1})  # a decodelab setting rides along: top_k=1 is greedy
    part = r.output[0].content[0]
    assert len(part.logprobs) == 4 and all(len(t.top_logprobs) == 3 for t in part.logprobs)
    assert all(t.token == t.top_logprobs[0].token for t in part.logprobs)  # top_k=1 took the likeliest each time


@pytest.mark.parametrize("body, param, words", [
    ({"input": "x", "previous_response_id": "resp_1"}, "previous_response_id", "keeps no responses"),
    ({"input": "x", "background": True}, "background", "answers while you wait"),
    ({"input": "x", "n": 2}, "n", "chat completions field"),
    ({"input": "x", "max_tokens": 2}, "max_tokens", "max_output_tokens"),
    ({"input": [{"type": "function_call", "name": "f"}]}, "input[0].type", "message items only"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, "input[0].content[0]",
     "text-only"),
    ({"input": "x", "text": {"format": {"type": "json_schema", "name": "x", "schema": {}, "bogus": 1}}},
     "text.format.bogus", "Unknown parameter"),
    ({"input": "x", "tools": [{"type": "function", "name": "f"}]}, "tools", "text only"),
    ({}, "input", "required"),
])
def test_the_responses_api_refuses_what_it_cannot_do(server, body, param, words):
    r = httpx.post(f"{server.url}/responses", json={"max_output_tokens": 2, **body}, timeout=30)
    refused(r, param, words)


# -- 11: /metrics -------------------------------------------------------------------------------------------

def _scrape(server) -> dict[tuple[str, tuple], float]:
    text = httpx.get(server.url.removesuffix("/v1") + "/metrics", timeout=30).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_requests_tokens_and_times(server, client):
    assert wait_idle(server)
    before = _scrape(server)
    model = (("model_name", "demo"),)
    r = client.completions.create(model="demo", prompt=PROMPT, max_tokens=5, temperature=0)
    list(client.chat.completions.create(model="demo", messages=[{"role": "user", "content": PROMPT}], max_tokens=5,
                                        stream=True, temperature=0))
    httpx.get(f"{server.url}/no-such-route", timeout=30)
    after = _scrape(server)

    def grew(name, labels=model):
        return after.get((name, tuple(sorted(labels))), 0) - before.get((name, tuple(sorted(labels))), 0)

    assert grew("http_requests_total", (("handler", "/v1/completions"), ("method", "POST"), ("status", "200"))) == 1
    assert grew("http_requests_total", (("handler", "/v1/chat/completions"), ("method", "POST"),
                                        ("status", "200"))) == 1
    assert grew("http_requests_total", (("handler", "none"), ("method", "GET"), ("status", "404"))) == 1
    assert grew("decodelab:prompt_tokens_total") >= r.usage.prompt_tokens
    assert grew("decodelab:generation_tokens_total") == r.usage.completion_tokens + 5
    assert grew("decodelab:time_to_first_token_seconds_count") == 2
    assert grew("decodelab:e2e_request_latency_seconds_count") == 2
    assert grew("decodelab:request_success_total", (*model, ("finished_reason", "length"))) == 2
    for gauge in ("num_requests_running", "num_requests_waiting", "num_batch_rows", "kv_cache_usage_bytes",
                  "kv_cache_budget_bytes", "kv_cache_usage_perc"):
        assert (f"decodelab:{gauge}", model) in after


def test_metrics_show_the_running_batch(keyed):
    headers = {"X-Api-Key": "s3cret"}
    started, seen = threading.Event(), {}

    def long_one():
        with httpx.stream("POST", f"{keyed.url}/completions", headers=headers, timeout=60,
                          json={"prompt": PROMPT, "max_tokens": 300, "stream": True, "ignore_eos": True}) as s:
            for _ in s.iter_lines():
                if not started.is_set():
                    seen.update(_scrape(keyed))
                    started.set()

    thread = threading.Thread(target=long_one)
    thread.start()
    assert started.wait(30)
    thread.join(60)
    model = (("model_name", "demo"),)
    assert seen[("decodelab:num_requests_running", model)] == 1
    assert seen[("decodelab:num_batch_rows", model)] == 1
    assert seen[("decodelab:kv_cache_usage_bytes", model)] > 0


def test_a_greedy_choice_has_no_seed_whole_or_streamed(server):
    assert complete(server, temperature=0, max_tokens=2).json()["choices"][0]["seed"] is None
    assert isinstance(complete(server, temperature=1, max_tokens=2).json()["choices"][0]["seed"], int)
    with httpx.stream("POST", f"{server.url}/completions", json={"prompt": PROMPT, "max_tokens": 2, "stream": True,
                                                                 "temperature": 0}, timeout=60) as s:
        last = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: {")][-1]
    assert last["choices"][0]["finish_reason"] and last["choices"][0]["seed"] is None


@pytest.mark.parametrize("path, body, param, words", [
    ("/completions", {"structured_outputs": {}}, "structured_outputs", "names no constraint"),
    ("/completions", {"structured_outputs": {"json": None}}, "structured_outputs", "names no constraint"),
    ("/completions", {"max_tokens": 2, "max_completion_tokens": 3}, "max_completion_tokens", "same setting"),
    ("/completions", {"max_new_tokens": 3}, "max_new_tokens", "send max_tokens"),
    ("/completions", {"n_predict": 3}, "n_predict", "send max_tokens"),
    ("/completions", {"prompt_logprobs": 1}, "prompt_logprobs", "echo"),
    ("/completions", {"logit_bias": {"-1": 100}}, "logit_bias", "no token id"),
    ("/completions", {"logit_bias": {"1.5": 100}}, "logit_bias", "no token id"),
    ("/responses", {"input": "x", "max_output_tokens": 0}, "max_output_tokens", "generates nothing"),
    ("/responses", {"input": "x", "conversation": "c"}, "conversation", "keeps no"),
    ("/responses", {"input": "x", "prompt": {"id": "p"}}, "prompt", "stored prompts"),
])
def test_what_the_serve_walk_through_found_refused(server, path, body, param, words):
    """The second newcomer walk (serve): each of these ran, or was refused without saying what to send."""
    data = {"prompt": PROMPT, "max_tokens": 2, **body} if path == "/completions" else body
    if "max_completion_tokens" in body or "max_new_tokens" in body or "n_predict" in body:
        data = {k: v for k, v in data.items() if k != "max_tokens"} | body
    refused(httpx.post(f"{server.url}{path}", json=data, timeout=30), param, words)


def test_the_response_echoes_top_logprobs(client):
    r = client.responses.create(model="demo", input=PROMPT, max_output_tokens=2, top_logprobs=2)
    assert r.top_logprobs == 2


@pytest.mark.parametrize("body, words", [
    ({"xtc_threshold": 0.3}, "xtc_threshold=0.3 has no effect"),
    ({"negative_prompt": "x"}, "negative_prompt"),
    ({"do_sample": False, "temperature": 0.8}, "temperature=0.8 has no effect"),
])
def test_a_setting_that_cannot_act_is_named_in_a_header(server, body, words):
    """As `run` says on stderr: a 200 that runs, naming the setting that changed nothing and why."""
    r = complete(server, max_tokens=2, **body)
    assert r.status_code == 200 and words in r.headers["X-Decodelab-Inert"], r.headers
    assert "X-Decodelab-Inert" not in complete(server, max_tokens=2).headers


def test_max_tokens_0_with_echo_and_logprobs_scores_the_prompt(server, client):
    """The classic scoring request (the walk-through got "logprobs": null, though the 400 for max_tokens=0 advises it)."""
    r = client.completions.create(model="demo", prompt=PROMPT, max_tokens=0, echo=True, logprobs=1)
    with_one = client.completions.create(model="demo", prompt=PROMPT, max_tokens=1, echo=True, logprobs=1,
                                         temperature=0)
    choice = r.choices[0]
    assert choice.text == PROMPT and r.usage.completion_tokens == 0 and choice.finish_reason == "length"
    n = len(choice.logprobs.tokens)
    assert n >= 2 and choice.logprobs.token_logprobs[0] is None
    assert choice.logprobs.token_logprobs == with_one.choices[0].logprobs.token_logprobs[:n]
