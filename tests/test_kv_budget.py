"""Issue 21 item 3: admission against a key/value-cache budget. A request that would pass it waits for rows to
finish; one that could not fit even alone is a 400; a request whose own prefill fails fails alone."""

from __future__ import annotations

import httpx
import pytest
import torch

from decodelab.engine import DecodingConfig
from decodelab.engine.decoding import loop as loop_module
from decodelab.engine.decoding.loop import DecodeLoop, bucket_rows
from decodelab.engine.decoding.modelcalls import kv_bytes_per_token
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

    def failing(model, context):
        if context.numel() > 30:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, context)

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
