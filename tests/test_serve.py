"""`decodelab serve` driven by the official openai SDK and by raw sockets, on 127.0.0.1 only."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from decodelab.engine import DecodingConfig, generate_many
from decodelab.server import Server, exposure_warning
from serving import PROMPT, PROMPTS, client, demo, error_of, post, raw, server  # noqa: F401 - fixtures


# -- the SDK: everything it sends that fits ---------------------------------------------------------

def test_completions_greedy_equal_the_local_engine_with_logprobs_and_usage(client, demo):
    local = generate_many(demo, PROMPT, [DecodingConfig(max_new_tokens=8)])[0]
    r = client.completions.create(model="demo", prompt=PROMPT, max_tokens=8, temperature=0, logprobs=3)
    choice = r.choices[0]
    assert choice.text == local.text and choice.finish_reason == "length"
    assert choice.logprobs.token_logprobs == pytest.approx([s.logprob for s in local.steps], abs=1e-5)
    assert all(len(top) == 3 for top in choice.logprobs.top_logprobs)
    assert r.usage.prompt_tokens == local.prompt_tokens and r.usage.completion_tokens == 8


def test_n_choices_seeds_reproduce_and_differ_per_choice(client):
    kwargs = dict(model="demo", prompt=PROMPT, max_tokens=10, temperature=1.0, seed=5, n=3)
    a = client.completions.create(**kwargs)
    b = client.completions.create(**kwargs)
    assert [c.index for c in a.choices] == [0, 1, 2]
    assert [c.text for c in a.choices] == [c.text for c in b.choices]
    assert len({c.text for c in a.choices}) > 1
    assert a.usage.completion_tokens == sum(len(c.text) > 0 for c in a.choices) * 10


def test_a_list_of_prompts_gives_choices_per_prompt_in_one_batch(client, demo):
    r = client.completions.create(model="demo", prompt=PROMPTS[:3], max_tokens=6, temperature=0, n=2)
    assert [c.index for c in r.choices] == list(range(6))
    for i, prompt in enumerate(PROMPTS[:3]):
        local = generate_many(demo, prompt, [DecodingConfig(max_new_tokens=6)])[0].text
        assert r.choices[2 * i].text == r.choices[2 * i + 1].text == local


def test_echo_and_max_tokens_zero(client, demo):
    r = client.completions.create(model="demo", prompt=PROMPT, max_tokens=4, temperature=0, echo=True)
    assert r.choices[0].text.startswith(PROMPT) and len(r.choices[0].text) > len(PROMPT)
    r = client.completions.create(model="demo", prompt=PROMPT, max_tokens=0, echo=True)
    assert r.choices[0].text == PROMPT and r.usage.completion_tokens == 0
    with pytest.raises(openai.BadRequestError) as exc:
        client.completions.create(model="demo", prompt=PROMPT, max_tokens=0)
    assert exc.value.body["param"] == "max_tokens"


def test_chat_stream_role_first_usage_last_and_text_parts(client):
    messages = [{"role": "user", "content": [{"type": "text", "text": "The for "}, {"type": "text", "text": "loop"}]}]
    chunks = list(client.chat.completions.create(model="demo", messages=messages, max_tokens=6, stream=True,
                                                 stream_options={"include_usage": True},
                                                 extra_body={"min_tokens": 6}))  # an unseeded draw may pick eos
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6
    assert [c.choices[0].finish_reason for c in chunks[:-1]][-1] == "length"
    text = "".join(c.choices[0].delta.content or "" for c in chunks[:-1])
    whole = client.chat.completions.create(model="demo", messages=messages, max_tokens=6, temperature=0)
    assert text  # sampled; the greedy one is checked below
    assert whole.choices[0].message.role == "assistant" and whole.choices[0].message.content


def test_chat_logprobs_without_top_logprobs(client):
    r = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": PROMPT}], max_tokens=5,
                                       temperature=0, logprobs=True)
    content = r.choices[0].logprobs.content
    assert len(content) == 5 and all(c.logprob <= 0 and c.top_logprobs == [] for c in content)
    assert "".join(c.token for c in content) == r.choices[0].message.content


def test_statistics_only_for_clients_that_ask(server):
    body = {"prompt": PROMPT, "max_tokens": 3, "min_tokens": 3, "stream": True}  # an unseeded draw may pick eos
    plain = httpx.post(f"{server.url}/completions", json=body, timeout=30).text
    assert '"decodelab"' not in plain and '"logprobs": null' in plain
    asked = httpx.post(f"{server.url}/completions", json=body | {"decodelab_stats": True, "logprobs": 2},
                       timeout=30).text
    records = [json.loads(line[6:]) for line in asked.splitlines() if line.startswith("data: {")]
    stats = [t for r in records for t in r["choices"][0].get("decodelab", [])]
    assert len(stats) == 3 and all(len(t["top"]) == 2 and "entropy" in t for t in stats)


# -- bad requests: 4xx JSON, and the connection stays usable ----------------------------------------

@pytest.mark.parametrize("path, body, param", [
    ("/v1/completions", {"prompt": PROMPT, "num_beams": "x"}, "num_beams"),
    ("/v1/completions", {"prompt": PROMPT, "logprobs": "abc"}, "logprobs"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "stream": True, "logprobs": True,
                              "top_logprobs": "x"}, "top_logprobs"),
    ("/v1/chat/completions", {"messages": ["hi"]}, "messages[0]"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     "messages[0].content"),
    ("/v1/completions", {"prompt": PROMPT, "max_tokens": 10**9}, "max_tokens"),
    ("/v1/completions", {"prompt": PROMPT, "top_p": 3}, "top_p"),
    ("/v1/completions", {"prompt": PROMPT, "frobnicate": 1}, "frobnicate"),
    ("/v1/completions", {"prompt": PROMPT, "best_of": 2, "n": 3}, "best_of"),
])
def test_bad_fields_get_400_naming_the_field_then_the_connection_works(server, path, body, param):
    (status, error), (status2, models) = raw(server, post(path, json.dumps(body).encode())
                                             + b"GET /v1/models?x=1 HTTP/1.1\r\nHost: x\r\n\r\n", reads=2)
    assert status == 400 and set(error["error"]) == {"message", "type", "param", "code"}
    assert error["error"]["param"] is not None and error["error"]["param"].startswith(param)
    assert status2 == 200 and models["data"][0]["id"] == "demo"


def test_a_prompt_longer_than_the_context_is_400_before_anything_streams(server, demo):
    long = " ".join(["word"] * (demo.context_length + 10))
    r = httpx.post(f"{server.url}/completions", json={"prompt": long, "stream": True}, timeout=60)
    assert r.status_code == 400 and error_of(r)["param"] == "prompt"
    assert r.headers["content-type"].startswith("application/json")


def test_leftover_bodies_after_404_do_not_poison_the_connection(server, client):
    responses = raw(server, post("/v1/embeddings", b'{"input": "' + b"x" * 5000 + b'"}')
                    + b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n", reads=2)
    assert [s for s, _ in responses] == [404, 200]
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="demo", input="x")
    assert client.models.list().data[0].id == "demo"  # the SDK reuses the same connection


def test_wrong_method_is_405_json_and_unknown_model_404(server, client):
    r = httpx.get(f"{server.url}/completions", timeout=10)
    assert r.status_code == 405 and error_of(r)["code"] == "method_not_allowed" and r.headers["allow"] == "POST"
    with pytest.raises(openai.NotFoundError) as exc:
        client.completions.create(model="gpt-4", prompt=PROMPT, max_tokens=2)
    assert exc.value.body["code"] == "model_not_found"
    assert httpx.get(f"{server.url}/models?x=1", timeout=10).status_code == 200


def test_api_key_401_keeps_the_connection_and_compares_keys(demo):
    server = Server(demo, port=0, api_key="s3cret").start()
    try:
        body = json.dumps({"prompt": PROMPT, "max_tokens": 2}).encode()
        responses = raw(server, post("/v1/completions", body, "Authorization: Bearer wrong\r\n")
                        + post("/v1/completions", body, "Authorization: Bearer s3cret\r\n"), reads=2)
        assert responses[0][0] == 401 and responses[0][1]["error"]["code"] == "invalid_api_key"
        assert responses[1][0] == 200 and responses[1][1]["choices"][0]["text"]
    finally:
        server.stop()


def test_token_id_prompts(server, client, demo):
    ids = demo.tokenizer(PROMPT)["input_ids"]
    by_ids = client.completions.create(model="demo", prompt=ids, max_tokens=5, temperature=0, echo=True)
    by_text = client.completions.create(model="demo", prompt=PROMPT, max_tokens=5, temperature=0, echo=True)
    assert by_ids.choices[0].text == by_text.choices[0].text
    r = httpx.post(f"{server.url}/completions", json={"prompt": [1, 10**7]}, timeout=10)
    assert r.status_code == 400 and error_of(r)["param"] == "prompt" and "vocabulary" in error_of(r)["message"]


def test_exposure_warning():
    assert exposure_warning("0.0.0.0", None) and "--api-key" in exposure_warning("0.0.0.0", None)
    assert exposure_warning("127.0.0.1", None) is None and exposure_warning("::1", None) is None
    assert exposure_warning("0.0.0.0", "key") is None


def test_serve_warns_when_listening_beyond_loopback_without_a_key(tmp_path):
    from click.testing import CliRunner

    from decodelab.cli.main import main

    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--model", str(tmp_path / "missing")])
    assert "without --api-key" in result.output and result.exit_code != 0
    quiet = CliRunner().invoke(main, ["serve", "--model", str(tmp_path / "missing")])
    assert "without --api-key" not in quiet.output
    keyed = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--api-key", "k", "--model", str(tmp_path / "x")])
    assert "without --api-key" not in keyed.output
    two = CliRunner().invoke(main, ["serve", "--api-key", "a", "--serve-key", "b", "--model", "demo"])
    assert two.exit_code == 2 and "two different keys" in two.output


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_serve_api_key_is_the_servers_own_key(how, tmp_path):
    """Issue 21 item 1: `serve --api-key KEY` (and DECODELAB_API_KEY) was accepted and protected nothing."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "DECODELAB_CONFIG_DIR": str(tmp_path)}
    args = [sys.executable, "-m", "decodelab", "serve", "--model", "demo", "--port", "0", "--threads", "1"]
    if how == "flag":
        args += ["--api-key", "sesame"]
    else:
        env["DECODELAB_API_KEY"] = "sesame"
    process = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        for line in process.stderr:  # "serving demo … at http://127.0.0.1:PORT/v1 (Ctrl-C stops)"
            if line.startswith("serving "):
                url = line.split(" at ")[1].split()[0]
                break
        assert url, "the server did not start"
        without = openai.OpenAI(base_url=url, api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            without.completions.create(model="demo", prompt="The for", max_tokens=2)
        assert httpx.get(f"{url}/models", timeout=10).status_code == 401  # no key at all
        keyed = openai.OpenAI(base_url=url, api_key="sesame", max_retries=0)
        assert keyed.completions.create(model="demo", prompt="The for", max_tokens=2).choices[0].text is not None
    finally:
        process.terminate()
        process.wait(30)


# -- issue 21 item 11: what OpenAI clients send -------------------------------------------------------------------

def test_openai_fields_that_change_nothing_are_ignored_and_named_in_a_header(server):
    body = {"model": "demo", "prompt": PROMPT, "max_tokens": 2, "temperature": 0, "metadata": {"a": "b"},
            "store": False, "service_tier": "auto", "reasoning_effort": "low", "tools": None, "stream": None,
            "n": None, "echo": None, "logprobs": None}
    r = httpx.post(f"{server.url}/completions", json=body, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["x-decodelab-ignored"] == "metadata, store, service_tier, reasoning_effort, tools"
    typo = httpx.post(f"{server.url}/completions", json={"prompt": PROMPT, "temprature": 0.5}, timeout=30)
    assert typo.status_code == 400 and error_of(typo)["param"] == "temprature"  # a typo is never dropped


@pytest.mark.parametrize("body, param, words", [
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", "tools are not supported"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages[0].content", "image_url content is not supported"),
    ({"messages": [{"role": "user", "content": "hi", "name": "bob"}]}, "messages[0].name", "name is not supported"),
    ({"max_tokens": True}, "max_tokens", "integer"),
])
def test_what_cannot_be_honoured_is_a_400_that_says_so(server, body, param, words):
    data = {"messages": [{"role": "user", "content": "hi"}], **body}
    r = httpx.post(f"{server.url}/chat/completions", json=data, timeout=30)
    assert r.status_code == 400 and error_of(r)["param"].startswith(param) and words in error_of(r)["message"]


def test_an_empty_body_is_a_400_not_256_tokens(server):
    r = httpx.post(f"{server.url}/completions", content=b"", timeout=30, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "empty" in error_of(r)["message"]


def test_the_developer_role_is_the_system_role(server, client):
    def answer(role):
        return client.chat.completions.create(model="demo", max_tokens=4, temperature=0, messages=[
            {"role": role, "content": "Be brief."}, {"role": "user", "content": "The for"}]).choices[0].message.content

    assert answer("developer") == answer("system")


@pytest.mark.parametrize("stream", [False, True])
def test_the_end_of_sequence_token_is_not_an_extra_logprobs_entry(client, stream):
    """Issue 21 item 12 (part): a reply that ended at eos listed the eos token as a "" entry."""
    kwargs = dict(model="demo", messages=[{"role": "user", "content": "import os"}], max_tokens=120, temperature=0,
                  logprobs=True, top_logprobs=2)
    if stream:
        chunks = list(client.chat.completions.create(stream=True, **kwargs))
        entries = [e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        reason = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason][0]
    else:
        choice = client.chat.completions.create(**kwargs).choices[0]
        entries, text, reason = choice.logprobs.content, choice.message.content, choice.finish_reason
    assert reason == "stop", "the demo model ends this reply with eos"
    assert "".join(e.token for e in entries) == text and entries[-1].token != ""


def test_a_token_that_holds_part_of_a_character_has_its_bytes_in_chat_logprobs(demo):
    """Issue 21 item 12: such a token came back as token "" with bytes []."""
    from decodelab.engine.decoding.token_bytes import BYTE_DECODER, TokenBytes
    from decodelab.engine.results import Alternative, TokenStep
    from decodelab.server.responses import logprobs

    tok = demo.tokenizer
    alphabet = {b: c for c, b in BYTE_DECODER.items()}
    lead, middle = (tok.convert_tokens_to_ids(alphabet[b]) for b in "’".encode()[:2])
    steps = [TokenStep(lead, "", -1.0, -1.0, 0, 1.0, 1.0, (Alternative(middle, "", -2.0, -2.0),)),
             TokenStep(middle, "", -1.0, -1.0, 0, 1.0, 1.0)]
    content = logprobs(steps, 1, chat=True, bytes_of=TokenBytes(tok))["content"]
    assert [e["bytes"] for e in content] == [[0xE2], [0x80]] and [e["token"] for e in content] == ["", ""]
    assert content[0]["top_logprobs"][0]["bytes"] == [0x80]
    plain = logprobs(steps[:1], 1, chat=True)["content"]  # without the tokenizer, as before: nothing to give
    assert plain[0]["bytes"] == []
