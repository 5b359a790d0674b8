"""The new sampler fields through every export and import: carried where the target has them, noted where not."""

from __future__ import annotations

import subprocess

import pytest

from decodelab.engine import DecodingConfig
from decodelab.engine.config import LLAMACPP_WHOLE
from decodelab.engine.dialects import export_preset, from_hf, to_hf, to_llamacpp, to_openai, to_vllm
from decodelab.engine.dialects import from_webui_yaml, to_webui

MODERN = DecodingConfig(name="modern", do_sample=True, temperature=0.9, top_n_sigma=1.5, xtc_probability=0.4,
                        xtc_threshold=0.15, dry_multiplier=0.8, dry_base=1.5, dry_allowed_length=3,
                        dry_penalty_last_n=256, dry_sequence_breakers=("\n", "###"), mirostat=2, mirostat_tau=4.0,
                        mirostat_eta=0.2, dynatemp_range=0.3, dynatemp_exponent=1.5, epsilon_cutoff=3e-4,
                        eta_cutoff=2e-3, logit_bias={"50": 2.0, "7": float("-inf"), " hello": -1.0},
                        banned_strings=("bad word",), repetition_penalty=1.1, repetition_penalty_last_n=64,
                        sampler_order=("top_k", "temperature"), top_k=30, seed=4)


def shell_words(command: str) -> list[str]:
    """The words bash makes of a command line (it reads $'\\n', which shlex does not)."""
    out = subprocess.run(["bash", "-c", f"set -- {command}; printf '%s\\0' \"$@\""], capture_output=True, check=True)
    return out.stdout.decode().split("\0")[:-1]


def _flags(config):
    flags = shell_words(to_llamacpp(config).data)
    pairs = {}
    for name, value in zip(flags, flags[1:]):
        if name.startswith("--"):
            pairs.setdefault(name, []).append(value)
    return pairs


def test_llamacpp_gets_native_names_and_a_full_sampler_order():
    pairs = _flags(MODERN)
    assert pairs["--top-nsigma"] == ["1.5"] and pairs["--xtc-probability"] == ["0.4"]
    assert pairs["--xtc-threshold"] == ["0.15"] and pairs["--dry-multiplier"] == ["0.8"]
    assert pairs["--dry-base"] == ["1.5"] and pairs["--dry-allowed-length"] == ["3"]
    assert pairs["--dry-penalty-last-n"] == ["256"] and pairs["--dry-sequence-breaker"] == ["\n", "###"]
    assert pairs["--mirostat"] == ["2"] and pairs["--mirostat-ent"] == ["4"] and pairs["--mirostat-lr"] == ["0.2"]
    assert pairs["--dynatemp-range"] == ["0.3"] and pairs["--dynatemp-exp"] == ["1.5"]
    assert pairs["--repeat-last-n"] == ["64"]
    assert sorted(pairs["--logit-bias"]) == ["50+2", "7-inf"]
    assert pairs["--samplers"] == ["top_k;temperature;penalties;dry;top_n_sigma;top_p;min_p;typ_p;xtc"]
    notes = " ".join(to_llamacpp(MODERN).notes)
    for lost in ("epsilon_cutoff", "eta_cutoff", "banned_strings", "' hello'"):
        assert lost in notes, lost
    assert "Mirostat" in notes


def test_llamacpp_neutral_values_switch_its_own_defaults_off():
    pairs = _flags(DecodingConfig(do_sample=True))
    assert pairs["--top-nsigma"] == ["-1"] and pairs["--xtc-probability"] == ["0"]
    assert pairs["--dry-multiplier"] == ["0"] and pairs["--mirostat"] == ["0"] and pairs["--dynatemp-range"] == ["0"]
    whole = [str(LLAMACPP_WHOLE)]  # current llama.cpp refuses -1 and reads 0 as off: the whole context as a count
    assert pairs["--dry-penalty-last-n"] == whole and pairs["--repeat-last-n"] == whole
    assert pairs["--samplers"] == ["penalties;dry;temperature;top_n_sigma;top_k;top_p;min_p;typ_p;xtc"]


def test_hf_gets_what_it_has_and_round_trips():
    from transformers import GenerationConfig

    converted = to_hf(MODERN)
    data = converted.data
    assert data["epsilon_cutoff"] == 3e-4 and data["eta_cutoff"] == 2e-3 and data["early_stopping"] is False
    assert sorted(map(tuple, [(b[0][0], b[1]) for b in data["sequence_bias"]])) == [(7, float("-inf")), (50, 2.0)]
    GenerationConfig(**data).validate()
    notes = " ".join(converted.notes)
    for lost in ("top_n_sigma", "xtc_probability", "dry_multiplier", "mirostat", "dynatemp_range",
                 "repetition_penalty_last_n", "banned_strings", "sampler_order", "' hello'"):
        assert lost in notes, lost
    holdable = DecodingConfig(name="h", do_sample=True, epsilon_cutoff=3e-4, eta_cutoff=2e-3, top_k=5,
                              logit_bias=[(50, 2.0)])
    assert from_hf(to_hf(holdable).data, name="h").data == holdable
    beams = DecodingConfig(name="b", num_beams=4, early_stopping="never")
    assert from_hf(to_hf(beams).data, name="b").data == beams


