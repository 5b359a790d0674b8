"""Export to and import from HF, vLLM, OpenAI, llama.cpp and text-generation-webui."""

from __future__ import annotations

import shlex

import pytest

from decodelab.engine import ConfigError, DecodingConfig, find_preset
from decodelab.engine.config import LLAMACPP_WHOLE
from decodelab.engine.dialects import from_hf, from_webui_yaml, to_hf, to_llamacpp, to_openai, to_vllm

FULL = DecodingConfig(name="full", do_sample=True, temperature=0.8, top_k=40, top_p=0.9, min_p=0.05, typical_p=0.95,
                      repetition_penalty=1.1, frequency_penalty=0.2, presence_penalty=0.1, no_repeat_ngram_size=3,
                      max_new_tokens=77, min_new_tokens=2, stop_strings=("\n\n",), seed=5)


def test_hf_export_uses_hf_names_and_explicit_neutral_top_k():
    from transformers import GenerationConfig

    data = to_hf(DecodingConfig(do_sample=True, temperature=0.7)).data
    assert data["top_k"] == 0  # HF's hidden default is 50: written explicitly
    config = GenerationConfig(**data)  # HF accepts every key and value
    config.validate()
    assert config.top_k == 0 and config.temperature == 0.7
    notes = to_hf(FULL).notes
    assert any("frequency_penalty" in n for n in notes) and any("seed" in n for n in notes)


def test_hf_round_trip_for_what_hf_can_hold():
    config = FULL.replace(frequency_penalty=0.0, presence_penalty=0.0, seed=None)
    back = from_hf(to_hf(config).data, name="full").data
    assert back == config


def test_hf_import_makes_default_top_k_explicit_and_reports_leftovers():
    converted = from_hf({"do_sample": True, "temperature": 0.6, "epsilon_cutoff": 0.0003, "eos_token_id": 2,
                         "penalty_alpha": 0.6})
    assert converted.data.top_k == 50 and converted.data.epsilon_cutoff == 0.0003
    assert any("top_k=50" in n for n in converted.notes)
    assert any("penalty_alpha" in n for n in converted.notes)
    assert not any("eos_token_id" in n for n in converted.notes)
    with pytest.raises(ConfigError):
        from_hf({"do_sample": True, "top_p": 3})


def test_vllm_export_field_names_and_ranges():
    data = to_vllm(DecodingConfig(do_sample=True, temperature=0.7)).data
    assert data["top_k"] == -1 and data["temperature"] == 0.7
    assert set(data) == {"temperature", "top_p", "top_k", "min_p", "repetition_penalty", "frequency_penalty",
                         "presence_penalty", "max_tokens", "min_tokens", "ignore_eos", "seed"}  # no stop strings
    assert to_vllm(DecodingConfig()).data["temperature"] == 0.0  # greedy
    notes = to_vllm(FULL).notes
    assert any("typical_p" in n for n in notes) and any("no_repeat_ngram_size" in n for n in notes)


def test_openai_export_drops_nothing_silently():
    converted = to_openai(FULL)
    assert set(converted.data) == {"temperature", "top_p", "frequency_penalty", "presence_penalty", "max_tokens",
                                   "stop", "seed"}
    for missing in ("top_k", "min_p", "typical_p", "repetition_penalty", "no_repeat_ngram_size", "min_new_tokens"):
        assert any(f"no {missing}" in n for n in converted.notes), missing
    assert any("0-2" in n for n in to_openai(DecodingConfig(do_sample=True, temperature=2.5)).notes)


def test_llamacpp_flags_neutralise_its_defaults():
    flags = shlex.split(to_llamacpp(DecodingConfig(do_sample=True, temperature=0.7, seed=3)).data)
    pairs = dict(zip(flags[::2], flags[1::2]))
    assert pairs["--top-k"] == "0" and pairs["--top-p"] == "1" and pairs["--min-p"] == "0"
    # the whole context as a count: current llama.cpp refuses -1 ("invalid repeat-last-n") and reads 0 as off
    assert pairs["--repeat-last-n"] == str(LLAMACPP_WHOLE) and pairs["--temp"] == "0.7" and pairs["--seed"] == "3"
    assert "--reverse-prompt" in shlex.split(to_llamacpp(FULL).data)


def test_webui_yaml_import():
    text = "temperature: 0.7\ntop_p: 0.9\ntop_k: 20\nrepetition_penalty: 1.15\ntfs: 1\ntop_a: 0.3\nseed: -1\n"
    converted = from_webui_yaml(text, "webui")
    assert converted.data.do_sample and converted.data.top_k == 20 and converted.data.seed is None
    assert converted.data.top_a == 0.3 and converted.data.tfs == 1.0  # the webui's own samplers come across
    assert not converted.notes
    for bad in ("[1, 2]", "a: [", "temperature: hot"):
        with pytest.raises(ConfigError):
            from_webui_yaml(bad)


@pytest.mark.parametrize("name", ["greedy", "balanced", "creative", "precise", "no-repeat", "beam"])
def test_every_builtin_exports_everywhere(name):
    config = find_preset(name)
    for export in (to_hf, to_vllm, to_openai, to_llamacpp):
        assert export(config).data


def test_llamacpp_flags_stay_on_one_line_and_bash_reads_back_the_newline_stop_strings():
    from decodelab.engine.dialects import export_preset
    from tests.test_interop_samplers import shell_words

    config = DecodingConfig(name="nl", stop_strings=("\n\n", "it's", "猫\t"), do_sample=True, temperature=0.7)
    flags = export_preset(config, "llamacpp").data
    assert "\n" not in flags and "$'\\n\\n'" in flags
    words = shell_words(flags)
    assert [words[i + 1] for i, w in enumerate(words) if w == "--reverse-prompt"] == ["\n\n", "it's", "猫\t"]
