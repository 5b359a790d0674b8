"""Each stack's dialect, from the settings table: exports that run unchanged on the peer they target, checked against
the peers' own rules (llama.cpp's argument parser and llama-server's request schema in llama-cpp-python 0.3.36's
sources; text-generation-webui's sampler sorting), and the one-table rule itself (a niche setting is named in
few source files)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from decodelab.cli.main import main
from decodelab.engine import DecodingConfig, generate_many
from decodelab.engine.config import LLAMACPP_WHOLE, SETTINGS, STAGE_TABLE, effective_order
from decodelab.engine.dialects import DIALECTS, from_webui_yaml, preset_name, to_llamacpp, to_webui
from decodelab.engine.dialects.llamacpp import request_fields

ROOT = Path(__file__).resolve().parents[1]

# The webui's class -> sampler_priority names (modules/sampler_hijack.py), and its sort: by place in the list,
# every sampler the list lacks first (key -1).
WEBUI_SAMPLERS = ["repetition_penalty", "presence_penalty", "frequency_penalty", "dry", "temperature",
                  "dynamic_temperature", "quadratic_sampling", "top_n_sigma", "top_k", "top_p", "typical_p",
                  "epsilon_cutoff", "eta_cutoff", "tfs", "top_a", "min_p", "mirostat", "xtc", "adaptive_p",
                  "encoder_repetition_penalty", "no_repeat_ngram"]


def webui_sorted(active: list[str], priority: list[str]) -> list[str]:
    return sorted(active, key=lambda name: priority.index(name) if name in priority else -1)


CONFIGS = [
    DecodingConfig(do_sample=True, temperature=0.8, min_p=0.05, adaptive_target=0.4),  # the issue's own case
    DecodingConfig(do_sample=True, mirostat=2, top_k=40),
    DecodingConfig(do_sample=True, sampler_order=("min_p", "temperature"), min_p=0.1, top_k=20, tfs=0.9),
    DecodingConfig(do_sample=True, repetition_penalty=1.2, dry_multiplier=0.8, xtc_probability=0.5, top_a=0.1,
                   smoothing_factor=0.3, epsilon_cutoff=3e-4, sampler_order=("xtc", "top_a")),
]


@pytest.mark.parametrize("config", CONFIGS)
def test_a_webui_export_sorted_by_the_webuis_rule_is_decodelabs_chain(config):
    data = yaml.safe_load(to_webui(config).data)
    names = DIALECTS["webui"].stage_of()
    stages = [row.name for row in STAGE_TABLE if row.place == "selection"]
    ours = [s for s in effective_order(config) if DIALECTS["webui"]._stage_names(s)]
    ours += [s for s in stages if s in data["sampler_priority"] and names.get(s, s)]
    # every webui sampler that would be active, one entry per decodelab stage (its first webui name)
    active = [DIALECTS["webui"]._stage_names(s)[0] for s in ours]
    assert [names[n] for n in webui_sorted(active, data["sampler_priority"])] == ours
    assert set(data["sampler_priority"]) <= set(WEBUI_SAMPLERS)
    assert all(name in data["sampler_priority"] for name in ("mirostat",) if config.mirostat)
    assert ("adaptive_p" in data["sampler_priority"]) == (config.adaptive_target >= 0)


def test_the_webui_import_knows_adaptive_p_and_mirostat():
    text = yaml.safe_dump({"temperature": 0.7, "sampler_priority": ["top_k", "temperature", "mirostat", "adaptive_p",
                                                                    "encoder_repetition_penalty"]})
    converted = from_webui_yaml(text)
    assert not any("no decodelab stage" in n for n in converted.notes), converted.notes
    order = converted.data.sampler_order
    assert order.index("top_k") < order.index("temperature") and "mirostat" not in order


def test_webui_dynamic_temperature_is_written_with_temperature_one():
    data = yaml.safe_load(to_webui(DecodingConfig(do_sample=True, temperature=0.8, dynatemp_range=0.3)).data)
    assert data["temperature"] == 1.0 and data["dynamic_temperature"] is True
    assert data["dynatemp_low"] == pytest.approx(0.5) and data["dynatemp_high"] == pytest.approx(1.1)
    back = from_webui_yaml(yaml.safe_dump(data)).data
    assert back.temperature == pytest.approx(0.8) and back.dynatemp_range == pytest.approx(0.3)


def test_what_the_webui_runs_differently_is_noted():
    notes = " ".join(to_webui(DecodingConfig(do_sample=True, mirostat=1)).notes)
    assert "Mirostat 2 only" in notes
    notes = " ".join(to_webui(DecodingConfig(do_sample=True, adaptive_target=0.0, min_p=0.05)).notes)
    assert "only for a target above 0" in notes


def test_a_webui_preset_named_with_spaces_and_brackets_imports(tmp_path):
    assert preset_name("Verbose (Beam Search)") == "Verbose-Beam-Search"
    path = tmp_path / "Verbose (Beam Search).yaml"
    path.write_text("num_beams: 10\nmin_length: 200\nlength_penalty: 1.4\nno_repeat_ngram_size: 2\nearly_stopping: true\n")
    result = CliRunner().invoke(main, ["presets", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert "Verbose-Beam-Search" in result.output


# -- llama.cpp: the limits of its own argument parser and server schema (llama-cpp-python 0.3.36) ------------
NONNEGATIVE_FLAGS = ("--repeat-last-n", "--dry-penalty-last-n")
"""common/arg.cpp throws "invalid repeat-last-n = -1" (and dry-penalty-last-n) for any value below 0."""
SCHEMA_LIMITS = {"repeat_last_n": (0, 2**31 - 1), "dry_penalty_last_n": (0, 2**31 - 1),
                 "dry_allowed_length": (0, 2**31 - 1), "xtc_probability": (0, 1), "xtc_threshold": (0, 1),
                 "mirostat": (0, 2), "adaptive_decay": (0, 0.99), "temperature": (0, float("inf"))}
"""tools/server/server-schema.cpp's set_limits / set_hard_limits."""
SAMPLER_NAMES = {"dry", "top_k", "top_p", "top_n_sigma", "typ_p", "min_p", "temperature", "xtc", "infill",
                 "penalties", "adaptive_p"}
