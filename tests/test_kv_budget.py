"""Issue 21 item 3: admission against a key/value-cache budget. A request that would pass it waits for rows to
finish; one that could not fit even alone is a 400; a request whose own prefill fails fails alone."""

from __future__ import annotations

import httpx
import pytest
import torch

from decodelab.engine import DecodingConfig
from decodelab.engine.runners import transformers as loop_module  # the runner the loop prefills through
from decodelab.engine.decoding.loop import DecodeLoop, bucket_rows
from decodelab.engine.runners.hf_calls import kv_bytes_per_token
from decodelab.engine.decoding.run import new_request
from serving import PROMPT, error_of


def test_the_size_per_token_is_what_a_real_cache_holds(demo):
    ids = demo.tokenizer("The for statement is used to iterate", return_tensors="pt")["input_ids"]
    cache = demo.model(input_ids=ids, use_cache=True).past_key_values
    held = sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)
    assert kv_bytes_per_token(demo.model) * ids.shape[1] == held


def requests(demo, n, tokens=12):
    return [new_request(demo, f"{PROMPT} {i}", [DecodingConfig(max_new_tokens=tokens, min_new_tokens=tokens)])
            for i in range(n)]


def test_requests_past_the_budget_wait_and_all_finish(demo):
    per_token = kv_bytes_per_token(demo.model)
    budget = bucket_rows(8) * 25 * per_token  # room for one 8-row bucket of ~18-token rows, not for 16 rows
    loop = DecodeLoop(demo, kv_budget=budget)
    waiting, peak_rows, peak_need = requests(demo, 10), 0, 0
    everything = list(waiting)
    while waiting or loop.busy:
        loop.admit(waiting)
        peak_rows = max(peak_rows, loop.rows)
        peak_need = max(peak_need, loop.kv_need() or 0)
        loop.step()
    assert all(len(r.completions[0].token_ids) == 12 for r in everything)
    assert 1 <= peak_rows <= 8 and peak_need <= budget  # they took turns, never past the budget
    free = DecodeLoop(demo)
    waiting = requests(demo, 10)
    free.admit(waiting)
    assert free.rows == 10  # without a budget all ten join at once


def test_a_request_whose_prefill_fails_fails_alone(demo, monkeypatch):
    real = loop_module.prefill_once

    def failing(model, context, keep=1):
        if context.numel() > 30:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, context, keep)

    monkeypatch.setattr(loop_module, "prefill_once", failing)
    loop = DecodeLoop(demo)
    short = requests(demo, 2, tokens=5)
    long = new_request(demo, PROMPT + " and more" * 20, [DecodingConfig(max_new_tokens=5)])
    waiting = [short[0], long, short[1]]
    while waiting or loop.busy:
        loop.admit(waiting)
        loop.step()
    assert [r for r, _, _ in loop.failed] == [long] and "out of memory" in loop.failed[0][1]
    assert all(len(r.completions[0].token_ids) == 5 for r in short)


@pytest.fixture(scope="module")
def small_server(demo):
    from decodelab.server import Limits, Server

    budget = bucket_rows(1) * 300 * kv_bytes_per_token(demo.model)
    server = Server(demo, port=0, limits=Limits(kv_budget=budget)).start()
    yield server
    server.stop()


def test_the_server_refuses_a_request_that_cannot_fit_alone_and_serves_the_rest(small_server):
    url = small_server.url
    big = httpx.post(f"{url}/completions", json={"prompt": PROMPT, "max_tokens": 400}, timeout=60)
    assert big.status_code == 400 and error_of(big)["param"] == "max_tokens"
    assert "key/value cache" in error_of(big)["message"] and "--kv-budget-gb" in error_of(big)["message"]
    ok = httpx.post(f"{url}/completions", json={"prompt": PROMPT, "max_tokens": 8, "n": 2}, timeout=60)
    assert ok.status_code == 200 and len(ok.json()["choices"]) == 2


def test_serve_says_what_a_bad_budget_should_be():
    from click.testing import CliRunner

    from decodelab.cli.main import main

    for value in ("lots", "0"):
        result = CliRunner().invoke(main, ["serve", "--model", "demo", "--kv-budget-gb", value])
        assert result.exit_code == 2 and "--kv-budget-gb" in result.output


CPU_OOM = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to "
           "allocate 52549632 bytes. Error code 12 (Cannot allocate memory)")
"""What torch says on a CPU when an allocation fails: a plain RuntimeError, not torch.OutOfMemoryError."""


def seeded(demo, prompt, tokens=10, seed=3):
    return new_request(demo, prompt, [DecodingConfig(do_sample=True, temperature=0.9, seed=seed,
                                                     max_new_tokens=tokens, min_new_tokens=tokens)])


