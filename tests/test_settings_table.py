"""The settings table (engine/config.py) is the one source: the config, the text parser, the batch's
per-row tensors, sweeps, the server's request fields and the exports agree with it."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from decodelab.engine.config import (FIELD_HELP, FIELD_NAMES, SETTING, SETTINGS, STACKS, ConfigError,
                                     DecodingConfig)
from decodelab.engine.fieldtext import format_text, parse_assignment, parse_text
from decodelab.engine.dialects import to_hf, to_openai, to_vllm, to_webui

# A valid value away from the default for every setting, so that each one is "changed".
CHANGED = {
    "name": "x", "description": "d", "do_sample": True, "temperature": 0.7, "top_k": 40, "top_p": 0.9,
    "min_p": 0.05, "typical_p": 0.95, "repetition_penalty": 1.1, "frequency_penalty": 0.3, "presence_penalty": 0.2,
    "no_repeat_ngram_size": 3, "num_beams": 1, "length_penalty": 1.2, "max_new_tokens": 64, "min_new_tokens": 2,
    "stop_strings": ("END",), "seed": 7, "early_stopping": True, "top_n_sigma": 1.5, "xtc_probability": 0.5,
    "xtc_threshold": 0.2, "dry_multiplier": 0.8, "dry_base": 2.0, "dry_allowed_length": 3, "dry_penalty_last_n": 64,
    "dry_sequence_breakers": ("\n",), "mirostat": 2, "mirostat_tau": 4.0, "mirostat_eta": 0.2,
    "dynatemp_range": 0.3, "dynatemp_exponent": 1.5, "epsilon_cutoff": 3e-4, "eta_cutoff": 2e-3,
    "logit_bias": ((5, -1.0),), "banned_strings": ("bad",), "repetition_penalty_last_n": 32,
    "sampler_order": ("temperature",), "smoothing_factor": 0.2, "smoothing_curve": 2.0, "top_h": 0.5, "tfs": 0.95,
    "top_a": 0.1, "adaptive_target": -0.5, "adaptive_decay": 0.8, "logprob_tokens": (5, 6), "guidance_scale": 1.5,
    "negative_prompt": "bad", "json_schema": '{"type":"object"}', "p_less": True,
    "ignore_eos": True, "stop_token_ids": (5, 6),
}
# A config takes one structured-output constraint at a time: the other three are changed one by one.
OTHER_CONSTRAINTS = {"regex": "a+", "choice": ("yes", "no"), "grammar": 'root ::= "a"'}
# p_less and p_less_norm are two thresholds of one stage: one at a time too.
OTHER_VARIANTS = {"p_less_norm": True}


def each_changed():
    """CHANGED, then CHANGED with each other constraint in place of json_schema."""
    yield CHANGED
    for name, value in OTHER_CONSTRAINTS.items():
        yield {**CHANGED, "json_schema": "", name: value}
    yield {**CHANGED, "p_less": False, **OTHER_VARIANTS}


def test_the_config_has_exactly_the_table_s_fields_and_defaults():
    fields = dataclasses.fields(DecodingConfig)
    assert [f.name for f in fields] == [s.name for s in SETTINGS] == list(FIELD_NAMES)
    assert all(f.default == SETTING[f.name].default for f in fields)
    assert set(FIELD_HELP) == set(FIELD_NAMES) and all(FIELD_HELP.values())
    assert set(CHANGED) | set(OTHER_CONSTRAINTS) | set(OTHER_VARIANTS) == set(FIELD_NAMES)


def test_every_row_is_checked_by_its_own_rule():
    for s in SETTINGS:
        if s.kind in ("int", "float") and (s.low is not None or s.high is not None):
            bad = (s.low - 1) if s.low is not None else s.high + 1
            with pytest.raises(ConfigError) as err:
                DecodingConfig(**{s.name: bad})
            assert err.value.field == s.name and s.allowed in str(err.value)


def test_one_parser_reads_every_field_back_from_its_text():
    for changed in each_changed():
        config = DecodingConfig(**changed)
        for name in FIELD_NAMES:
            value = parse_text(name, format_text(config, name))
            assert config.replace(**{name: value}) == config, name


def test_lists_and_tables_read_with_or_without_brackets():
    assert parse_text("stop_strings", '"a", "b"') == parse_text("stop_strings", '["a", "b"]') == ["a", "b"]
    assert parse_text("logit_bias", '"5" = -1') == parse_text("logit_bias", '{"5" = -1}') == {"5": -1}
    assert parse_assignment("seed=auto") == ("seed", None)
    with pytest.raises(ConfigError) as err:
        parse_text("stop_strings", '"a", b')
    assert err.value.field == "stop_strings"
    with pytest.raises(ConfigError, match="Did you mean 'temperature'"):
        parse_assignment("temprature=0.7")


def test_every_sampler_setting_is_read_by_the_stage_the_table_names(demo):
    import torch

    from decodelab.engine.config import STAGE, STAGE_TABLE
    from decodelab.engine.sampling import Sampler
    from decodelab.engine.sampling.chain import CLASSES

    assert set(CLASSES) == {row.name for row in STAGE_TABLE}
    assert all(s.stage in STAGE or s.stage in ("sample", "beams", "chain") for s in SETTINGS if s.stage)
    vocab = demo.model.config.vocab_size
    config = DecodingConfig(**{**CHANGED, "xtc_threshold": 0.4, "adaptive_target": -1.0, "mirostat": 0,
                               "ignore_eos": False})  # on, the stage holds max_new_tokens (tests/test_eos.py)
    sampler = Sampler([config], [1], vocab, torch.device("cpu"), tokenizer=demo.tokenizer,
                      prompts=torch.tensor([1, 2]), max_new=4)
    (_, _, chain), = sampler.chains
    built = {stage.name: stage for stage, _, _ in chain.stages}
    for s in SETTINGS:
        if s.stage in built and s.kind in ("float", "int") and s.stage not in ("top_k",):
            stage = built[s.stage]
            held = getattr(stage, s.name)
            assert held.shape[0] == 1 and float(held.flatten()[0]) == pytest.approx(getattr(config, s.name)), s.name
    assert set(built) >= {"penalties", "dry", "temperature", "top_k", "min_p", "xtc", "grammar", "logit_bias"}


@pytest.mark.parametrize("stack, export", [("hf", to_hf), ("vllm", to_vllm), ("openai", to_openai),
                                           ("webui", to_webui)])
def test_exports_write_every_setting_the_table_names_for_their_stack(stack, export):
    assert stack in STACKS
    written = set()
    for changed in each_changed():
        converted = export(DecodingConfig(**changed))
        data = yaml.safe_load(converted.data) if isinstance(converted.data, str) else converted.data
        written |= set(data)
    named = {s.name_in(stack) for s in SETTINGS if s.name_in(stack)}
    assert named <= written, named - written


def test_the_server_names_a_bad_field_as_the_client_sent_it():
    from decodelab.server.schemas import _as_request_error

    with pytest.raises(ConfigError) as err:
        DecodingConfig(max_new_tokens=0)
    assert _as_request_error(err.value) == ("max_tokens=0 is invalid: it must be an integer >= 1", "max_tokens")


def test_a_bare_logit_bias_text_key_is_refused_since_its_leading_space_would_be_lost():
    from decodelab.engine.fieldtext import parse_text

    with pytest.raises(ConfigError, match='write " cat" = -5'):
        parse_text("logit_bias", " cat = -5")
    assert parse_text("logit_bias", '" cat" = -5, 50256 = -100') == {" cat": -5, "50256": -100}
