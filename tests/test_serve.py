"""`decodelab serve` driven by the official openai SDK and by raw sockets, on 127.0.0.1 only."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import openai
import pytest

from engine import DecodingConfig, generate_many
from server import Limits, Server, exposure_warning

PROMPT = "The for statement"
PROMPTS = ["The for statement", "A function definition", "Return the number of items", "The while"]


@pytest.fixture(scope="module")
def server(demo):
    server = Server(demo, port=0, header_timeout=1.0).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)


def raw(server, data: bytes, reads: int = 1, timeout: float = 30) -> list[tuple[int, dict]]:
    """Send bytes on one connection; read `reads` JSON responses back from it."""
    host, port = server.sock.getsockname()[:2]
    out, buffer = [], b""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        while len(out) < reads:
            while b"\r\n\r\n" not in buffer:
                chunk = s.recv(65536)
                assert chunk, f"the server closed the connection after {len(out)} responses"
                buffer += chunk
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            length = int(next(v for k, v in (line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
                              if k.lower() == b"content-length"))
            while len(buffer) < length:
                buffer += s.recv(65536)
            body, buffer = buffer[:length], buffer[length:]
            out.append((int(head.split(b" ")[1]), json.loads(body)))
    return out


def post(path: str, body: bytes, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def error_of(response: httpx.Response) -> dict:
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] is None or isinstance(error["code"], str)
    return error


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
                                                 stream_options={"include_usage": True}))
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
    body = {"prompt": PROMPT, "max_tokens": 3, "stream": True}
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
    ("/v1/completions", {"prompt": PROMPT, "echo": True, "logprobs": 2}, "echo"),
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


# -- limits -----------------------------------------------------------------------------------------

def test_body_size_limit_is_413(demo):
    server = Server(demo, port=0, limits=Limits(max_body=10_000)).start()
    try:
        r = httpx.post(f"{server.url}/completions", json={"prompt": "x" * 20_000}, timeout=10)
        assert r.status_code == 413 and error_of(r)["code"] == "request_too_large"
    finally:
        server.stop()


def test_slow_headers_are_cut_off(server):
    host, port = server.sock.getsockname()[:2]
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
        assert s.recv(100) == b""  # closed after header_timeout (1 s here), not held forever


def test_full_queue_gets_429_with_retry_after_and_the_rest_complete(demo):
    server = Server(demo, port=0, max_queue=2, limits=Limits(max_rows=2)).start()
    try:
        statuses, lock = [], threading.Lock()

        def one(i):
            r = httpx.post(f"{server.url}/completions", json={"prompt": PROMPTS[i % 4], "max_tokens": 40,
                                                              "min_tokens": 40}, timeout=60)
            with lock:
                statuses.append((r.status_code, r.headers.get("retry-after"), r.json()))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        codes = sorted(s for s, _, _ in statuses)
        assert len(codes) == 12 and set(codes) <= {200, 429} and 429 in codes and 200 in codes
        assert all(retry == "1" for s, retry, _ in statuses if s == 429)
        assert all(len(body["choices"][0]["text"]) > 0 for s, _, body in statuses if s == 200)
        assert server.scheduler.queued == 0
    finally:
        server.stop()


def test_tokenizing_runs_off_the_scheduler_thread(server, client, monkeypatch):
    import server.app as app

    threads = []
    real = app.tokenize_prompt
    monkeypatch.setattr(app, "tokenize_prompt", lambda *a: threads.append(threading.current_thread()) or real(*a))
    assert server.api.tokenizer is not server.api.loaded.tokenizer  # own copies: Rust tokenizers are not shared
    client.completions.create(model="demo", prompt=PROMPT, max_tokens=2)
    assert threads and threads[0] is not server.scheduler.thread and threads[0] is not threading.main_thread()


def wait_idle(server, seconds=20):
    deadline = time.monotonic() + seconds
    while (server.scheduler.batch.groups or server.scheduler.waiting) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not server.scheduler.batch.groups


def test_a_client_that_gives_up_cancels_its_work(server):
    assert wait_idle(server)
    before = server.scheduler.forwards
    body = {"prompt": PROMPT, "max_tokens": 500, "min_tokens": 500}
    with pytest.raises(httpx.ReadTimeout):  # a non-streaming client that stops waiting
        httpx.post(f"{server.url}/completions", json=body, timeout=httpx.Timeout(10, read=0.5))
    assert wait_idle(server)
    assert server.scheduler.forwards - before < 500  # stopped long before its 500 tokens
    before = server.scheduler.forwards
    with httpx.stream("POST", f"{server.url}/completions", json=body | {"stream": True}, timeout=30) as r:
        lines = r.iter_lines()
        for _ in range(3):
            next(lines)  # a streaming client that hangs up after a few tokens
    assert wait_idle(server)
    assert server.scheduler.forwards - before < 500


# -- one batch across different prompts -------------------------------------------------------------

def test_concurrent_different_prompts_share_forward_passes_and_match_local(server, demo):
    assert wait_idle(server)
    before = server.scheduler.forwards
    results = {}

    def one(prompt):
        r = httpx.post(f"{server.url}/completions", json={"prompt": prompt, "max_tokens": 20, "temperature": 0},
                       timeout=60)
        results[prompt] = r.json()["choices"][0]["text"]

    threads = [threading.Thread(target=one, args=(p,)) for p in PROMPTS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for prompt in PROMPTS:
        assert results[prompt] == generate_many(demo, prompt, [DecodingConfig(max_new_tokens=20)])[0].text
    assert server.scheduler.forwards - before < 4 * 20 - 20  # far fewer forwards than one request at a time


def test_a_short_request_is_not_held_by_a_long_one(server):
    assert wait_idle(server)
    body = {"prompt": PROMPTS[0], "max_tokens": 300, "min_tokens": 300, "stream": True}
    long_done = threading.Event()

    def long():
        with httpx.stream("POST", f"{server.url}/completions", json=body, timeout=120) as r:
            for _ in r.iter_lines():
                pass
        long_done.set()

    thread = threading.Thread(target=long)
    thread.start()
    while not server.scheduler.batch.groups:
        time.sleep(0.01)
    short = httpx.post(f"{server.url}/completions", json={"prompt": PROMPTS[1], "max_tokens": 3}, timeout=60)
    assert short.json()["choices"][0]["finish_reason"] == "length"
    assert not long_done.is_set()  # the short one returned while the long one was still decoding
    thread.join(120)
    assert long_done.is_set()


def test_exposure_warning():
    assert exposure_warning("0.0.0.0", None) and "--serve-key" in exposure_warning("0.0.0.0", None)
    assert exposure_warning("127.0.0.1", None) is None and exposure_warning("::1", None) is None
    assert exposure_warning("0.0.0.0", "key") is None


def test_serve_warns_when_listening_beyond_loopback_without_a_key(tmp_path):
    from click.testing import CliRunner

    from cli.main import main

    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--model", str(tmp_path / "missing")])
    assert "without --serve-key" in result.output and result.exit_code != 0
    quiet = CliRunner().invoke(main, ["serve", "--model", str(tmp_path / "missing")])
    assert "without --serve-key" not in quiet.output


def test_token_id_prompts(server, client, demo):
    ids = demo.tokenizer(PROMPT)["input_ids"]
    by_ids = client.completions.create(model="demo", prompt=ids, max_tokens=5, temperature=0, echo=True)
    by_text = client.completions.create(model="demo", prompt=PROMPT, max_tokens=5, temperature=0, echo=True)
    assert by_ids.choices[0].text == by_text.choices[0].text
    r = httpx.post(f"{server.url}/completions", json={"prompt": [1, 10**7]}, timeout=10)
    assert r.status_code == 400 and error_of(r)["param"] == "prompt" and "vocabulary" in error_of(r)["message"]


def test_bounded_mixed_load_every_answer_is_json_and_the_server_recovers(demo):
    """40 requests, 10 at a time, on 127.0.0.1: good, bad, streamed, abandoned; then the server is idle and fine."""
    from concurrent.futures import ThreadPoolExecutor

    server = Server(demo, port=0, max_queue=6, limits=Limits(max_body=50_000, max_rows=8)).start()
    url = server.url

    def one(i: int):
        kind = i % 5
        if kind == 0:
            r = httpx.post(f"{url}/completions", json={"prompt": PROMPTS[i % 4], "max_tokens": 12, "n": 2}, timeout=60)
        elif kind == 1:
            r = httpx.post(f"{url}/chat/completions", json={"messages": [{"role": "user", "content": 5}]}, timeout=60)
        elif kind == 2:
            r = httpx.post(f"{url}/completions", content=b"{" + b"x" * 60_000, timeout=60)
        elif kind == 3:
            with httpx.stream("POST", f"{url}/completions", json={"prompt": PROMPTS[i % 4], "max_tokens": 200,
                                                                  "stream": True}, timeout=60) as s:
                if s.status_code == 200:
                    next(s.iter_lines())  # then hang up
                    return 200, None
                s.read()
                return s.status_code, s.json()
        else:
            r = httpx.get(f"{url}/models", timeout=60)
        return r.status_code, r.json()

    try:
        with ThreadPoolExecutor(10) as pool:
            results = list(pool.map(one, range(40)))
        assert {s for s, _ in results} <= {200, 400, 413, 429}
        for status, body in results:
            if status >= 400:
                assert set(body["error"]) == {"message", "type", "param", "code"}
        assert sum(s == 400 for s, _ in results) == 8 and sum(s == 413 for s, _ in results) == 8
        assert wait_idle(server) and server.scheduler.queued == 0 and not server.scheduler.owner
        assert httpx.get(f"{url}/models", timeout=10).status_code == 200
    finally:
        server.stop()


def test_huge_max_tokens_is_refused_even_without_a_known_context(server, monkeypatch):
    monkeypatch.setattr(type(server.api.loaded), "context_length", property(lambda self: None))
    r = httpx.post(f"{server.url}/completions", json={"prompt": PROMPT, "max_tokens": 10**9}, timeout=10)
    assert r.status_code == 400 and error_of(r)["param"] == "max_tokens"


def test_a_huge_prompt_is_refused_without_tokenizing_and_does_not_hold_others(server, client, monkeypatch):
    import server.app as app

    calls = []
    real = app.tokenize_prompt
    monkeypatch.setattr(app, "tokenize_prompt", lambda *a: calls.append(len(str(a[2]))) or real(*a))
    huge = "The for statement. " * 150_000  # 2.8 MB: hopelessly past the demo model's context
    r = httpx.post(f"{server.url}/completions", json={"prompt": huge, "max_tokens": 4}, timeout=60)
    assert r.status_code == 400 and error_of(r)["param"] == "prompt" and "characters" in error_of(r)["message"]
    assert calls == []  # refused before the tokenizer saw it
    assert client.completions.create(model="demo", prompt=PROMPT, max_tokens=2).choices[0].text
