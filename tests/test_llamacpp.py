"""The remote backend against a real llama.cpp server (llama-cpp-python's) on a GGUF of the demo model."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python[server] is installed by `make test` / CI")

from click.testing import CliRunner  # noqa: E402

from decodelab.engine import DecodingConfig, generate_many  # noqa: E402
from decodelab.engine.backends.loading import ModelLoadError, ModelSpec, demo_model_path, load_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "The for statement"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gguf_path(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("demo_to_gguf", ROOT / "scripts" / "demo_to_gguf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_gguf(demo_model_path(), tmp_path_factory.mktemp("gguf") / "demo.gguf")


def start_server(gguf: Path, alias: str | None = None):
    port = _port()
    extra = ["--model_alias", alias] if alias else []
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--port", str(port),
                             "--n_ctx", "512", "--logits_all", "true", "--n_threads", "2", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(300):
        try:
            return proc, load_model(ModelSpec(path=url))
        except ModelLoadError:
            if proc.poll() is not None:
                raise RuntimeError("llama.cpp server exited at start") from None
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("llama.cpp server did not come up")


@pytest.fixture(scope="module")
def llama_server(gguf_path):
    proc, remote = start_server(gguf_path, alias="team-demo")  # an alias hides the .gguf name
    yield remote
    proc.kill()
    proc.wait()


def test_detects_the_server_and_matches_local_greedy(llama_server, demo):
    assert llama_server.kind == "llama-cpp-python" and llama_server.name == "team-demo"
    config = DecodingConfig(max_new_tokens=12)
    remote = generate_many(llama_server, PROMPT, [config])[0]
    assert remote.prompt_tokens is None and remote.timings.prefill_s is None  # unknown, not 0
    assert "top_k=40" in remote.extra["overridden"] and "repeat_penalty=1.1" in remote.extra["overridden"]
    local = generate_many(demo, PROMPT, [config])[0]
    assert remote.text == local.text  # same weights (bf16 -> f32), same greedy path
    assert [s.logprob for s in remote.steps] == pytest.approx([s.logprob for s in local.steps], abs=5e-3)
    assert all(s.rank == 0 for s in remote.steps)
    assert "raw" in remote.extra["logprobs"]


def test_every_supported_setting(llama_server):
    configs = [
        DecodingConfig(name="k", do_sample=True, top_k=5, seed=1, max_new_tokens=10),
        DecodingConfig(name="p", do_sample=True, top_p=0.5, temperature=0.7, seed=2, max_new_tokens=10),
        DecodingConfig(name="minp", do_sample=True, min_p=0.2, seed=3, max_new_tokens=10),
        DecodingConfig(name="pen", do_sample=True, repetition_penalty=1.3, frequency_penalty=0.5,
                       presence_penalty=0.5, seed=4, max_new_tokens=10, min_new_tokens=10),
        DecodingConfig(name="stop", stop_strings=("clause",), max_new_tokens=40),
        DecodingConfig(name="typ", do_sample=True, typical_p=0.5, seed=5, max_new_tokens=6),
    ]
    first = generate_many(llama_server, PROMPT, configs)
    again = generate_many(llama_server, PROMPT, configs)
    for a, b in zip(first, again):
        assert a.text == b.text, a.config.name  # seeds reproduce on the server
        assert len(a.steps) <= a.config.max_new_tokens and all(s.logprob <= 0 for s in a.steps)
    k_top = first[0]
    assert all(s.rank < 5 for s in k_top.steps)  # top-k 5: only the 5 likeliest tokens can be drawn
    assert len(first[3].steps) == 10
    assert first[4].stop_reason == "stop_string" or "clause" not in first[4].text
    assert "clause" not in first[4].text
    assert first[5].extra["ignored"] == ["typical_p=0.5"]
    assert any("last_n_tokens_size" in note for note in first[3].extra["ignored"])


def test_cancel_and_server_stopped_mid_run(gguf_path):
    proc, remote = start_server(gguf_path)
    try:
        cancel = threading.Event()
        count = []

        def on_step(event):
            count.append(event)
            if len(count) == 3:
                cancel.set()

        start = time.perf_counter()
        out = generate_many(remote, PROMPT, [DecodingConfig(max_new_tokens=300)], on_step=on_step, cancel=cancel)[0]
        assert out.stop_reason == "cancelled" and time.perf_counter() - start < 10

        def kill(event):
            count.append(event)
            if len(count) == 10:
                proc.kill()

        out = generate_many(remote, PROMPT, [DecodingConfig(max_new_tokens=300)], on_step=kill)[0]
        assert out.stop_reason == "error" and out.text and "partial text kept" in out.extra["error"]
    finally:
        proc.kill()
        proc.wait()


def test_decodelab_run_against_llamacpp(llama_server):
    from decodelab.cli.main import main

    result = CliRunner().invoke(main, ["run", "--model", llama_server.base_url, "--prompt", PROMPT, "-p", "greedy",
                                       "-p", "balanced", "--set", "max_new_tokens=6", "--json"])
    assert result.exit_code == 0, result.output
    assert '"text"' in result.stdout and "llama-cpp-python" in result.stdout


async def test_tui_against_llamacpp(llama_server):
    from decodelab.tui.app import DecodelabApp

    app = DecodelabApp(spec=ModelSpec(path=llama_server.base_url), prompt=PROMPT,
                       configs=[DecodingConfig(name="g", max_new_tokens=6),
                                DecodingConfig(name="s", do_sample=True, seed=1, max_new_tokens=6)])
    async with app.run_test() as pilot:
        for _ in range(200):
            await pilot.pause(0.05)
            if app.shelf.loaded is not None:
                break
        await pilot.press("ctrl+r")
        for _ in range(400):
            await pilot.pause(0.05)
            if not app.running:
                break
        assert all(len(p.state.steps) == 6 for p in app.panes())
