"""Helpers for the `decodelab serve` tests: raw HTTP on one connection, error shapes, waiting for idle."""

from __future__ import annotations

import json
import socket
import time

import httpx
import openai
import pytest

from conftest import load_demo
from decodelab.server import Server

PROMPT = "The for statement"
PROMPTS = ["The for statement", "A function definition", "Return the number of items", "The while"]


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


def wait_idle(server, seconds=20):
    deadline = time.monotonic() + seconds
    while (server.scheduler.batch.groups or server.scheduler.waiting) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not server.scheduler.batch.groups

# -- fixtures shared by the serve test modules (each module gets its own server) ------------------------

@pytest.fixture(scope="module", params=("transformers", "llama.cpp"))
def server(request):
    """decodelab serve on the demo model, once per engine (transformers; llama.cpp on the demo's GGUF)."""
    loaded = load_demo() if request.param == "transformers" else request.getfixturevalue("demo_llamacpp")
    server = Server(loaded, port=0, header_timeout=1.0, model_name="demo").start()  # one name on both engines
    server.engine, server.model = request.param, loaded
    yield server
    server.stop()


@pytest.fixture(scope="module")
def demo(server):
    """In the serve modules that import it: the model the server runs (the demo model on the server's engine), so
    a test's local run is on the same engine as the server's."""
    return server.model


def transformers_only(server, why: str) -> None:
    """Skip on the llama.cpp engine, saying why (its own test checks that the engine refuses it)."""
    if server.engine != "transformers":
        pytest.skip(f"the llama.cpp engine refuses this ({why}); test_serve_llamacpp.py checks the refusal")


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
