"""generate_many: equivalence with HF generate, reproducibility, stops, cancellation, beams, bad input."""

from __future__ import annotations

import dataclasses
import threading

import pytest
import torch

from decodelab.engine import DecodingConfig, generate_many
from decodelab.engine.decoding.run import bucket_rows
from decodelab.engine.results import GenerationError

from conftest import ARCHS

PROMPT = "The for statement is used"
SAMPLERS = [
    DecodingConfig(do_sample=True, temperature=0.9, top_p=0.9, seed=1),
    DecodingConfig(do_sample=True, temperature=1.2, top_k=20, seed=2),
    DecodingConfig(do_sample=True, min_p=0.1, repetition_penalty=1.3, seed=3),
    DecodingConfig(do_sample=True, typical_p=0.8, frequency_penalty=0.5, presence_penalty=0.5, seed=4),
    DecodingConfig(do_sample=True, temperature=0.7, no_repeat_ngram_size=2, seed=5),
    DecodingConfig(do_sample=True, temperature=1.0, seed=6),
    DecodingConfig(do_sample=True, temperature=0.3, top_k=5, top_p=0.5, seed=7),
]


def hf_greedy(loaded, prompt, config):
    ids = loaded.tokenizer(prompt, return_tensors="pt")
    out = loaded.model.generate(**ids, max_new_tokens=config.max_new_tokens, do_sample=False,
                                repetition_penalty=config.repetition_penalty,
                                no_repeat_ngram_size=config.no_repeat_ngram_size,
                                pad_token_id=loaded.tokenizer.eos_token_id, eos_token_id=None)
    return out[0, ids["input_ids"].shape[1]:].tolist()


@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_matches_hf_generate_alone_and_mixed(tiny_models, arch):
    loaded = tiny_models[arch]
    greedy = DecodingConfig(max_new_tokens=24)
    penalised = DecodingConfig(max_new_tokens=24, repetition_penalty=1.4, no_repeat_ngram_size=3)
    expected = hf_greedy(loaded, PROMPT, greedy)
    expected_penalised = hf_greedy(loaded, PROMPT, penalised)
    alone = generate_many(loaded, PROMPT, [greedy])[0]
    mixed = generate_many(loaded, PROMPT, SAMPLERS[:3] + [greedy] + SAMPLERS[3:] + [penalised])
    assert alone.token_ids == expected
    assert mixed[3].token_ids == expected
    assert mixed[-1].token_ids == expected_penalised
    assert mixed[3].stop_reason == "max_new_tokens"


def test_logprobs_are_the_models_own(llama):
    ids = llama.tokenizer(PROMPT, return_tensors="pt")
    out = llama.model.generate(**ids, max_new_tokens=8, do_sample=False, output_logits=True,
                               return_dict_in_generate=True, pad_token_id=0, eos_token_id=None)
    ours = generate_many(llama, PROMPT, [DecodingConfig(max_new_tokens=8)])[0]
    for step, logits in zip(ours.steps, out.logits):
        logp = torch.log_softmax(logits[0].float(), -1)
        assert step.logprob == pytest.approx(logp[step.token_id].item(), abs=1e-4)
        assert step.rank == 0
        assert step.top[0].token_id == step.token_id
        assert step.top[1].logprob <= step.top[0].logprob


def test_identical_seeded_configs_give_identical_text(llama):
    config = SAMPLERS[0]
    a, b = generate_many(llama, PROMPT, [config, config])
    assert a.token_ids == b.token_ids and a.text == b.text


def test_seeded_config_same_alone_in_a_batch_of_8_and_across_runs(tiny_models):
    for arch in ("llama", "gpt2"):
        loaded = tiny_models[arch]
        target = DecodingConfig(do_sample=True, temperature=1.1, top_p=0.95, seed=1234, max_new_tokens=32)
        alone = generate_many(loaded, PROMPT, [target])[0]
        batch = generate_many(loaded, PROMPT, SAMPLERS[:4] + [target] + SAMPLERS[4:])[4]
        again = generate_many(loaded, PROMPT, [target])[0]
        assert alone.token_ids == batch.token_ids == again.token_ids


