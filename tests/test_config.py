"""DecodingConfig: every field's valid and invalid values, and the helpers."""

from __future__ import annotations

import dataclasses

import pytest

from decodelab.engine import ConfigError, DecodingConfig
from decodelab.engine.config import FIELD_HELP, FIELD_NAMES

VALID = {
    "name": ["x", "my preset", ""],
    "description": ["", "long text ✓"],
    "do_sample": [True, False],
    "temperature": [0, 0.0, 0.7, 1, 2.5],
    "top_k": [0, 1, 50],
    "top_p": [1e-6, 0.5, 1, 1.0],
    "min_p": [0, 0.05, 1],
    "typical_p": [0.01, 1.0],
    "repetition_penalty": [0.5, 1.0, 1.3],
    "frequency_penalty": [-2, 0, 1.5, 2],
    "presence_penalty": [-2.0, 0, 2.0],
    "no_repeat_ngram_size": [0, 3],
    "length_penalty": [-1.0, 0, 2],
    "max_new_tokens": [1, 512],
    "min_new_tokens": [0, 1],
    "stop_strings": [(), ["\n\n"], ("END", "###")],
    "seed": [None, 0, 42, 2**63 - 1],
}

INVALID = {
    "name": [None, 3],
    "description": [["a"], "\ud800"],
    "do_sample": [1, "true", None],
    "temperature": [-0.1, "0.7", float("nan"), float("inf"), True, None],
    "top_k": [-1, 1.5, "5", True],
    "top_p": [0, -0.1, 1.01, "0.9", float("nan")],
    "min_p": [-0.01, 1.5, "x"],
    "typical_p": [0, 1.2],
    "repetition_penalty": [0, -1, "1.1"],
    "frequency_penalty": [-2.01, 2.5, "0"],
    "presence_penalty": [3, -3],
    "no_repeat_ngram_size": [-1, 2.5],
    "num_beams": [0, -2, 1.5, "4"],
    "length_penalty": [float("inf"), "1"],
    "max_new_tokens": [0, -5, "10", 3.5],
    "min_new_tokens": [-1, 1000],
    "stop_strings": ["END", [""], [3], None],
    "seed": [-1, 2**64, 1.5, "42", True],
}


@pytest.mark.parametrize("field,value", [(f, v) for f, vs in VALID.items() for v in vs])
def test_valid_values_are_accepted(field, value):
    config = DecodingConfig(**{field: value})
    got = getattr(config, field)
    assert got == (tuple(value) if isinstance(value, list) else value)


@pytest.mark.parametrize("field,value", [(f, v) for f, vs in INVALID.items() for v in vs])
def test_invalid_values_raise_config_error_naming_field(field, value):
    with pytest.raises(ConfigError) as info:
        DecodingConfig(**{field: value})
    message = str(info.value)
    assert field in message
    assert "invalid" in message


def test_error_messages_give_the_allowed_range():
    with pytest.raises(ConfigError, match=r"top_p=1\.5.*\(0, 1\]"):
        DecodingConfig(top_p=1.5)
    with pytest.raises(ConfigError, match=r"frequency_penalty=3.*\[-2, 2\]"):
        DecodingConfig(frequency_penalty=3)
    with pytest.raises(ConfigError, match=r"min_new_tokens=20.*max_new_tokens \(10\)"):
        DecodingConfig(min_new_tokens=20, max_new_tokens=10)


def test_beams_only_without_sampling():
    with pytest.raises(ConfigError, match="num_beams"):
        DecodingConfig(num_beams=4, do_sample=True, temperature=0.7)
    assert DecodingConfig(num_beams=4).num_beams == 4
    assert DecodingConfig(num_beams=4, do_sample=True, temperature=0).num_beams == 4  # T=0 is greedy


def test_defaults_are_neutral():
    config = DecodingConfig()
    assert config.top_k == 0 and config.top_p == 1.0 and config.min_p == 0.0 and config.typical_p == 1.0
    assert config.repetition_penalty == 1.0 and config.frequency_penalty == 0 and config.presence_penalty == 0
    assert config.no_repeat_ngram_size == 0 and config.num_beams == 1 and config.seed is None
    assert config.changed_fields() == set()


