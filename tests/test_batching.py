"""Multi-prompt batching: rows of different prompts share forward passes and still match HF generate."""

from __future__ import annotations

import threading

import pytest

from decodelab.engine import DecodingConfig, generate_many
from decodelab.engine.decoding.loop import DecodeLoop
from decodelab.engine.decoding.requests import Request
from decodelab.engine.decoding.run import generate_prompts
from decodelab.engine.decoding.run import encode_prompt

from conftest import ARCHS

PROMPTS = ["The for statement is used", "A function", "Return the number of items in a container. The argument",
           "x"]


def hf_greedy(loaded, prompt, config):
    ids = loaded.tokenizer(prompt, return_tensors="pt")
    out = loaded.model.generate(**ids, max_new_tokens=config.max_new_tokens, do_sample=False,
                                repetition_penalty=config.repetition_penalty,
                                no_repeat_ngram_size=config.no_repeat_ngram_size,
                                pad_token_id=loaded.tokenizer.eos_token_id, eos_token_id=None)
    return out[0, ids["input_ids"].shape[1]:].tolist()


@pytest.mark.parametrize("arch", ARCHS)
def test_every_row_of_a_mixed_prompt_batch_matches_hf_generate(tiny_models, arch):
    loaded = tiny_models[arch]
    greedy = DecodingConfig(max_new_tokens=16)
    penalised = DecodingConfig(max_new_tokens=12, repetition_penalty=1.4, no_repeat_ngram_size=2)
    items = [(p, [greedy, penalised]) for p in PROMPTS]
    results = generate_prompts(loaded, items)
    for prompt, (plain, pen) in zip(PROMPTS, results):
        assert plain.token_ids == hf_greedy(loaded, prompt, greedy), prompt
        assert pen.token_ids == hf_greedy(loaded, prompt, penalised), prompt
        assert plain.prompt_tokens == encode_prompt(loaded, prompt).numel()


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_a_request_joining_mid_flight_is_exact_and_leaves_early(tiny_models, arch):
    loaded = tiny_models[arch]
    batch = DecodeLoop(loaded)
    assert batch.mergeable
    long = Request(encode_prompt(loaded, PROMPTS[0]), [DecodingConfig(max_new_tokens=30)])
    batch.add([long])
    for _ in range(7):
        batch.step()
    short = Request(encode_prompt(loaded, PROMPTS[2]), [DecodingConfig(max_new_tokens=5)])
    batch.admit([short])
    assert batch.rows == 2
    finished_with = []
    while batch.groups:
        finished_with.append([r for r in batch.step()])
        if short.completions is not None and long.completions is None:
            assert batch.rows == 1  # the short row left the batch at once
    assert short.completions[0].token_ids == hf_greedy(loaded, PROMPTS[2], short.configs[0])
    assert long.completions[0].token_ids == hf_greedy(loaded, PROMPTS[0], long.configs[0])
    assert batch.forwards < 30 + 5  # the rows shared forward passes


def test_sliding_window_cache_runs_prompts_one_batch_at_a_time(tiny_models):
    loaded = tiny_models["mistral"]
    greedy = DecodingConfig(max_new_tokens=8)
    short = DecodingConfig(max_new_tokens=3)
    results = generate_prompts(loaded, [(p, [greedy, short]) for p in PROMPTS[:2]])
    for prompt, (c, s) in zip(PROMPTS, results):
        assert c.token_ids == hf_greedy(loaded, prompt, greedy)
        assert s.token_ids == c.token_ids[:3] and s.stop_reason == "max_new_tokens"


def test_seeded_sampling_matches_generate_many_for_each_prompt(llama):
    configs = [DecodingConfig(do_sample=True, temperature=0.9, top_p=0.9, seed=11, max_new_tokens=12),
               DecodingConfig(do_sample=True, min_p=0.1, frequency_penalty=0.4, seed=12, max_new_tokens=12)]
    results = generate_prompts(llama, [(p, configs) for p in PROMPTS[:3]])
    for prompt, got in zip(PROMPTS, results):
        alone = generate_many(llama, prompt, configs)
        assert [c.token_ids for c in got] == [c.token_ids for c in alone]
        assert [c.seed for c in got] == [11, 12]


def test_events_go_to_their_own_request_and_cancel_stops_only_it(llama):
    batch = DecodeLoop(llama)
    seen = {0: [], 1: []}
    stop = threading.Event()
    a = Request(encode_prompt(llama, PROMPTS[0]), [DecodingConfig(max_new_tokens=20)] * 2,
                on_step=lambda e: seen[0].append(e), cancel=stop)
    b = Request(encode_prompt(llama, PROMPTS[1]), [DecodingConfig(max_new_tokens=20)],
                on_step=lambda e: seen[1].append(e))
    batch.add([a, b])
    for _ in range(4):
        batch.step()
    stop.set()
    while batch.groups:
        batch.step()
    assert [c.stop_reason for c in a.completions] == ["cancelled", "cancelled"]
    assert len(a.completions[0].token_ids) == 4  # a cancelled row makes no token after the cancel
    assert b.completions[0].stop_reason == "max_new_tokens" and len(b.completions[0].token_ids) == 20
    assert all(set(e.tokens) <= {0, 1} for e in seen[0]) and all(set(e.tokens) <= {0} for e in seen[1])
    assert len([e for e in seen[1] if e.tokens]) == 20


def test_more_rows_than_fit_wait_for_room(llama):
    greedy = DecodingConfig(max_new_tokens=6)
    results = generate_prompts(llama, [(p, [greedy] * 3) for p in PROMPTS], max_rows=4)
    for prompt, row in zip(PROMPTS, results):
        expected = hf_greedy(llama, prompt, greedy)
        assert [c.token_ids for c in row] == [expected] * 3


def test_beam_configs_run_beside_the_batch(llama):
    beam = DecodingConfig(num_beams=2, max_new_tokens=6)
    results = generate_prompts(llama, [(PROMPTS[0], [DecodingConfig(max_new_tokens=6), beam])])
    assert results[0][1].token_ids == generate_many(llama, PROMPTS[0], [beam])[0].token_ids