def test_different_seeds_differ(llama):
    a, b = generate_many(llama, PROMPT, [dataclasses.replace(SAMPLERS[5], seed=s, max_new_tokens=32) for s in (1, 2)])
    assert a.token_ids != b.token_ids


def test_unseeded_config_reports_a_seed_that_reproduces(llama):
    config = DecodingConfig(do_sample=True, max_new_tokens=24)
    first = generate_many(llama, PROMPT, [config])[0]
    assert isinstance(first.seed, int)
    again = generate_many(llama, PROMPT, [config.replace(seed=first.seed)])[0]
    assert again.token_ids == first.token_ids
    other = generate_many(llama, PROMPT, [config])[0]
    assert other.seed != first.seed


def test_on_step_once_per_step_with_every_running_row(llama):
    events = []
    configs = [DecodingConfig(max_new_tokens=3), DecodingConfig(max_new_tokens=6)]
    generate_many(llama, PROMPT, configs, on_step=events.append)
    steps = [e for e in events if e.step >= 0]
    assert [sorted(e.tokens) for e in steps] == [[0, 1]] * 3 + [[1]] * 3
    assert steps[2].finished == {0: "max_new_tokens"} and steps[5].finished == {1: "max_new_tokens"}


def test_finished_rows_do_not_disturb_others(llama):
    short, long = DecodingConfig(max_new_tokens=4), DecodingConfig(max_new_tokens=20)
    a, b = generate_many(llama, PROMPT, [short, long])
    assert len(a.token_ids) == 4 and len(b.token_ids) == 20
    assert b.token_ids == generate_many(llama, PROMPT, [long])[0].token_ids
    assert a.token_ids == b.token_ids[:4]


@pytest.fixture
def eos_biased(llama):
    """The tiny llama with a large bonus on EOS, so greedy decoding wants to stop at once."""
    eos = llama.tokenizer.eos_token_id
    handle = llama.model.lm_head.register_forward_hook(lambda m, i, out: out.index_add(
        -1, torch.tensor([eos]), torch.full(out.shape[:-1] + (1,), 50.0)))
    yield llama
    handle.remove()


def test_eos_stops_and_min_new_tokens_suppresses_it(eos_biased):
    eos = eos_biased.tokenizer.eos_token_id
    stops, waits = generate_many(eos_biased, PROMPT, [DecodingConfig(), DecodingConfig(min_new_tokens=5)])
    assert stops.stop_reason == "eos" and stops.token_ids == [eos] and stops.text == ""
    assert waits.stop_reason == "eos" and len(waits.token_ids) == 6
    assert eos not in waits.token_ids[:5] and waits.token_ids[5] == eos


def test_stop_string_across_token_boundaries_is_trimmed(demo):
    llama = demo  # real words, so tokens carry multi-character pieces
    base = generate_many(llama, PROMPT, [DecodingConfig(max_new_tokens=30)])[0]
    pieces = [s.text for s in base.steps]

    def spanning(i):  # the last character of token i and the first of token i+1, first seen right there
        if not (pieces[i] and pieces[i + 1]):
            return None
        stop, boundary = pieces[i][-1] + pieces[i + 1][0], len("".join(pieces[: i + 1]))
        return stop if base.text.index(stop) == boundary - 1 else None

    stop = next(s for s in map(spanning, range(len(pieces) - 1)) if s)
    cut = base.text.index(stop)
    result = generate_many(llama, PROMPT, [DecodingConfig(max_new_tokens=30, stop_strings=(stop,))])[0]
    assert result.stop_reason == "stop_string"
    assert result.text == base.text[:cut]
    assert stop not in result.text
    assert "".join(step.text for step in result.steps) == result.text  # the steps trim with the text


