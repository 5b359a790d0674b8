"""The end-of-sequence set is HF generate's: generation_config first, config/tokenizer only as fallbacks."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from decodelab.engine import DecodingConfig, generate_many

PROMPT = "The for statement is used"


def variant(loaded, gen_eos, config_eos, tok_eos):
    """A copy of a loaded model whose generation_config, config and tokenizer name these EOS ids."""
    model = copy.deepcopy(loaded.model)
    tokenizer = copy.deepcopy(loaded.tokenizer)
    model.generation_config.eos_token_id = gen_eos
    model.config.eos_token_id = config_eos
    if tok_eos is not None:
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(tok_eos)
    return dataclasses.replace(loaded, model=model, tokenizer=tokenizer, runner=None)  # a runner of its own


def greedy_ids(loaded, n):
    (c,) = generate_many(loaded, PROMPT, [DecodingConfig(max_new_tokens=n)])
    return [s.token_id for s in c.steps], c.stop_reason


def hf_ids(loaded, n, **kwargs):
    ids = loaded.tokenizer(PROMPT, return_tensors="pt")
    out = loaded.model.generate(**ids, max_new_tokens=n, do_sample=False, pad_token_id=0, **kwargs)
    return out[0, ids["input_ids"].shape[1]:].tolist()


@pytest.fixture(scope="module")
def free_run(llama):
    """Greedy ids with no EOS at all, so a test can choose a token the run really emits."""
    plain = variant(llama, None, None, None)
    plain.tokenizer.eos_token = None
    ids, _ = greedy_ids(plain, 24)
    return ids


def test_tokenizer_eos_is_ignored_when_generation_config_names_one(llama, free_run):
    emitted = free_run[3]
    unused = next(t for t in range(len(llama.tokenizer)) if t not in free_run)
    loaded = variant(llama, unused, unused, emitted)
    assert loaded.runner.eos_ids() == [unused]
    ours, reason = greedy_ids(loaded, 24)
    theirs = hf_ids(loaded, 24)
    assert emitted in theirs[:4] and len(theirs) == 24  # HF goes on past the tokenizer's EOS ...
    assert ours == theirs and reason == "max_new_tokens"  # ... and so do we


def test_generation_config_eos_stops_like_hf(llama, free_run):
    emitted = free_run[3]
    first = free_run.index(emitted)
    loaded = variant(llama, [emitted, 10_000], None, 0)
    assert loaded.runner.eos_ids() == [emitted, 10_000]
    ours, reason = greedy_ids(loaded, 24)
    theirs = hf_ids(loaded, 24)
    assert reason == "eos" and ours == free_run[: first + 1]
    assert theirs[: first + 1] == ours


@pytest.mark.parametrize("gen, cfg, tok, expected", [
    (None, 5, 7, [5]),        # no generation_config EOS: the model config's
    (None, None, 7, [7]),     # then the tokenizer's
    ([], [4, 5], 7, [4, 5]),  # an empty list counts as none
    (3, 5, 7, [3]),
])
def test_fallback_order(llama, gen, cfg, tok, expected):
    assert variant(llama, gen, cfg, tok).runner.eos_ids() == expected


def test_min_new_tokens_masks_only_the_generation_config_eos(llama, free_run):
    emitted = free_run[1]
    loaded = variant(llama, emitted, None, 0)
    config = DecodingConfig(max_new_tokens=12, min_new_tokens=6)
    (c,) = generate_many(loaded, PROMPT, [config])
    ids = loaded.tokenizer(PROMPT, return_tensors="pt")
    out = loaded.model.generate(**ids, max_new_tokens=12, min_new_tokens=6, do_sample=False, pad_token_id=0)
    theirs = out[0, ids["input_ids"].shape[1]:].tolist()
    while theirs and theirs[-1] == 0 and emitted != 0 and len(theirs) > len(c.steps):
        theirs.pop()
    assert [s.token_id for s in c.steps] == theirs[: len(c.steps)]
    assert emitted not in [s.token_id for s in c.steps[:6]]


def test_beams_stop_on_the_same_set(llama, free_run):
    unused = next(t for t in range(len(llama.tokenizer)) if t not in free_run)
    loaded = variant(llama, unused, None, free_run[2])
    (c,) = generate_many(loaded, PROMPT, [DecodingConfig(num_beams=2, max_new_tokens=10)])
    with torch.no_grad():
        theirs = hf_ids(loaded, 10, num_beams=2, length_penalty=1.0, early_stopping=True)
    assert [s.token_id for s in c.steps] == theirs


def test_stop_token_ids_stop_as_hf_s_extra_eos_ids_do(llama, free_run):
    """vLLM's stop_token_ids: the row ends on the token, which stays in the output; HF's reference is the same id
    added to eos_token_id (beams too)."""
    emitted = free_run[4]
    first = free_run.index(emitted)
    plain = variant(llama, None, None, None)
    plain.tokenizer.eos_token = None
    (c,) = generate_many(plain, PROMPT, [DecodingConfig(max_new_tokens=24, stop_token_ids=(emitted,))])
    assert [s.token_id for s in c.steps] == free_run[: first + 1] and c.stop_reason == "stop_token"
    assert hf_ids(plain, 24, eos_token_id=[emitted])[: first + 1] == [s.token_id for s in c.steps]
    texts = {t: plain.tokenizer.decode([t]) for t in free_run}
    named = next(t for t in free_run if plain.tokenizer.encode(texts[t], add_special_tokens=False) == [t])
    (by_text,) = generate_many(plain, PROMPT, [DecodingConfig(max_new_tokens=24, stop_token_ids=(texts[named],))])
    assert by_text.token_ids == free_run[: free_run.index(named) + 1]  # a one-token text names its token
    (beam,) = generate_many(plain, PROMPT, [DecodingConfig(num_beams=2, max_new_tokens=10, stop_token_ids=(emitted,))])
    with torch.no_grad():
        theirs = hf_ids(plain, 10, num_beams=2, length_penalty=1.0, early_stopping=True, eos_token_id=[emitted])
    assert [s.token_id for s in beam.steps] == theirs


def test_ignore_eos_is_hf_s_min_new_tokens_at_max_new_tokens(llama, free_run):
    """llama.cpp's ignore_eos forbids every end token for the whole run; HF says the same with min_new_tokens equal to
    max_new_tokens."""
    emitted = free_run[1]
    loaded = variant(llama, emitted, None, 0)
    (c,) = generate_many(loaded, PROMPT, [DecodingConfig(max_new_tokens=12, ignore_eos=True)])
    assert len(c.steps) == 12 and c.stop_reason == "max_new_tokens" and emitted not in c.token_ids
    assert [s.token_id for s in c.steps] == hf_ids(loaded, 12, min_new_tokens=12)
    (beam,) = generate_many(loaded, PROMPT, [DecodingConfig(num_beams=2, max_new_tokens=8, ignore_eos=True)])
    assert len(beam.steps) == 8 and emitted not in beam.token_ids