def alone(demo, prompt, tokens=10, seed=3):
    loop, request = DecodeLoop(demo), seeded(demo, prompt, tokens, seed)
    waiting = [request]
    while waiting or loop.busy:
        loop.admit(waiting)
        loop.step()
    return request.completions[0].token_ids


@pytest.mark.parametrize("after_layers", [0, 1])
def test_a_join_that_runs_out_of_memory_part_way_fails_alone_and_the_batch_is_whole(demo, monkeypatch,
                                                                                 after_layers):
    """serve_memory.py: a CPU allocation failed while a long prompt's cache joined the batch, and the server
    failed all 24 short requests beside it: the join had half-padded the batch's own cache."""
    first = seeded(demo, PROMPT)
    loop = DecodeLoop(demo)
    waiting = [first]
    loop.admit(waiting)
    for _ in range(3):
        loop.step()
    real, calls = loop_module._left_pad, []

    def failing(x, length):
        calls.append(1)
        if len(calls) > 4 * after_layers:  # each layer pads 4 tensors: fail after that many whole layers
            raise RuntimeError(CPU_OOM)
        return real(x, length)

    monkeypatch.setattr(loop_module, "_left_pad", failing)
    late = seeded(demo, "A function definition defines a user-defined function object", seed=4)
    loop.admit([late])
    monkeypatch.setattr(loop_module, "_left_pad", real)
    assert [r for r, _, _ in loop.failed] == [late] and loop.failed[0][1] == "out of memory for its prompt"
    while loop.busy:
        loop.step()
    assert first.completions[0].token_ids == alone(demo, PROMPT)


def test_a_step_that_runs_out_of_memory_lets_the_newest_group_go_and_the_rest_go_on(demo, monkeypatch):
    first, second = seeded(demo, PROMPT, tokens=12), seeded(demo, "The while statement", tokens=12, seed=5)
    loop = DecodeLoop(demo)
    loop.admit([first])
    loop.step()
    loop.admit([second])
    loop.step()
    real, failures = demo.model.forward, []

    def failing(*args, **kwargs):
        if kwargs.get("input_ids") is not None and kwargs["input_ids"].shape[1] == 1 and not failures:
            failures.append(1)
            raise RuntimeError(CPU_OOM)  # once, in the middle of a step for both groups
        return real(*args, **kwargs)

    monkeypatch.setattr(demo.model, "forward", failing)
    while loop.busy:
        loop.step()
    assert failures and [r for r, _, _ in loop.failed] == [second]
    assert "out of memory for a step" in loop.failed[0][1]
    assert first.completions[0].token_ids == alone(demo, PROMPT, tokens=12) and second.completions is None


def test_a_chunked_prefill_that_runs_out_of_memory_fails_alone(demo, monkeypatch):

    running = seeded(demo, PROMPT)
    loop = DecodeLoop(demo, prefill_chunk=8)
    loop.admit([running])
    loop.step()
    real = loop_module.forward_last

    def failing(model, ids, *args, **kwargs):
        if kwargs.get(loop.runner.keyword) is not None:  # the second chunk onwards
            raise RuntimeError(CPU_OOM)
        return real(model, ids, *args, **kwargs)

    monkeypatch.setattr(loop_module, "forward_last", failing)
    long = seeded(demo, PROMPT + " and more" * 20)
    loop.admit([long])
    while loop.busy:
        loop.step()
    assert [r for r, _, _ in loop.failed] == [long] and "out of memory" in loop.failed[0][1]
    assert running.completions[0].token_ids == alone(demo, PROMPT)


def test_an_emptied_batch_gives_its_memory_back(demo, monkeypatch):
    """serve_memory.py: after 100 mixed requests the server kept 5.1 GB resident of a 7.7 GB peak (1.1 GB at the
    start): glibc keeps the pages of freed CPU tensors. The scheduler trims when its batch empties."""
    from decodelab.server import Server, scheduler

    calls = []
    monkeypatch.setattr(scheduler, "release_free_memory", lambda: calls.append(1))
    server = Server(demo, port=0).start()
    try:
        import time

        for times in (1, 2):
            r = httpx.post(f"{server.url}/completions", json={"prompt": PROMPT, "max_tokens": 4}, timeout=60)
            assert r.status_code == 200
            deadline = time.monotonic() + 10
            while len(calls) < times and time.monotonic() < deadline:
                time.sleep(0.05)
        time.sleep(1.2)  # a few idle polls more
        assert len(calls) == 2  # once per time the batch emptied, not on every idle poll
    finally:
        server.stop()
    from decodelab.engine.memory import release_free_memory

    release_free_memory()  # and the real one runs here (glibc) without error