def test_steps_join_to_the_text_when_a_stop_string_begins_tokens_earlier(demo):
    base = generate_many(demo, PROMPT, [DecodingConfig(max_new_tokens=30)])[0]
    pieces = [s.text for s in base.steps]
    i = next(i for i in range(2, len(pieces) - 1) if len(pieces[i]) >= 2 and pieces[i + 1])
    start = len("".join(pieces[:i])) + 1  # inside token i, ending in token i + 1
    stop = base.text[start : len("".join(pieces[: i + 2]))]
    cut = base.text.index(stop)
    result = generate_many(demo, PROMPT, [DecodingConfig(max_new_tokens=30, stop_strings=(stop,))])[0]
    assert result.stop_reason == "stop_string" and result.text == base.text[:cut]
    assert "".join(step.text for step in result.steps) == result.text


def test_cancel_returns_partial_completions(llama):
    cancel = threading.Event()

    def on_step(event):
        if event.step == 2:
            cancel.set()

    results = generate_many(llama, PROMPT, [DecodingConfig(max_new_tokens=50), SAMPLERS[0]],
                            on_step=on_step, cancel=cancel)
    assert [r.stop_reason for r in results] == ["cancelled", "cancelled"]
    assert [len(r.token_ids) for r in results] == [3, 3]


def test_beams_match_hf_and_carry_scores(llama):
    config = DecodingConfig(num_beams=3, max_new_tokens=12, length_penalty=1.0, early_stopping=True)
    ids = llama.tokenizer(PROMPT, return_tensors="pt")
    expected = llama.model.generate(**ids, num_beams=3, max_new_tokens=12, do_sample=False, early_stopping=True,
                                    pad_token_id=0, eos_token_id=llama.tokenizer.eos_token_id)
    result = generate_many(llama, PROMPT, [DecodingConfig(max_new_tokens=5), config])[1]
    assert result.token_ids == expected[0, ids["input_ids"].shape[1]:].tolist()
    assert result.sequence_score is not None
    assert len(result.steps) == len(result.token_ids)
    assert all(s.logprob <= 0 for s in result.steps)


def test_sixty_four_rows_on_the_demo_model(demo):
    configs = [dataclasses.replace(SAMPLERS[i % len(SAMPLERS)], seed=i, max_new_tokens=8, min_new_tokens=8)
               for i in range(64)]
    results = generate_many(demo, PROMPT, configs)
    assert len(results) == 64 and all(len(r.token_ids) == 8 for r in results)
    assert results[7].token_ids == generate_many(demo, PROMPT, [configs[7]])[0].token_ids
    assert len({tuple(r.token_ids) for r in results}) > 32  # different seeds, different texts


def test_bucket_sizes():
    assert [bucket_rows(n) for n in (1, 8, 9, 17, 64, 65, 200)] == [8, 8, 16, 32, 64, 128, 256]


def test_bad_input(llama):
    with pytest.raises(GenerationError, match="no decoding configs"):
        generate_many(llama, PROMPT, [])
    with pytest.raises(GenerationError, match="context is 256"):
        generate_many(llama, "word " * 400, [DecodingConfig()])
    with pytest.raises(GenerationError, match="lower max_new_tokens"):
        generate_many(llama, PROMPT, [DecodingConfig(max_new_tokens=250)])
    with pytest.raises(GenerationError, match="must be text"):
        generate_many(llama, None, [DecodingConfig()])


def test_empty_prompt_starts_from_bos(llama):
    result = generate_many(llama, "", [DecodingConfig(max_new_tokens=3, min_new_tokens=3)])[0]
    assert result.prompt_tokens == 1 and len(result.token_ids) == 3


class _NoBos:
    """A tokenizer that has no BOS token; everything else is the wrapped one."""

    bos_token_id = None

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, *args, **kwargs):
        return self.inner(*args, **kwargs)


