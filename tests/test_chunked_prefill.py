"""Issue 21 item 8: a long prompt that arrives while rows decode is prefilled in chunks between decode steps,
so the running rows keep streaming; it decodes exactly as it does after a one-piece prefill."""

from __future__ import annotations

import pytest

from decodelab.engine import DecodingConfig
from decodelab.engine.decoding.loop import DecodeLoop
from decodelab.engine.decoding.run import new_request

from conftest import ARCHS

RUNNING = "The for statement"


def long_prompt(loaded, tokens: int) -> str:
    text, words = "", ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
    i = 0
    while len(loaded.tokenizer(text)["input_ids"]) < tokens:
        text += f" {words[i % len(words)]} {i}"
        i += 1
    return text


def run(loaded, chunk: int, tokens: int = 200):
    """A running request, then a long one joining mid-run; (the long one's tokens, the running one's steps
    recorded while the long one was still prefilling, the loop's forward count)."""
    loop = DecodeLoop(loaded, prefill_chunk=chunk)
    running = new_request(loaded, RUNNING, [DecodingConfig(max_new_tokens=40, min_new_tokens=40)])
    seen = []
    running.on_step = lambda event: seen.append(event.step)
    long = new_request(loaded, long_prompt(loaded, tokens), [DecodingConfig(max_new_tokens=6),
                                                             DecodingConfig(do_sample=True, seed=3,
                                                                            max_new_tokens=6)])
    loop.admit([running])
    loop.step()
    loop.admit([long])
    while_prefilling = 0
    while loop.busy:
        if loop.prefilling:
            before = len(seen)
            loop.step()
            while_prefilling += len(seen) - before
        else:
            loop.step()
    return [c.token_ids for c in long.completions], while_prefilling, running.completions[0].token_ids


@pytest.mark.parametrize("arch", [a for a in ARCHS if a != "mistral"])  # mistral: sliding window, never merged
def test_a_chunked_prompt_decodes_as_after_a_one_piece_prefill_and_others_keep_streaming(tiny_models, arch):
    loaded = tiny_models[arch]
    chunked, streamed, running = run(loaded, chunk=64)
    whole, streamed_whole, running_whole = run(loaded, chunk=0)
    assert chunked == whole and running == running_whole
    assert streamed >= 3 and streamed_whole == 0  # 200 tokens in 64-token chunks: the running row kept going


def test_the_demo_model_too(demo):
    chunked, streamed, _ = run(demo, chunk=50, tokens=260)
    whole, _, _ = run(demo, chunk=0, tokens=260)
    assert chunked == whole and streamed >= 5


def test_a_short_prompt_or_an_idle_loop_prefills_in_one_go(demo):
    loop = DecodeLoop(demo, prefill_chunk=16)
    request = new_request(demo, long_prompt(demo, 100), [DecodingConfig(max_new_tokens=3)])
    loop.admit([request])  # nothing is decoding: no one to keep streaming, so no chunks
    assert not loop.prefilling and loop.groups
    while loop.busy:
        loop.step()
    assert len(request.completions[0].token_ids) == 3
