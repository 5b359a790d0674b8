"""Sweeps: each strategy respects its budget and ranges, results are scored and export round-trips."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

from decodelab.cli.main import main
from decodelab.engine import ConfigError, DecodingConfig, find_preset
from decodelab.engine.experiments.sweep import (
    PromptCase,
    SweepSpec,
    best,
    grid_points,
    parse_grid,
    parse_objective,
    parse_ranges,
    random_points,
    read_prompt_cases,
    run_sweep,
    to_csv,
    to_json,
)

BASE = DecodingConfig(name="b", do_sample=True, max_new_tokens=8)
PROMPTS = [PromptCase("The for statement", "The for statement is used to iterate")]


def spec(**kwargs):
    return SweepSpec(base=BASE, prompts=PROMPTS, seeds=2, **kwargs)


def test_grid_is_every_combination():
    s = spec(grid={"temperature": [0.3, 0.9], "top_p": [0.8, 0.9, 1.0]})
    points = grid_points(s)
    assert len(points) == 6 and {"temperature": 0.9, "top_p": 0.8} in points


def test_random_respects_budget_and_ranges():
    s = spec(strategy="random", trials=50, ranges={"temperature": (0.2, 1.4), "top_k": (5, 40)},
             grid={"min_p": [0.0, 0.1]})
    points = random_points(s)
    assert len(points) == 50
    assert all(0.2 <= p["temperature"] <= 1.4 and 5 <= p["top_k"] <= 40 and p["min_p"] in (0.0, 0.1) for p in points)
    assert all(isinstance(p["top_k"], int) for p in points)
    assert random_points(s) == points  # seeded


@pytest.mark.parametrize("strategy,extra", [
    ("grid", {"grid": {"temperature": [0.3, 1.2]}}),
    ("random", {"trials": 3, "ranges": {"temperature": (0.3, 1.2)}}),
    ("bayes", {"trials": 5, "ranges": {"temperature": (0.3, 1.2), "min_p": (0.0, 0.2)}}),
])
def test_strategies_on_the_demo_model(demo, strategy, extra):
    s = spec(strategy=strategy, objective={"distinct_2": 1.0, "mean_logprob": 0.1}, **extra)
    results = run_sweep(demo, s)
    assert len(results) == (2 if strategy == "grid" else extra["trials"])
    for r in results:
        assert 0.3 <= r.params["temperature"] <= 1.2
        assert r.config.temperature == pytest.approx(r.params["temperature"])
        assert len(r.samples) == 2  # seeds x prompts
        assert {"mean_logprob", "distinct_2", "self_similarity", "rouge_l", "chrf"} <= set(r.metrics)
        assert r.objective == pytest.approx(r.metrics["distinct_2"] + 0.1 * r.metrics["mean_logprob"])
    assert best(results, "maximize").objective == max(r.objective for r in results)


def test_points_share_seeds(demo):
    results = run_sweep(demo, spec(grid={"temperature": [0.7, 0.7001]}))
    assert [s["seed"] for s in results[0].samples] == [s["seed"] for s in results[1].samples]


def test_exports_parse_back(demo):
    s = spec(grid={"temperature": [0.5, 1.0]})
    results = run_sweep(demo, s)
    rows = list(csv.DictReader(io.StringIO(to_csv(results, s))))
    assert len(rows) == 2 and float(rows[0]["temperature"]) == results[0].params["temperature"]
    assert float(rows[1]["objective"]) == pytest.approx(results[1].objective)
    doc = json.loads(to_json(results, s))
    assert len(doc["points"]) == 2 and doc["points"][0]["samples"][0]["text"] == results[0].samples[0]["text"]


@pytest.mark.parametrize("kwargs,needle", [
    ({"grid": {"temprature": [1.0]}}, "cannot sweep"),
    ({"grid": {"temperature": [-1.0]}}, "temperature"),
    ({}, "needs at least one --grid"),
    ({"strategy": "random", "ranges": {"top_p": (0.5, 1.0)}}, "--trials"),
    ({"strategy": "random", "trials": 2, "ranges": {"top_p": (0.9, 0.5)}}, "empty"),
    ({"strategy": "random", "trials": 2, "ranges": {"top_p": (0.5, 1.5)}}, "top_p"),
    ({"grid": {"top_p": [0.5, 0.9]}, "trials": 1}, "budget"),
    ({"grid": {"top_p": [0.5]}, "objective": {"bleu": 1.0}}, "unknown metric"),
])
def test_bad_specs(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        spec(**kwargs).validate()


def test_sweeping_sampling_settings_of_a_greedy_base_is_refused():
    greedy = SweepSpec(base=DecodingConfig(name="g"), prompts=PROMPTS, grid={"temperature": [0.5, 1.0]})
    with pytest.raises(ConfigError, match="is greedy"):
        greedy.validate()
    SweepSpec(base=DecodingConfig(name="g"), prompts=PROMPTS, grid={"repetition_penalty": [1.0, 1.2]}).validate()


def test_parsers():
    assert parse_grid(("temperature=0.2,0.7",)) == {"temperature": [0.2, 0.7]}
    assert parse_ranges(("top_p=0.5:1",)) == {"top_p": (0.5, 1.0)}
    assert parse_objective("distinct_2=2,mean_logprob") == {"distinct_2": 2.0, "mean_logprob": 1.0}
    for bad in (("temperature",), ("temperature=a,b",)):
        with pytest.raises(ConfigError):
            parse_grid(bad)
    with pytest.raises(ConfigError):
        parse_ranges(("top_p=0.5",))
    cases = read_prompt_cases('{"prompt": "a", "reference": "b"}\n\n{"prompt": "c"}\n', "p.jsonl")
    assert cases == [PromptCase("a", "b"), PromptCase("c", None)]
    assert read_prompt_cases("one\n\ntwo\\nlines\n", "p.txt") == [PromptCase("one"), PromptCase("two\nlines")]
    with pytest.raises(ConfigError, match="line 1"):
        read_prompt_cases("not json\n", "p.jsonl")


def test_cli_sweep_grid_exports_and_saves_best(tmp_path):
    out_csv, out_json = tmp_path / "r.csv", tmp_path / "r.json"
    args = ["sweep", "--prompt", "The for statement", "--grid", "temperature=0.3,1.0", "--grid", "top_p=0.8,1.0",
            "--set", "max_new_tokens=8", "--seeds", "2", "--objective", "distinct_2", "--csv", str(out_csv),
            "--json", str(out_json), "--save-best", "best-sweep"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "4 points" in result.output and "objective by top_p" in result.output and "best:" in result.output
    assert len(list(csv.DictReader(out_csv.open()))) == 4
    assert "sweep" in find_preset("best-sweep").description
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2 and "--force" in again.output


def test_cli_sweep_file_and_bad_input(tmp_path):
    sweep_file = tmp_path / "s.toml"
    sweep_file.write_text('strategy = "random"\ntrials = 2\nseeds = 1\n[ranges]\ntemperature = [0.3, 1.0]\n'
                          '[objective]\nmean_logprob = 1.0\ndirection = "maximize"\n')
    ok = CliRunner().invoke(main, ["sweep", "--file", str(sweep_file), "--prompt", "Hello", "--set", "max_new_tokens=4"])
    assert ok.exit_code == 0, ok.output
    assert "2 points" in ok.output
    bad = CliRunner().invoke(main, ["sweep", "--prompt", "x", "--grid", "temprature=1"])
    assert bad.exit_code == 2 and "cannot sweep" in bad.output
    sweep_file.write_text("flavour = 1\n")
    bad_file = CliRunner().invoke(main, ["sweep", "--file", str(sweep_file), "--prompt", "x"])
    assert bad_file.exit_code == 2 and "unknown key 'flavour'" in bad_file.output


def test_save_best_refuses_an_existing_preset_before_running_unless_forced(demo):
    """Issue 17: sweep --save-best had no --force, and found out at the end."""
    from click.testing import CliRunner

    from decodelab.cli.main import main
    from decodelab.engine import DecodingConfig
    from decodelab.engine.library.presets import save_user_preset

    save_user_preset(DecodingConfig(name="mine", temperature=0.3, do_sample=True))
    args = ["sweep", "--model", "demo", "-p", "balanced", "--prompt", "The for", "--grid", "temperature=0.5,0.9",
            "--seeds", "1", "--set", "max_new_tokens=4", "--save-best", "mine"]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code != 0 and "already have a preset named 'mine'" in refused.output
    assert "best" not in refused.output  # nothing ran
    forced = CliRunner().invoke(main, args + ["--force"])
    assert forced.exit_code == 0, forced.output
    assert "saved mine" in forced.output


def test_the_new_samplers_sweep_like_any_setting(demo):
    """Issue 20: top_a, tfs, smoothing, top_h and adaptive-p are grid and range fields like the others."""
    s = spec(grid={"top_a": [0.0, 0.5], "smoothing_factor": [0.0, 2.0]})
    results = run_sweep(demo, s)
    assert sorted((r.config.top_a, r.config.smoothing_factor) for r in results) == [(0, 0), (0, 2), (0.5, 0), (0.5, 2)]
    texts = {tuple(x["text"] for x in r.samples) for r in results}
    assert len(texts) > 1  # the settings change what is drawn under the same seeds
    points = random_points(spec(strategy="random", trials=4, ranges=parse_ranges(["tfs=0.5:1", "top_h=0.1:0.9",
                                                                                    "adaptive_target=0.1:0.9"])))
    assert all(0.5 <= p["tfs"] <= 1 and 0.1 <= p["adaptive_target"] <= 0.9 for p in points)


def test_a_sweep_on_a_conversation_runs(demo):
    """The TUI sweeps a pane's own turns (chat messages): it failed with "unhashable type: 'list'"."""
    from decodelab.engine.experiments.sweep import PromptCase
    from tests.test_conversation import TEMPLATE

    import copy

    chat = copy.copy(demo)
    chat.tokenizer = copy.deepcopy(demo.tokenizer)
    chat.tokenizer.chat_template = TEMPLATE
    messages = [{"role": "user", "content": "The for"}, {"role": "assistant", "content": " statement"},
                {"role": "user", "content": "And while?"}]
    s = spec(grid={"temperature": [0.3, 0.9]})
    s.prompts = [PromptCase(messages)]
    results = run_sweep(chat, s)
    assert len(results) == 2 and all(r.samples and "self_similarity" in r.metrics for r in results)
