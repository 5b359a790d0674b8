"""TOML presets: lossless round trips, every kind of bad input, atomic no-clobber saves, the library."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decodelab.engine import ConfigError, DecodingConfig, PresetExistsError, dumps_preset, load_preset, loads_preset, save_preset
from decodelab.engine.config import SEED_MAX
from decodelab.engine.library.presets import (
    delete_user_preset,
    find_preset,
    list_presets,
    save_user_preset,
    user_preset_dir,
)

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
unit = st.floats(0, 1, allow_nan=False)


@st.composite
def configs(draw):
    num_beams = draw(st.integers(1, 8))
    do_sample = draw(st.booleans()) if num_beams == 1 else False
    max_new = draw(st.integers(1, 4096))
    return DecodingConfig(
        name=draw(text), description=draw(text), do_sample=do_sample,
        temperature=draw(st.floats(0, 100, allow_nan=False)), top_k=draw(st.integers(0, 10**6)),
        top_p=draw(unit.filter(lambda v: v > 0)), min_p=draw(unit),
        typical_p=draw(unit.filter(lambda v: v > 0)),
        repetition_penalty=draw(st.floats(1e-6, 10, allow_nan=False)),
        frequency_penalty=draw(st.floats(-2, 2)), presence_penalty=draw(st.floats(-2, 2)),
        no_repeat_ngram_size=draw(st.integers(0, 10)), num_beams=num_beams,
        length_penalty=draw(st.floats(-1e6, 1e6)), max_new_tokens=max_new,
        min_new_tokens=draw(st.integers(0, max_new)),
        stop_strings=draw(st.lists(text.filter(bool), max_size=4)),
        seed=draw(st.none() | st.integers(0, SEED_MAX)),
    )


@settings(max_examples=300, deadline=None)
@given(configs())
def test_round_trip_is_lossless(config):
    assert loads_preset(dumps_preset(config)) == config


def test_only_non_default_values_are_written():
    text = dumps_preset(DecodingConfig(name="warm", do_sample=True, temperature=0.8))
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines == ["schema = 1", 'name = "warm"', "do_sample = true", "temperature = 0.8"]
    assert text.startswith("# decodelab decoding preset")


BAD = [
    ("", "empty"),
    ("   \n\n", "empty"),
    ("schema = 1\ntemperature = = 3\n", "line 2"),
    ("schema = 1\ntemprature = 0.7\n", "Did you mean 'temperature'"),
    ("schema = 1\nflavour = 'x'\n", "unknown key 'flavour'"),
    ("schema = 1\ntemperature = 'hot'\n", "temperature"),
    ("schema = 1\ntop_p = 1.5\n", "top_p"),
    ("schema = 1\ntop_k = true\n", "top_k"),
    ("schema = 2\n", "schema"),
    ("schema = 'one'\n", "schema"),
    ("schema = 1\ntrust_remote_code = true\n", "decoding settings only"),
    ("schema = 1\n[model]\npath = 'x'\n", "decoding settings only"),
    ("schema = 1\n[extra]\nx = 1\n", "tables"),
    ("schema = 1\nstop_strings = 'END'\n", "stop_strings"),
    ("a\x00b", "binary"),
]


@pytest.mark.parametrize("text,needle", BAD)
def test_bad_preset_text_raises_config_error(text, needle):
    with pytest.raises(ConfigError) as info:
        loads_preset(text)
    assert needle in str(info.value)


def test_bad_files(tmp_path):
    binary = tmp_path / "b.toml"
    binary.write_bytes(bytes(range(256)))
    latin = tmp_path / "l.toml"
    latin.write_bytes("name = 'caf\xe9'".encode("latin-1"))
    empty = tmp_path / "e.toml"
    empty.write_text("")
    for path, needle in ((binary, "binary"), (latin, "UTF-8"), (empty, "empty"),
                         (tmp_path / "missing.toml", "does not exist"), (tmp_path, "folder")):
        with pytest.raises(ConfigError, match=needle):
            load_preset(path)


def test_file_name_is_the_default_name(tmp_path):
    path = tmp_path / "cosy.toml"
    path.write_text("schema = 1\ndo_sample = true\n")
    assert load_preset(path).name == "cosy"


def test_save_is_atomic_and_never_clobbers(tmp_path):
    path = tmp_path / "p.toml"
    first = DecodingConfig(name="first")
    save_preset(first, path)
    before = path.read_text()
    with pytest.raises(PresetExistsError):
        save_preset(DecodingConfig(name="second"), path)
    assert path.read_text() == before
    save_preset(DecodingConfig(name="second"), path, overwrite=True)
    assert load_preset(path).name == "second"
    assert sorted(os.listdir(tmp_path)) == ["p.toml"]  # no stray temporary files


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    import decodelab.engine.library.fileio as fileio
    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio.os, "link", boom)
    monkeypatch.setattr(fileio.os, "replace", boom)
    with pytest.raises(ConfigError, match="No space left"):
        save_preset(DecodingConfig(), tmp_path / "p.toml")
    assert os.listdir(tmp_path) == []


def test_builtins_exist_and_are_valid():
    names = {e.name for e in list_presets() if e.source == "builtin"}
    assert {"greedy", "balanced", "creative", "precise", "no-repeat", "beam"} <= names
    assert find_preset("precise").min_p > 0
    assert find_preset("beam").num_beams > 1
    penalties = find_preset("no-repeat")
    assert penalties.repetition_penalty > 1 and penalties.frequency_penalty > 0
    assert find_preset("greedy").greedy


def test_user_presets_shadow_builtins_and_can_be_deleted():
    save_user_preset(DecodingConfig(name="greedy", description="mine"))
    assert find_preset("greedy").description == "mine"
    assert [e.source for e in list_presets() if e.name == "greedy"] == ["user"]
    delete_user_preset("greedy")
    assert find_preset("greedy").description != "mine"
    with pytest.raises(ConfigError, match="built-in"):
        delete_user_preset("greedy")


def test_user_library_no_overwrite_and_names_checked():
    save_user_preset(DecodingConfig(name="mine"))
    with pytest.raises(PresetExistsError):
        save_user_preset(DecodingConfig(name="mine", temperature=0.5))
    with pytest.raises(ConfigError, match="preset name"):
        save_user_preset(DecodingConfig(name="../escape"))
    assert (user_preset_dir() / "mine.toml").is_file()


def test_lookup_by_path_and_unknown_name(tmp_path):
    path = save_preset(DecodingConfig(name="p", top_k=7, do_sample=True), tmp_path / "p.toml")
    assert find_preset(str(path)).top_k == 7
    with pytest.raises(ConfigError, match="Did you mean 'greedy'"):
        find_preset("gredy")


def test_saved_files_follow_the_umask_so_they_can_be_shared(tmp_path):
    import os
    import stat

    from decodelab.engine.library.fileio import atomic_write_text

    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "shared.toml", "x = 1\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