"""common/sampling.cpp's common_sampler_types_from_names."""

EVERYTHING = [DecodingConfig(), *CONFIGS, DecodingConfig(do_sample=True, repetition_penalty=1.1,
                                                          repetition_penalty_last_n=64, dry_multiplier=0.8,
                                                          dry_penalty_last_n=-1, top_n_sigma=1.0),
              *(DecodingConfig.from_dict({k: v for k, v in p.items() if k != "description"})
                for p in (json.loads(json.dumps({"name": "b", "do_sample": True, "dry_multiplier": 0.8,
                                                 "adaptive_target": 0.5, "min_p": 0.02})),))]


@pytest.mark.parametrize("config", EVERYTHING)
def test_the_llamacpp_command_line_passes_llamacpps_own_argument_checks(config):
    words = shlex.split(to_llamacpp(config).data)
    pairs = {}
    for flag, value in zip(words, words[1:]):
        if flag.startswith("-") and not value.startswith("--"):
            pairs.setdefault(flag, value)
    for flag in NONNEGATIVE_FLAGS:
        assert int(pairs[flag]) >= 0, (flag, pairs[flag])
    if not config.repetition_penalty_last_n:
        assert int(pairs["--repeat-last-n"]) == LLAMACPP_WHOLE  # the whole context, not 0 (= off there)
    assert set(pairs["--samplers"].split(";")) <= SAMPLER_NAMES
    assert float(pairs["--repeat-penalty"]) > 0


@pytest.mark.parametrize("config", EVERYTHING)
def test_llamacpp_request_fields_are_within_llama_servers_schema(config):
    fields = request_fields(config)
    for name, (low, high) in SCHEMA_LIMITS.items():
        assert low <= fields[name] <= high, (name, fields[name])
    assert set(fields["samplers"]) <= SAMPLER_NAMES


def test_choice_of_nothing_is_refused_on_the_command_line():
    result = CliRunner().invoke(main, ["run", "--prompt", "x", "--set", "choice=[]"])
    assert result.exit_code == 2 and "lists no choices" in result.output
    result = CliRunner().invoke(main, ["run", "--prompt", "x", "--set", 'choice=[""]'])
    assert result.exit_code == 2


def test_a_constrained_output_cut_at_max_new_tokens_says_so(demo):
    schema = '{"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}'
    cut = generate_many(demo, "Give JSON:", [DecodingConfig(json_schema=schema, max_new_tokens=3)])[0]
    assert cut.stop_reason == "max_new_tokens" and "raise max_new_tokens" in cut.extra["incomplete"]
    whole = generate_many(demo, "Give JSON:", [DecodingConfig(choice=("yes", "no"), max_new_tokens=8)])[0]
    assert "incomplete" not in whole.extra
    result = CliRunner().invoke(main, ["run", "--prompt", "Give JSON:", "--set", f"json_schema={schema}", "--set",
                                       "max_new_tokens=3", "--json"])
    assert result.exit_code == 0, result.output
    assert "constraint was complete" in result.stderr
    assert "raise max_new_tokens" in json.loads(result.stdout)["completions"][0]["notes"]["incomplete"]


# -- the one-table rule ----------------------------------------------------------------------------------
NICHE = ("top_a", "tfs", "smoothing_factor", "dry_multiplier", "adaptive_target", "p_less")


def test_a_niche_setting_is_named_in_at_most_three_source_files():
    folders = ["engine", "server", "cli", "tui", "render", "themes", "decodelab"]
    files = [p for folder in folders for p in (ROOT / folder).rglob("*.py")]
    for name in NICHE:
        naming = [p for p in files if re.search(rf"\b{name}\b", p.read_text(encoding="utf-8"))]
        assert len(naming) <= 3, (name, [str(p.relative_to(ROOT)) for p in naming])


def test_every_setting_a_stack_names_is_in_its_dialect_and_nowhere_else():
    for stack, dialect in DIALECTS.items():
        for s in SETTINGS:
            assert dialect.name(s.name) == s.name_in(stack)
    out = subprocess.run([sys.executable, "-c", "import decodelab.engine.dialects, sys; "
                          "print('torch' in sys.modules)"], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "False"  # the dialects, and every export, need no torch


def test_the_readmes_table_of_names_is_the_dialects():
    from decodelab.engine.dialects.table import with_table

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert with_table(readme) == readme, "run: python scripts/names_table.py"
    assert "`p_less`" in readme and "`repeat_last_n` / `--repeat-last-n` (whole context = 131072)" in readme
