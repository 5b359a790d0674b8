"""The command line: run, presets (incl. export/import), bench; exit codes and messages for bad input."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from decodelab.cli.main import main
from decodelab.engine import DecodingConfig, find_preset

PROMPT = "The for statement"


def invoke(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def test_help_everywhere():
    for args in ([], ["run"], ["presets"], ["presets", "export"], ["presets", "import"], ["bench"]):
        result = invoke(*args, "--help")
        assert result.exit_code == 0 and "Usage" in result.output


@pytest.fixture(params=("transformers", "llama.cpp"))
def on_engine(request, tmp_path, monkeypatch):
    """run's arguments for the demo model on each engine (llama.cpp: the demo's GGUF)."""
    if request.param == "transformers":
        return []
    loaded = request.getfixturevalue("demo_llamacpp")
    monkeypatch.setenv("DECODELAB_CACHE_DIR", str(tmp_path / "cache"))
    return ["--model", loaded.source, "--engine", "llama.cpp"]


def test_run_json_records_everything(on_engine):
    result = invoke("run", *on_engine, "--prompt", PROMPT, "-p", "greedy", "-p", "balanced", "--seed", "7",
                    "--set", "max_new_tokens=6", "--json", "--top", "3")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [c["config"]["name"] for c in doc["completions"]] == ["greedy", "balanced"]
    first = doc["completions"][1]
    assert first["seed"] == 7 and first["config"]["max_new_tokens"] == 6 and len(first["tokens"]) <= 6
    token = first["tokens"][0]
    assert set(token) >= {"id", "text", "logprob", "logprob_processed", "rank", "entropy", "alternatives"}
    assert len(token["alternatives"]) == 3
    assert first["stop_reason"] in {"eos", "max_new_tokens", "stop_string"}
    assert "tokens_per_s" in first["timings"]


def test_run_jsonl_and_seed_reproduces(on_engine):
    args = ("run", *on_engine, "--prompt", PROMPT, "--set", "do_sample=true", "--set", "max_new_tokens=8", "--seed", "3", "--jsonl")
    first, second = invoke(*args), invoke(*args)
    records = [json.loads(line) for line in first.stdout.splitlines()]
    assert len(records) == 1 and records[0]["config"]["name"] == "custom"
    assert first.stdout == second.stdout or json.loads(first.stdout)["text"] == json.loads(second.stdout)["text"]


def test_run_panels_with_heatmap(on_engine):
    result = invoke("run", *on_engine, "--prompt", PROMPT, "-p", "greedy", "-p", "creative", "--set", "max_new_tokens=5",
                    "--heatmap")
    assert result.exit_code == 0
    assert "greedy" in result.stdout and "heatmap: probability" in result.stdout
    assert result.stdout.count("seed ") == 1  # the sampling pane's seed; greedy draws nothing, so shows none


def test_run_reads_prompt_from_stdin_and_file(tmp_path):
    result = invoke("run", "--set", "max_new_tokens=3", "--json", input=PROMPT)
    assert json.loads(result.stdout)["prompt"] == PROMPT
    path = tmp_path / "p.txt"
    path.write_text(PROMPT)
    result = invoke("run", "--prompt-file", str(path), "--set", "max_new_tokens=3", "--json")
    assert json.loads(result.stdout)["prompt"] == PROMPT


@pytest.mark.parametrize("args,code,needle", [
    (["run", "--prompt", "x", "-p", "nosuch"], 2, "no preset named 'nosuch'"),
    (["run", "--prompt", "x", "--set", "temperature=hot"], 2, "temperature"),
    (["run", "--prompt", "x", "--set", "temprature=1"], 2, "Did you mean 'temperature'"),
    (["run", "--prompt", "x", "--set", "nonsense"], 2, "field=value"),
    (["run", "--prompt", "x", "--prompt-file", "y"], 2, "not both"),
    (["run", "--prompt", "x", "--json", "--jsonl"], 2, "not both"),
    (["run", "--prompt-file", "/nonexistent/p.txt"], 2, "cannot read prompt file"),
    (["run", "--prompt", "x", "--model", "/nonexistent/model"], 1, "no such model folder"),
    (["run", "--prompt", "x", "--set", "max_new_tokens=100000"], 2, "context"),
    (["presets", "show", "nosuch"], 2, "no preset named"),
    (["presets", "delete", "greedy"], 2, "built-in"),
    (["presets", "delete", "nosuch"], 2, "no user preset"),
    (["presets", "save", "../bad"], 2, "preset name"),
    (["presets", "save", "ok", "--set", "top_k=-3"], 2, "top_k"),
    (["presets", "diff", "greedy", "nosuch"], 2, "no preset named"),
    (["presets", "export", "greedy", "--format", "xml"], 2, "xml"),
    (["bench", "--new-tokens", "0"], 2, "0"),
    (["bench", "--real", "--model", "/nonexistent/model"], 1, "no such model folder"),
    (["sweep", "--prompt", "x", "--strategy", "bayes", "--range", "temperature=0.1:1"], 2, "--trials"),
    (["serve", "--model", "http://127.0.0.1:9/v1"], 2, "local model"),
    (["run", "--prompt", "x", "--model", "http://127.0.0.1:9/v1"], 1, "cannot reach"),
])
def test_bad_input_exit_codes(args, code, needle):
    result = invoke(*args)
    assert result.exit_code == code, result.output
    assert needle in result.output
    assert "Traceback" not in result.output


def test_bad_preset_file_is_a_usage_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("schema = 1\ntop_p = = 0.3\n")
    result = invoke("run", "--prompt", "x", "-p", str(bad))
    assert result.exit_code == 2 and "line 2" in result.output


def test_presets_save_show_diff_delete():
    assert invoke("presets", "save", "mine", "--from", "balanced", "--set", "temperature=0.9").exit_code == 0
    assert find_preset("mine").temperature == 0.9 and find_preset("mine").top_p == 0.9
    again = invoke("presets", "save", "mine")
    assert again.exit_code == 2 and "already exists" in again.output
    assert invoke("presets", "save", "mine", "--force", "--set", "top_k=5").exit_code == 0
    assert find_preset("mine").top_k == 5
    listing = invoke("presets", "list").stdout
    assert "mine" in listing and "user" in listing
    assert 'name = "mine"' in invoke("presets", "show", "mine").stdout
    assert find_preset("mine").description == "" and find_preset("balanced").description  # not balanced's text
    diff = invoke("presets", "diff", "greedy", "balanced").stdout
    assert "temperature" in diff and "top_p" in diff
    assert len({line.index("->") for line in diff.splitlines()}) == 1  # the arrows line up
    assert "decode the same way" in invoke("presets", "diff", "greedy", "greedy").stdout
    assert invoke("presets", "delete", "mine").exit_code == 0
    assert invoke("presets", "path").stdout.strip().endswith("presets")


def test_export_writes_file_without_clobbering(tmp_path):
    out = tmp_path / "generation_config.json"
    assert invoke("presets", "export", "creative", "--format", "hf", "-o", str(out)).exit_code == 0
    assert json.loads(out.read_text())["top_k"] == 100
    again = invoke("presets", "export", "creative", "--format", "hf", "-o", str(out))
    assert again.exit_code == 2 and "--force" in again.output


def test_export_notes_unsupported_settings():
    result = CliRunner().invoke(main, ["presets", "export", "no-repeat", "--format", "openai"])
    assert json.loads(result.stdout)["frequency_penalty"] == 0.3
    assert "no repetition_penalty" in result.stderr and "NOT carried over" in result.stderr


def test_import_round_trips_through_hf(tmp_path):
    out = tmp_path / "generation_config.json"
    invoke("presets", "export", "precise", "--format", "hf", "-o", str(out))
    result = invoke("presets", "import", str(out), "--name", "precise2")
    assert result.exit_code == 0, result.output
    original, back = find_preset("precise"), find_preset("precise2")
    assert back.replace(name=original.name, description=original.description) == original


def test_import_bad_files(tmp_path):
    broken = tmp_path / "g.json"
    broken.write_text("{not json")
    unknown = tmp_path / "g.txt"
    unknown.write_text("x")
    yaml = tmp_path / "bad.yaml"
    yaml.write_text("temperature: [0.5, 1\n")
    for path, needle in ((broken, "not valid JSON"), (unknown, "cannot tell the format"),
                         (tmp_path / "missing.json", "does not exist"),
                         (yaml, f"{yaml} is not valid YAML: expected ',' or ']', but got '<stream end>' at line 2")):
        result = invoke("presets", "import", str(path))
        assert result.exit_code == 2 and needle in result.output
        assert result.output.startswith("decodelab: error:") and result.output.count("\n") == 1  # one line


def test_bench_runs_and_prints_ratios():
    result = CliRunner().invoke(main, ["bench", "--real", "--new-tokens", "4", "--repeats", "1"])
    assert result.exit_code == 0, result.output
    assert "b/a = " in result.stdout and "c/b = " in result.stdout and "sampler + statistics" in result.stdout


def test_no_command_opens_the_tui_with_defaults(monkeypatch):
    import decodelab.tui.app
    seen = {}
    monkeypatch.setattr(decodelab.tui.app, "run_app", lambda **kwargs: seen.update(kwargs))
    assert invoke().exit_code == 0
    assert [c.name for c in seen["configs"]] == ["greedy", "balanced", "creative"]
    assert seen["spec"].path == "demo" and seen["run_at_start"] is False
    assert invoke("--prompt", "Hi", "-p", "precise", "--dtype", "bfloat16").exit_code == 0
    assert seen["prompt"] == "Hi" and seen["run_at_start"] is True
    assert [c.name for c in seen["configs"]] == ["precise"] and seen["spec"].dtype == "bfloat16"
    bad = invoke("-p", "nosuch")
    assert bad.exit_code == 2 and "no preset named" in bad.output


def test_import_webui_yaml(tmp_path):
    path = tmp_path / "Big O.yaml"
    path.write_text("temperature: 0.87\ntop_p: 0.99\ntop_k: 85\nrepetition_penalty: 1.01\ntop_a: 0.2\n"
                    "penalty_alpha: 0.6\n")
    result = CliRunner().invoke(main, ["presets", "import", str(path)])
    assert result.exit_code == 0, result.output
    config = find_preset("Big-O")
    assert (config.temperature, config.top_p, config.top_k, config.top_a) == (0.87, 0.99, 85, 0.2) and config.do_sample
    assert "penalty_alpha" in result.stderr and "NOT imported" in result.stderr


def test_run_panels_keep_each_config_summary_whole_at_80_columns(demo):
    """The summary used to sit on a panel's bottom border, where three panels at 80 columns cut it."""
    import io

    from rich.console import Console

    from decodelab.cli.render import print_completions
    from decodelab.engine import DecodingConfig, generate_many

    configs = [DecodingConfig(name="a", do_sample=True, temperature=0.5, min_p=0.1, max_new_tokens=4),
               DecodingConfig(name="b", max_new_tokens=4)]
    out = io.StringIO()
    print_completions(Console(file=out, width=80), "The for", generate_many(demo, "The for", configs), None)
    assert "min_p=0.1" in out.getvalue() and "seed=auto" in out.getvalue()


