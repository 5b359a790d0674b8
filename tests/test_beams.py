"""Beam configs against HF generate: early_stopping's three values with beams that meet EOS, stop strings
honoured during the search, logit bias and banned strings carried into HF's processors."""

from __future__ import annotations

import pytest
import torch

from decodelab.engine import DecodingConfig, generate_many

PROMPT = "The for statement"
EOS_BONUS = 4.0


@pytest.fixture
def eos_likely(llama):
    """The tiny llama with a bonus on EOS, so some beams finish early and others go on."""
    eos = llama.tokenizer.eos_token_id
    handle = llama.model.lm_head.register_forward_hook(lambda m, i, out: out.index_add(
        -1, torch.tensor([eos]), torch.full(out.shape[:-1] + (1,), EOS_BONUS)))
    yield llama
    handle.remove()


def _hf(loaded, **kwargs):
    ids = loaded.tokenizer(PROMPT, return_tensors="pt")
    out = loaded.model.generate(**ids, do_sample=False, pad_token_id=0, eos_token_id=loaded.tokenizer.eos_token_id,
                                **kwargs)
    new = out[0, ids["input_ids"].shape[1]:].tolist()
    eos = loaded.tokenizer.eos_token_id
    return new[: new.index(eos) + 1] if eos in new else new


def test_early_stopping_follows_hf_for_each_value(eos_likely):
    results = {}
    for value in (True, False, "never"):
        config = DecodingConfig(num_beams=4, max_new_tokens=16, length_penalty=2.0, early_stopping=value)
        ours = generate_many(eos_likely, PROMPT, [config])[0]
        assert ours.token_ids == _hf(eos_likely, num_beams=4, max_new_tokens=16, length_penalty=2.0,
                                     early_stopping=value), value
        results[value] = ours.token_ids
    assert any(r[-1] == eos_likely.tokenizer.eos_token_id for r in results.values()), "beams should meet EOS"


def test_early_stopping_defaults_to_hf_default():
    from transformers import GenerationConfig

    assert DecodingConfig().early_stopping is GenerationConfig._get_default_generation_params()["early_stopping"]


@pytest.mark.parametrize("stop", ["executed", "The", "clause", "\n"])
def test_beams_stop_at_a_stop_string_during_the_search(demo, stop):
    """A beam that meets a stop string is finished, like one that meets EOS (HF StopStringCriteria)."""
    config = DecodingConfig(num_beams=3, max_new_tokens=24, stop_strings=(stop,))
    result = generate_many(demo, PROMPT, [config])[0]
    expected = _hf(demo, num_beams=3, max_new_tokens=24, stop_strings=[stop], tokenizer=demo.tokenizer,
                   early_stopping=False)
    assert result.token_ids == expected
    hit = stop in demo.tokenizer.decode(expected)
    assert (result.stop_reason == "stop_string") == hit and stop not in result.text
    assert "".join(s.text for s in result.steps) == result.text
    if stop in ("clause", "\n"):
        assert hit and len(result.token_ids) < 24  # the search itself ended there


def test_beams_carry_logit_bias_and_banned_strings(demo):
    base = generate_many(demo, PROMPT, [DecodingConfig(num_beams=3, max_new_tokens=12)])[0]
    word = demo.tokenizer.decode(base.token_ids[1:2])
    config = DecodingConfig(num_beams=3, max_new_tokens=12, banned_strings=(word,), logit_bias={" the": -5.0})
    result = generate_many(demo, PROMPT, [config])[0]
    banned_id = demo.tokenizer.encode(word, add_special_tokens=False)
    the = demo.tokenizer.encode(" the", add_special_tokens=False)[0]
    expected = _hf(demo, num_beams=3, max_new_tokens=12, bad_words_ids=[banned_id], sequence_bias={(the,): -5.0})
    assert result.token_ids == expected
    if len(banned_id) == 1:
        assert banned_id[0] not in result.token_ids