def test_empty_prompt_without_bos_is_an_error(llama):
    no_bos = dataclasses.replace(llama, tokenizer=_NoBos(llama.tokenizer))
    with pytest.raises(GenerationError, match="no BOS"):
        generate_many(no_bos, "", [DecodingConfig()])


def test_out_of_memory_is_reported_and_model_stays_usable(llama, monkeypatch):
    real_forward = llama.model.forward
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(llama.model, "forward", flaky)
    with pytest.raises(GenerationError, match=r"out of memory running 3 configs.*fewer configs"):
        generate_many(llama, PROMPT, [DecodingConfig()] * 3)
    monkeypatch.undo()
    assert len(generate_many(llama, PROMPT, [DecodingConfig(max_new_tokens=4)])[0].token_ids) == 4


def test_chat_mode_needs_a_template(llama):
    chat = dataclasses.replace(llama, spec=dataclasses.replace(llama.spec, chat=True))
    with pytest.raises(GenerationError, match="no chat template"):
        generate_many(chat, PROMPT, [DecodingConfig()])


def test_branch_continues_from_a_chosen_alternative(llama):
    greedy = DecodingConfig(max_new_tokens=16)
    base = generate_many(llama, PROMPT, [greedy])[0]
    alternative = base.steps[3].top[1]
    prefix = base.token_ids[:3] + [alternative.token_id]
    branch = generate_many(llama, PROMPT, [greedy], prefix_ids=prefix)[0]
    assert branch.token_ids[:4] == prefix and len(branch.token_ids) == 16
    assert branch.steps[3].logprob == pytest.approx(alternative.logprob, abs=1e-5)
    assert branch.steps[3].rank == 1
    ids = llama.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    forced = torch.cat([ids, torch.tensor([prefix])], dim=1)
    expected = llama.model.generate(forced, attention_mask=torch.ones_like(forced), max_new_tokens=12,
                                    do_sample=False, pad_token_id=0, eos_token_id=None)
    assert branch.token_ids[4:] == expected[0, forced.shape[1]:].tolist()


def test_branch_of_a_beam_is_refused(llama):
    with pytest.raises(GenerationError, match="beam"):
        generate_many(llama, PROMPT, [DecodingConfig(num_beams=2)], prefix_ids=[5])


def test_models_without_logits_to_keep_still_work(llama, monkeypatch):
    real = llama.model.forward

    def old_style(*args, **kwargs):
        if "logits_to_keep" in kwargs:
            raise TypeError("forward() got an unexpected keyword argument 'logits_to_keep'")
        return real(*args, **kwargs)

    expected = generate_many(llama, PROMPT, [DecodingConfig(max_new_tokens=6), DecodingConfig(num_beams=2, max_new_tokens=4)])
    monkeypatch.setattr(llama.model, "forward", old_style)
    got = generate_many(llama, PROMPT, [DecodingConfig(max_new_tokens=6), DecodingConfig(num_beams=2, max_new_tokens=4)])
    assert [c.token_ids for c in got] == [c.token_ids for c in expected]


def test_json_numbers_have_no_negative_zero_or_infinities():
    import json

    from decodelab.engine.results import json_number

    assert json.dumps([json_number(-0.0), json_number(float("-inf")), json_number(float("nan")), json_number(3)]) \
        == "[0.0, null, null, 3]"


def test_context_errors_count_tokens_in_good_english():
    from types import SimpleNamespace

    from decodelab.engine.decoding.run import check_context

    with pytest.raises(GenerationError, match=r"^the prompt is 1 token but the model's context is 1: shorten it$"):
        check_context(SimpleNamespace(context_length=1), 1, 4)
    with pytest.raises(GenerationError, match=r"the prompt is 2 tokens and max_new_tokens is 9"):
        check_context(SimpleNamespace(context_length=10), 2, 9)