def test_temperature_zero_means_greedy():
    assert DecodingConfig(do_sample=True, temperature=0).greedy
    assert not DecodingConfig(do_sample=True, temperature=0).samples
    assert DecodingConfig(do_sample=True, temperature=0.5).samples
    assert DecodingConfig().greedy


def test_frozen_value_equality_and_hashable():
    a = DecodingConfig(temperature=0.7, stop_strings=["x"])
    b = DecodingConfig(temperature=0.7, stop_strings=("x",))
    assert a == b and hash(a) == hash(b)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.temperature = 1.0  # type: ignore[misc]


def test_ints_become_floats_for_float_fields():
    config = DecodingConfig(temperature=1, top_p=1)
    assert isinstance(config.temperature, float) and isinstance(config.top_p, float)


def test_summary_line():
    config = DecodingConfig(do_sample=True, temperature=0.7, top_p=0.9, repetition_penalty=1.1, seed=42)
    assert config.summary() == "T=0.7 p=0.9 k=off rep=1.1 seed=42"
    assert DecodingConfig().summary() == "greedy"
    assert DecodingConfig(num_beams=4).summary() == "beams=4"
    assert "k=40" in DecodingConfig(do_sample=True, top_k=40).summary()
    assert "seed=auto" in DecodingConfig(do_sample=True).summary()


def test_changed_fields():
    config = DecodingConfig(name="x", do_sample=True, top_p=0.9)
    assert config.changed_fields() == {"name", "do_sample", "top_p"}


def test_replace_validates_and_rejects_unknown():
    config = DecodingConfig()
    assert config.replace(temperature=0.3).temperature == 0.3
    with pytest.raises(ConfigError):
        config.replace(temperature=-1)
    with pytest.raises(ConfigError, match="Did you mean 'temperature'"):
        config.replace(temprature=0.3)


def test_from_dict_suggests_close_names():
    with pytest.raises(ConfigError, match="Did you mean 'top_p'"):
        DecodingConfig.from_dict({"topp": 0.9})


def test_every_field_has_help():
    assert set(FIELD_HELP) == set(FIELD_NAMES)


def test_a_summary_says_when_xtc_is_off_because_of_its_threshold():
    """Issue 17: xtc_threshold=0.6 was accepted and XTC vanished from the summary without a word."""
    on = DecodingConfig(do_sample=True, xtc_probability=0.5, xtc_threshold=0.1)
    off = on.replace(xtc_threshold=0.6)
    assert "xtc=0.5@0.1" in on.summary()
    assert "xtc=off(threshold 0.6 > 0.5)" in off.summary()


def test_the_declared_fields_are_the_table_rows():
    """Issue 31: DecodingConfig's fields are declared in code (for editors and type checkers), written from SETTINGS
    by scripts/config_class.py; this fails when a row is added, renamed, retyped or given another default."""
    import dataclasses
    from pathlib import Path

    from decodelab.engine.checks import ANNOTATIONS, with_fields
    from decodelab.engine.config import SETTINGS

    source = (Path(__file__).resolve().parents[1] / "engine" / "config.py").read_text(encoding="utf-8")
    assert with_fields(source, SETTINGS) == source, "run: python scripts/config_class.py"
    fields = dataclasses.fields(DecodingConfig)
    assert [f.name for f in fields] == [s.name for s in SETTINGS]
    for f, s in zip(fields, SETTINGS):
        assert (f.type, f.default) == (ANNOTATIONS[s.kind], s.default), s.name


def test_the_written_fields_follow_a_changed_table():
    """The writer is not a constant: a table with a row more and a default changed writes both."""
    import dataclasses

    from decodelab.engine.checks import fields_block, with_fields
    from decodelab.engine.config import SETTINGS

    changed = [dataclasses.replace(SETTINGS[0], default="other"), *SETTINGS[1:],
               dataclasses.replace(SETTINGS[3], name="new_knob", default=0.25)]
    block = fields_block(changed)
    assert "    name: str = 'other'" in block and block.rstrip().splitlines()[-2] == "    new_knob: float = 0.25"
    source = "before\n" + fields_block(SETTINGS) + "\nafter\n"
    assert with_fields(source, changed) == "before\n" + block + "\nafter\n"
