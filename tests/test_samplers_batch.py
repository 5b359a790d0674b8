"""The new stages in the real batched decoder: alone == among others, reproducible, neutral values change nothing."""

from __future__ import annotations

import pytest
import torch

from decodelab.engine import DecodingConfig, generate_many
from decodelab.engine.sampling import Sampler

PROMPT = "The for statement"

NEW = [
    DecodingConfig(name="nsigma", do_sample=True, seed=1, top_n_sigma=1.0),
    DecodingConfig(name="xtc", do_sample=True, seed=2, xtc_probability=0.5, xtc_threshold=0.1),
    DecodingConfig(name="dry", seed=3, dry_multiplier=0.8, dry_allowed_length=2),
    DecodingConfig(name="miro2", do_sample=True, seed=4, mirostat=2, mirostat_tau=3.0),
    DecodingConfig(name="miro1", do_sample=True, seed=5, mirostat=1),
    DecodingConfig(name="dyn", do_sample=True, seed=6, dynatemp_range=0.5, epsilon_cutoff=3e-4, eta_cutoff=1e-3),
    DecodingConfig(name="bias", logit_bias={" the": -100.0, "5": 2.0}, banned_strings=(" statement is",),
                   repetition_penalty=1.3, repetition_penalty_last_n=8),
    DecodingConfig(name="order", do_sample=True, seed=8, sampler_order=("top_k", "temperature"), top_k=5,
                   temperature=2.0),
    DecodingConfig(name="plain", do_sample=True, seed=9, temperature=0.8, top_p=0.9),
]


def _short(configs, n=24):
    return [c.replace(max_new_tokens=n) for c in configs]


def test_each_new_stage_gives_the_same_tokens_alone_and_in_the_batch(demo):
    together = generate_many(demo, PROMPT, _short(NEW))
    again = generate_many(demo, PROMPT, _short(NEW))
    for config, row, repeat in zip(_short(NEW), together, again):
        alone = generate_many(demo, PROMPT, [config])[0]
        assert alone.token_ids == row.token_ids, config.name
        assert repeat.token_ids == row.token_ids, config.name


def test_neutral_values_of_the_new_fields_change_nothing(demo):
    base = DecodingConfig(do_sample=True, seed=11, temperature=0.9, top_p=0.95, max_new_tokens=20)
    neutral = base.replace(top_n_sigma=0.0, xtc_probability=0.0, xtc_threshold=0.3, dry_multiplier=0.0, mirostat=0,
                           dynatemp_range=0.0, epsilon_cutoff=0.0, eta_cutoff=0.0, logit_bias=(), banned_strings=(),
                           repetition_penalty_last_n=5, dry_base=3.0)
    a, b = generate_many(demo, PROMPT, [base, neutral])
    assert a.token_ids == b.token_ids
    assert [s.logprob_processed for s in a.steps] == [s.logprob_processed for s in b.steps]


def test_a_ban_and_a_bias_hold(demo):
    tok = demo.tokenizer
    banned = tok.encode(" the", add_special_tokens=False)[0]
    forced = tok.encode(" loop", add_special_tokens=False)[0]
    out = generate_many(demo, PROMPT, [DecodingConfig(logit_bias={" the": float("-inf")}, max_new_tokens=30),
                                       DecodingConfig(logit_bias={str(forced): 100.0}, max_new_tokens=5)])
    assert banned not in out[0].token_ids
    assert out[1].token_ids == [forced] * 5


def test_stages_no_row_uses_do_not_run(monkeypatch):
    from decodelab.engine.sampling import chain

    called = []
    for cls in chain.STAGES:
        monkeypatch.setattr(cls, "apply", lambda self, x, step, _f=cls.apply: called.append((self.name, self.n))
                            or _f(self, x, step))
    configs = [DecodingConfig(), DecodingConfig(do_sample=True, temperature=0.7, top_p=0.9)]
    sampler = Sampler(configs, [0, 1], 50, prompts=torch.tensor([1, 2]), max_new=4)
    sampler.pick(sampler.process(torch.randn(2, 50), 0), 0)
    # top_p on the one row that uses it; temperature, cheap and exact at 1, over both rows (the greedy one at 1)
    assert called == [("temperature", 2), ("top_p", 1)]


@pytest.mark.parametrize("bad", [dict(mirostat=3), dict(top_n_sigma=-1), dict(xtc_probability=1.5),
                                 dict(dry_base=0.5), dict(epsilon_cutoff=1.0), dict(sampler_order=["nope"]),
                                 dict(sampler_order=["xtc", "xtc"]), dict(logit_bias={"5": float("nan")}),
                                 dict(early_stopping="sometimes"), dict(banned_strings=[""]),
                                 dict(repetition_penalty_last_n=-2), dict(dry_allowed_length=0)])
def test_invalid_new_fields_name_the_field_and_the_range(bad):
    from decodelab.engine.config import ConfigError

    with pytest.raises(ConfigError) as err:
        DecodingConfig(**bad)
    assert next(iter(bad)) in str(err.value) and "must" in str(err.value)


def test_unknown_token_ids_and_texts_without_a_tokenizer_are_config_errors():
    from decodelab.engine.config import ConfigError

    with pytest.raises(ConfigError, match="outside this model's vocabulary"):
        Sampler([DecodingConfig(logit_bias={"999": 1.0})], [0], 50)
    with pytest.raises(ConfigError, match="tokenizer"):
        Sampler([DecodingConfig(banned_strings=("x",))], [0], 50)


def test_presets_and_set_carry_the_new_fields():
    from decodelab.cli.common import parse_set
    from decodelab.engine.library.presets import dumps_preset, loads_preset

    config = DecodingConfig(name="modern", do_sample=True, top_n_sigma=1.5, dry_multiplier=0.8,
                            dry_sequence_breakers=("\n", "###"), mirostat=2, early_stopping="never",
                            logit_bias={"50": 2.0, "7": float("-inf"), " hello": -1.0}, banned_strings=("x y",),
                            sampler_order=("top_k", "temperature"), epsilon_cutoff=3e-4)
    assert loads_preset(dumps_preset(config)) == config
    changes = parse_set(('logit_bias={"5" = -1.5, " the" = 2}', 'sampler_order=["xtc", "temperature"]',
                         "mirostat=2", 'dry_sequence_breakers=["\\n"]', 'early_stopping="never"'))
    built = DecodingConfig(do_sample=True).replace(**changes)
    assert dict(built.logit_bias) == {5: -1.5, " the": 2.0} and built.sampler_order == ("xtc", "temperature")
    assert built.mirostat == 2 and built.dry_sequence_breakers == ("\n",) and built.early_stopping == "never"


def test_new_stages_in_a_multi_prompt_batch_match_each_prompt_alone(demo):
    from decodelab.engine.decoding.run import generate_prompts

    prompts = ["The for statement", "x"]
    configs = _short(NEW, 8)
    results = generate_prompts(demo, [(p, configs) for p in prompts])
    for prompt, got in zip(prompts, results):
        alone = generate_many(demo, prompt, configs)
        assert [c.token_ids for c in got] == [c.token_ids for c in alone], prompt