def test_hf_import_reads_bad_words_and_sequence_bias():
    converted = from_hf({"bad_words_ids": [[5], [6, 7]], "sequence_bias": [[[9], -2.0]]})
    assert dict(converted.data.logit_bias) == {5: float("-inf"), 9: -2.0}
    assert any("[6, 7]" in n for n in converted.notes)


def test_vllm_and_openai_list_what_they_lack():
    vllm = to_vllm(MODERN)
    assert vllm.data["logit_bias"] == {"50": 2.0, "7": float("-inf")} and vllm.data["bad_words"] == ["bad word"]
    openai = to_openai(MODERN)
    assert openai.data["logit_bias"] == {"50": 2.0, "7": -100.0}
    for converted in (vllm, openai):
        notes = " ".join(converted.notes)
        for lost in ("top_n_sigma", "xtc_probability", "dry_multiplier", "mirostat", "dynatemp_range",
                     "epsilon_cutoff", "sampler_order"):
            assert lost in notes, lost
    assert any("clamped" in n for n in openai.notes)


def test_webui_round_trip_and_units():
    converted = to_webui(MODERN)
    text = converted.data
    assert "epsilon_cutoff: 3.0" in text and "mirostat_mode: 2" in text and "dynamic_temperature: true" in text
    back = from_webui_yaml(text, "modern").data
    from decodelab.engine.config import effective_order

    lost = {"dry_penalty_last_n", "banned_strings", "logit_bias", "sampler_order"}
    from decodelab.engine.dialects import DIALECTS

    webui = DIALECTS["webui"]  # stages the webui has no name for keep decodelab's default place: off there anyway
    assert [s for s in effective_order(back) if webui._stage_names(s)] == \
        [s for s in effective_order(MODERN) if webui._stage_names(s)]
    for name in MODERN.to_dict():
        if name not in lost:
            assert getattr(back, name) == pytest.approx(getattr(MODERN, name)), name
    assert dict(back.logit_bias) == {7: float("-inf")}  # the webui only bans ids
    notes = " ".join(converted.notes)
    assert "banned_strings" in notes and "logit_bias" in notes and "1e-4" in notes


def test_webui_import_of_its_own_names():
    text = ("temperature: 1.0\ndynamic_temperature: true\ndynatemp_low: 0.5\ndynatemp_high: 1.5\n"
            "epsilon_cutoff: 3\neta_cutoff: 10\ndry_sequence_breakers: '\"\\n\", \":\"'\n"
            "custom_token_bans: '12,13'\ntemperature_last: true\nmirostat_mode: 1\n")
    config = from_webui_yaml(text).data
    assert (config.temperature, config.dynatemp_range) == (1.0, 0.5)
    assert config.epsilon_cutoff == pytest.approx(3e-4) and config.eta_cutoff == pytest.approx(1e-3)
    assert config.dry_sequence_breakers == ("\n", ":") and config.mirostat == 1
    assert dict(config.logit_bias) == {12: float("-inf"), 13: float("-inf")}
    assert config.sampler_order[-2:] == ("temperature", "smoothing")  # the webui moves both last, in this order


@pytest.mark.parametrize("fmt", ["hf", "vllm", "openai", "llamacpp", "webui"])
def test_every_format_exports_the_modern_preset(fmt):
    assert export_preset(MODERN, fmt).data


def test_remote_servers_list_the_new_samplers_as_ignored():
    from decodelab.engine.backends.remote import RemoteModel

    server = RemoteModel(spec=None, base_url="http://x/v1", model_name="m", kind="vllm")
    ignored = server.unsupported(DecodingConfig(do_sample=True, top_n_sigma=1.0, dry_multiplier=0.5, mirostat=2))
    assert {"top_n_sigma=1.0", "dry_multiplier=0.5", "mirostat=2"} <= set(ignored)


def test_webui_import_suggests_the_name_a_typo_meant_and_says_what_dynamic_temperature_replaced():
    from decodelab.engine.dialects import from_webui_yaml

    converted = from_webui_yaml("top_aa: 0.2\ntemperature: 0.8\ndynamic_temperature: true\ndynatemp_low: 0.5\n"
                                "dynatemp_high: 1.3\nepsilon_cutoff: 3\n")
    assert any("did you mean 'top_a'?" in n for n in converted.notes)
    assert any("temperature=0.8 is replaced" in n for n in converted.notes)
    assert converted.data.epsilon_cutoff == 0.0003 and converted.data.temperature == 0.9
