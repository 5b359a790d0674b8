"""How a job's results reach its client: a whole JSON answer, the same answer held open for a half-closed
connection, or a stream of server-sent events. A client that hangs up cancels its rows.

A half-closed connection (the client shut its writing side after the request, as `nc -N` does) still
wants its answer, but the server can no longer tell it from a client that closed for good: both send
the same FIN. So the answer starts at once (200, chunked) and a space goes out every half second until it
is ready: JSON allows leading whitespace, and a client that is really gone answers the first write with
a reset, which cancels its rows within about a second, as it does for every other connection.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator, Callable

from starlette.requests import Request as HttpRequest

from . import responses
from .errors import ApiError
from .scheduler import Job

HALF_CLOSED = "decodelab.half_closed"
"""Set in the request's scope by the protocol (runner.py) when the client shuts its writing side."""
POLL = 0.5
"""Seconds between checks that the client is still there."""


class HalfClosed(Exception):
    """The client shut its writing side while its answer was being made."""


async def _collect(job: Job, done: dict[int, list]) -> bool:
    """Wait up to POLL for the job's next event; True once every request is done. An error is a 500."""
    try:
        kind, index, payload = await asyncio.wait_for(job.events.get(), timeout=POLL)
    except TimeoutError:
        return False
    if kind == "error":
        raise ApiError(500, payload)
    if kind == "done":
        done[index] = payload
    return len(done) == len(job.requests)


def _in_order(job: Job, done: dict[int, list]) -> list:
    return [c for i in range(len(job.requests)) for c in done[i]]


async def wait(job: Job, request: HttpRequest, done: dict[int, list]) -> list:
    """All completions of a job, in choice order; a client that hangs up cancels the work (499)."""
    while len(done) < len(job.requests):
        if await _collect(job, done):
            break
        if request.scope.get(HALF_CLOSED):
            raise HalfClosed
        if await request.is_disconnected():
            job.cancel.set()
            raise ApiError(499, "the client closed the connection")
    return _in_order(job, done)


async def held(job: Job, done: dict[int, list], answer: Callable[[list], Any]) -> AsyncIterator[bytes]:
    """The body of a non-streaming answer to a half-closed client: spaces while it is made, then answer(completions).
    Errors after the 200 has gone out can only be told in the body, in OpenAI's error shape."""
    try:
        yield b" "
        while len(done) < len(job.requests):
            try:
                if await _collect(job, done):
                    break
            except ApiError as exc:
                yield json.dumps(exc.body()).encode()
                return
            yield b" "
        yield json.dumps(answer(_in_order(job, done)), ensure_ascii=False).encode()
    finally:
        job.cancel.set()  # a client that went away (the write failed) stops its rows at the next step


async def stream(job: Job, shape: responses.Shape, echos: list[str], n: int,
                 prompt_tokens: int) -> AsyncIterator[str]:
    """Server-sent events: each row's chunks as its tokens come, the usage when asked for, then [DONE]."""
    holds = [max((len(s) for s in c.stop_strings), default=1) - 1 for r in job.requests for c in r.configs]
    streams = [responses.ChoiceStream(shape, i, hold, echo) for i, (hold, echo) in enumerate(zip(holds, echos))]
    try:
        for one in streams:
            if (chunk := one.first()) is not None:
                yield sse(chunk)
        remaining = len(job.requests)
        while remaining:
            kind, index, payload = await job.events.get()
            if kind == "error":
                yield sse(ApiError(500, payload).body())
                break
            if kind == "done":
                remaining -= 1
                continue
            for row in sorted(set(payload.tokens) | set(payload.finished)):
                request = job.requests[index]
                seed = request.seeds[row] if request.configs[row].samples else None  # greedy draws no seed
                chunk = streams[index * n + row].step(payload.tokens.get(row, ()), payload.texts.get(row),
                                                      payload.finished.get(row), seed)
                if chunk is not None:
                    yield sse(chunk)
        else:
            if shape.include_usage:
                final = shape.envelope([], chunk=True)
                final["usage"] = responses.usage(prompt_tokens, sum(s.tokens for s in streams))
                yield sse(final)
        yield "data: [DONE]\n\n"
    finally:
        job.cancel.set()  # a client that went away stops its rows at the next step


def sse(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"
