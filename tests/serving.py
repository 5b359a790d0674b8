"""Helpers for the `decodelab serve` tests: raw HTTP on one connection, error shapes, waiting for idle."""

from __future__ import annotations

import json
import socket
import time

import httpx
import openai
import pytest

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

@pytest.fixture(scope="module")
def server(demo):
    server = Server(demo, port=0, header_timeout=1.0).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