def test_json_output_is_strict_json_with_a_banned_token():
    """Issue 20 item 4: a -inf logit_bias was written as -Infinity, which is not JSON."""
    result = invoke("run", "--model", "demo", "--prompt", "x", "--set", 'logit_bias={"5"=-inf}', "--set",
                    "max_new_tokens=2", "--json")
    assert result.exit_code == 0

    def no_constants(name):
        raise ValueError(f"not JSON: {name}")

    doc = json.loads(result.stdout, parse_constant=no_constants)
    config = doc["completions"][0]["config"]
    assert config["logit_bias"] == {"5": "-inf"}
    assert DecodingConfig.from_dict(config).logit_bias == ((5, float("-inf")),)


def test_a_setting_typed_as_an_option_or_in_capitals_points_to_its_set_form():
    wrong = CliRunner().invoke(main, ["run", "--prompt", "hi", "--max-new-tokens", "5"])
    assert wrong.exit_code == 2 and "--set max_new_tokens=" in wrong.output
    capitals = CliRunner().invoke(main, ["run", "--prompt", "hi", "--set", "TOP_K=3"])
    assert capitals.exit_code == 2 and "Did you mean 'top_k'?" in capitals.output
    partial = CliRunner().invoke(main, ["run", "--prompt", "hi", "--set", "smoothing=0.3"])
    assert "Did you mean 'smoothing_factor'?" in partial.output


def test_a_greedy_completion_reports_no_seed():
    """A config that does not sample draws nothing: `run --json` gave it a random seed all the same."""
    import json

    result = invoke("run", "--prompt", "The for", "-p", "greedy", "-p", "creative", "--set", "max_new_tokens=3",
                    "--json")
    assert result.exit_code == 0, result.output
    greedy, creative = json.loads(result.stdout)["completions"]
    assert greedy["seed"] is None and isinstance(creative["seed"], int)
