"""The remote backend against `decodelab serve` and against misbehaving servers, all on loopback."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from decodelab.engine import DecodingConfig, generate_many
from decodelab.engine.backends.loading import ModelLoadError, ModelSpec, load_model
from decodelab.engine.backends.remote import RemoteModel, request_body
from decodelab.engine.config import LLAMACPP_WHOLE
from decodelab.engine.results import GenerationError
from decodelab.server import Server

PROMPT = "The for statement"
CONFIGS = [DecodingConfig(name="greedy", max_new_tokens=10),
           DecodingConfig(name="warm", do_sample=True, temperature=0.8, top_p=0.9, seed=3, max_new_tokens=10),
           DecodingConfig(name="pen", do_sample=True, typical_p=0.9, repetition_penalty=1.2, seed=4, max_new_tokens=10)]


@pytest.fixture(scope="module")
def server(demo):
    server = Server(demo, port=0).start()
    yield server
    server.stop()


def remote_for(server, **kwargs):
    return load_model(ModelSpec(path=server.url, **kwargs))


def test_remote_equals_local_through_decodelab_serve(demo, server):
    remote = remote_for(server)
    assert remote.kind == "decodelab" and remote.name == "demo"
    events = []
    before = server.scheduler.forwards
    got = generate_many(remote, PROMPT, CONFIGS, on_step=events.append)
    want = generate_many(demo, PROMPT, CONFIGS)
    assert server.scheduler.forwards - before < 2 * 10  # the three requests shared forward passes
    for g, w in zip(got, want):
        assert g.text == w.text and g.token_ids == w.token_ids
        assert g.seed == w.seed or g.config.seed is None
        assert g.stop_reason == w.stop_reason
        assert [s.logprob for s in g.steps] == pytest.approx([s.logprob for s in w.steps], abs=1e-5)
        assert g.steps[0].top[0].token_id == w.steps[0].top[0].token_id
        assert g.extra["ignored"] == []
    assert sum(len(e.tokens) for e in events) >= 10 and any(e.finished for e in events)


def test_chat_endpoint(server):
    remote = remote_for(server, chat=True)
    out = generate_many(remote, PROMPT, [DecodingConfig(max_new_tokens=5)])[0]
    assert len(out.steps) == 5 and out.text


def test_generic_openai_client_path(server):
    """The plain OpenAI logprobs format (no decodelab extras) still gives tokens, logprobs and ranks."""
    import httpx

    body = {"prompt": PROMPT, "max_tokens": 4, "temperature": 0, "logprobs": 3, "stream": False}
    data = httpx.post(f"{server.url}/completions", json=body, timeout=30).json()
    choice = data["choices"][0]
    assert len(choice["logprobs"]["tokens"]) == 4 and choice["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == 4
    from decodelab.engine.backends.remote import _steps_from_chunk

    steps = _steps_from_chunk({k: v for k, v in choice.items() if k != "decodelab"}, chat=False)
    assert [s.rank for s in steps] == [0, 0, 0, 0] and all(s.logprob <= 0 for s in steps)
    bad = httpx.post(f"{server.url}/completions", json={"prompt": PROMPT, "top_p": 3}, timeout=30)
    assert bad.status_code == 400 and "top_p" in bad.json()["error"]["message"]


def test_each_server_kind_gets_its_own_names_and_reports_the_rest():
    spec = ModelSpec(path="http://x/v1")
    config = DecodingConfig(do_sample=True, top_k=20, min_p=0.1, typical_p=0.9, no_repeat_ngram_size=3, seed=1)
    openai = RemoteModel(spec=spec, base_url="http://x/v1", model_name="m", kind="openai")
    body = request_body(openai, PROMPT, config, 1, 10)
    assert "top_k" not in body and "min_p" not in body and body["logprobs"] == 5
    assert set(openai.unsupported(config)) == {"top_k=20", "min_p=0.1", "typical_p=0.9", "no_repeat_ngram_size=3"}
    llama = RemoteModel(spec=spec, base_url="http://x/v1", model_name="m", kind="llamacpp")
    body = request_body(llama, PROMPT, DecodingConfig(do_sample=True), 1, 10)
    assert body["top_k"] == 0 and body["min_p"] == 0.0 and body["repeat_last_n"] == LLAMACPP_WHOLE  # its defaults
    # neutralised, the whole context as a count: current llama-server refuses -1 (its schema's limit is 0)
    vllm = RemoteModel(spec=spec, base_url="http://x/v1", model_name="m", kind="vllm")
    assert request_body(vllm, PROMPT, DecodingConfig(do_sample=True), 1, 10)["top_k"] == -1
    assert vllm.unsupported(config) == ["typical_p=0.9", "no_repeat_ngram_size=3"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused():
    with pytest.raises(ModelLoadError, match="connection refused"):
        load_model(ModelSpec(path=f"http://127.0.0.1:{free_port()}/v1"))


class Fake:
    """A misbehaving OpenAI-compatible server on loopback: mode says how it misbehaves."""

    def __init__(self, mode: str):
        self.mode = mode
        self.auth: list[str | None] = []
        self.bodies: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):
                pass

            def do_GET(self):
                fake.auth.append(self.headers.get("Authorization"))
                if fake.mode == "llama-cpp-python":  # what it says with --model_alias: no .gguf name
                    self._send(200, {"object": "list", "data": [{"id": "team", "object": "model", "owned_by": "me",
                                                                 "permissions": []}]})
                else:
                    self._send(200, {"data": [{"id": "fake", "owned_by": "vllm"}]})

            def do_POST(self):
                fake.auth.append(self.headers.get("Authorization"))
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                fake.bodies.append(body)
                if self.path == "/extras/tokenize" and fake.mode == "llama-cpp-python":
                    self._send(200, {"tokens": [1]})
                elif self.path == "/extras/tokenize":
                    self._send(404, {"detail": "Not Found"})
                elif fake.mode in ("400", "503"):
                    self._send(int(fake.mode), {"error": {"message": f"the server says no ({fake.mode})"}})
                elif fake.mode == "slow":
                    time.sleep(3)
                    self._send(200, {})
                elif fake.mode == "cut":
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for piece in (" Hello", " there"):
                        chunk = {"choices": [{"text": piece, "logprobs": {"tokens": [piece], "token_logprobs": [-0.5],
                                                                          "top_logprobs": [{piece: -0.5}]}}]}
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)

            def _send(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("mode", ["400", "503"])
def test_http_errors_carry_the_servers_message(mode):
    fake = Fake(mode)
    try:
        remote = load_model(ModelSpec(path=fake.url))
        assert remote.kind == "vllm"
        with pytest.raises(GenerationError, match=rf"HTTP {mode}.*the server says no"):
            generate_many(remote, PROMPT, [DecodingConfig(max_new_tokens=3)])
    finally:
        fake.close()


def test_timeout():
    fake = Fake("slow")
    try:
        remote = load_model(ModelSpec(path=fake.url))
        remote.timeout = 0.5
        start = time.perf_counter()
        with pytest.raises(GenerationError, match="timed out"):
            generate_many(remote, PROMPT, [DecodingConfig(max_new_tokens=3)])
        assert time.perf_counter() - start < 2.5
    finally:
        fake.close()


def test_stream_cut_keeps_partial_text_and_marks_it():
    fake = Fake("cut")
    try:
        remote = load_model(ModelSpec(path=fake.url))
        out = generate_many(remote, PROMPT, [DecodingConfig(max_new_tokens=30)])[0]
        assert out.text == " Hello there" and out.stop_reason == "error"
        assert "partial text kept" in out.extra["error"]
        assert [s.logprob for s in out.steps] == [-0.5, -0.5] and out.steps[0].rank == 0
    finally:
        fake.close()


def test_server_killed_mid_run_and_cancel(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "decodelab.cli", "serve", "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/v1"
        for _ in range(200):
            try:
                remote = load_model(ModelSpec(path=url))
                break
            except ModelLoadError:
                time.sleep(0.1)
        cancel = threading.Event()
        seen = []

        def on_step(event):
            seen.append(event)
            if len(seen) == 3:
                cancel.set()

        start = time.perf_counter()
        out = generate_many(remote, PROMPT, [DecodingConfig(max_new_tokens=400, min_new_tokens=400)],
                            on_step=on_step, cancel=cancel)[0]
        assert out.stop_reason == "cancelled" and 0 < len(out.steps) < 400
        assert time.perf_counter() - start < 5

        def kill_soon(event):
            seen.append(event)
            if len(seen) == 10:
                proc.kill()

        out = generate_many(remote, PROMPT, [DecodingConfig(max_new_tokens=400, min_new_tokens=400)],
                            on_step=kill_soon)[0]
        assert out.stop_reason == "error" and out.text and "partial text kept" in out.extra["error"]
    finally:
        proc.kill()
        proc.wait()


def test_api_key_required_and_never_in_the_spec(demo):
    server = Server(demo, port=0, api_key="s3cret").start()
    try:
        with pytest.raises(ModelLoadError, match="API key"):
            load_model(ModelSpec(path=server.url), api_key="")
        remote = load_model(ModelSpec(path=server.url), api_key="s3cret")
        assert generate_many(remote, PROMPT, [DecodingConfig(max_new_tokens=3)])[0].text
        import dataclasses

        assert "s3cret" not in json.dumps(dataclasses.asdict(remote.spec))
    finally:
        server.stop()


def test_branching_is_refused_remotely(server):
    remote = remote_for(server)
    with pytest.raises(GenerationError, match="local engine"):
        generate_many(remote, PROMPT, [DecodingConfig()], prefix_ids=[5])


async def test_tui_against_the_server(server):
    from decodelab.tui.app import DecodelabApp

    configs = CONFIGS[:2] + [DecodingConfig(name="typ", do_sample=True, typical_p=0.8, seed=1, max_new_tokens=5)]
    app = DecodelabApp(spec=ModelSpec(path=server.url, server_kind="vllm"), configs=configs, prompt=PROMPT)
    async with app.run_test() as pilot:
        for _ in range(200):
            await pilot.pause(0.05)
            if app.shelf.loaded is not None:
                break
        assert "vllm server" in app.shelf.loaded.describe()  # declared, not discovered
        assert "logprobs: raw" in str(app.query_one("#legend").render())
        await pilot.press("ctrl+r")
        for _ in range(400):
            await pilot.pause(0.05)
            if not app.running:
                break
        panes = app.panes()
        assert all(p.state.text for p in panes)
        assert panes[2].border_subtitle == "⚠ server ignores typical_p=0.8" and not panes[0].border_subtitle


def test_cli_run_reports_ignored_settings(server):
    from click.testing import CliRunner

    from decodelab.cli.main import main

    args = ["run", "--model", server.url, "--server-kind", "openai", "--prompt", PROMPT, "-p", "precise",
            "--set", "max_new_tokens=4"]
    panels = CliRunner().invoke(main, args)
    assert panels.exit_code == 0 and "server ignores min_p=0.1" in panels.output
    doc = json.loads(CliRunner().invoke(main, args + ["--json"]).stdout)
    assert doc["completions"][0]["notes"]["ignored"] == ["min_p=0.1"]


def test_openai_key_goes_only_to_openai(monkeypatch):
    from decodelab.engine.backends.remote import api_key_from_env, is_openai_endpoint

    assert is_openai_endpoint("https://api.openai.com/v1")
    assert not is_openai_endpoint("http://api.openai.com/v1") and not is_openai_endpoint("https://api.openai.com.evil.io/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    monkeypatch.delenv("DECODELAB_API_KEY", raising=False)
    assert api_key_from_env("https://api.openai.com/v1") == "sk-openai"
    fake = Fake("cut")
    try:
        remote = load_model(ModelSpec(path=fake.url))
        generate_many(remote, PROMPT, [DecodingConfig(max_new_tokens=3)])
        assert fake.auth and all(a is None for a in fake.auth)  # the OpenAI key never left for another host
        monkeypatch.setenv("DECODELAB_API_KEY", "team-key")
        load_model(ModelSpec(path=fake.url))
        assert fake.auth[-1] == "Bearer team-key"
    finally:
        fake.close()


def test_llama_cpp_python_with_an_alias_is_detected_and_sent_one_request_at_a_time():
    fake = Fake("llama-cpp-python")
    try:
        remote = load_model(ModelSpec(path=fake.url))
        assert remote.kind == "llama-cpp-python" and remote.name == "team"
        body = request_body(remote, PROMPT, DecodingConfig(do_sample=True), 1, 10)
        assert body["top_k"] == 0 and body["min_p"] == 0.0 and body["repeat_penalty"] == 1.0  # its defaults overridden
        assert "top_k=40" in remote.overridden() and "repeat_penalty=1.1" in remote.overridden()
    finally:
        fake.close()
    plain = Fake("cut")
    try:
        assert load_model(ModelSpec(path=plain.url)).kind == "vllm"
    finally:
        plain.close()


def test_unknown_prompt_tokens_and_prefill_are_null_and_ranks_beyond_top_n_are_lower_bounds():
    from decodelab.engine.backends.remote import _steps_from_chunk
    from decodelab.engine.results import completion_from_dict, completion_to_dict

    fake = Fake("cut")
    try:
        out = generate_many(load_model(ModelSpec(path=fake.url)), PROMPT, [DecodingConfig(max_new_tokens=30)])[0]
    finally:
        fake.close()
    assert out.prompt_tokens is None and out.timings.prefill_s is None
    doc = completion_to_dict(out)
    assert doc["prompt_tokens"] is None and doc["timings"]["prefill_s"] is None
    assert completion_from_dict(json.loads(json.dumps(doc))).prompt_tokens is None
    steps = _steps_from_chunk({"text": " x", "logprobs": {"tokens": [" x"], "token_logprobs": [-4.0],
                                                         "top_logprobs": [{" a": -0.1, " b": -1.0}]}}, chat=False)
    assert steps[0].rank == 2 and steps[0].rank_at_least and steps[0].rank_text == "≥2"
    again = completion_from_dict(json.loads(json.dumps(completion_to_dict(dataclasses.replace(out, steps=steps)))))
    assert again.steps[0].rank_at_least


def test_decodelab_serve_reports_prompt_tokens(server, demo):
    remote = remote_for(server)
    out = generate_many(remote, PROMPT, [DecodingConfig(max_new_tokens=3)])[0]
    assert out.prompt_tokens == generate_many(demo, PROMPT, [DecodingConfig(max_new_tokens=3)])[0].prompt_tokens


def test_a_remote_decodelab_server_decides_chat_mode_unless_the_user_did(demo):
    """Issue 21 item 13: run --model http://... against a decodelab server on SmolLM2 did not turn chat on."""
    import dataclasses

    from decodelab.cli.common import model_spec
    from decodelab.engine.backends.remote import connect

    chatty = dataclasses.replace(demo, spec=dataclasses.replace(demo.spec, chat=True))
    server = Server(chatty, port=0).start()
    try:
        options = dict(dtype="auto", device="auto", quantization="none", quant_type="nf4", trust_remote_code=False,
                       profile=None)
        followed = model_spec(server.url, chat=None, **options)
        assert followed.chat is None and connect(followed).spec.chat is True
        assert connect(model_spec(server.url, chat=False, **options)).spec.chat is False  # --no-chat wins
    finally:
        server.stop()
    plain = Server(demo, port=0).start()
    try:
        assert connect(ModelSpec(path=plain.url, chat=None)).spec.chat is False
    finally:
        plain.stop()


def test_every_setting_reaches_decodelabs_own_server(demo, server):
    """Issue 21 item 10: decodelab's client no longer lists its own settings as ignored against its own server."""
    remote = remote_for(server)
    configs = [DecodingConfig(name="modern", do_sample=True, seed=5, max_new_tokens=8, top_h=0.6, tfs=0.95,
                              smoothing_factor=0.3, xtc_probability=0.5, xtc_threshold=0.1, dry_multiplier=0.8,
                              logit_bias={"12": float("-inf")}, sampler_order=("top_h", "temperature")),
               DecodingConfig(name="guided", max_new_tokens=8, guidance_scale=1.8, negative_prompt="dogs",
                              banned_strings=(" the",), repetition_penalty_last_n=16, repetition_penalty=1.2)]
    got = generate_many(remote, PROMPT, configs)
    want = generate_many(demo, PROMPT, configs)
    for g, w in zip(got, want):
        assert g.extra["ignored"] == [] and g.token_ids == w.token_ids
    vllm = RemoteModel(spec=None, base_url="http://x", model_name="m", kind="vllm")
    assert any(item.startswith("top_h=") for item in vllm.unsupported(configs[0]))
