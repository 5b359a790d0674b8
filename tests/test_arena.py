"""Blind A/B: tally arithmetic against known values, hidden identities, persistence and resume."""

from __future__ import annotations

import itertools
import json
import random

import pytest
from click.testing import CliRunner

from decodelab.cli.main import main
from decodelab.engine import ConfigError, DecodingConfig, find_preset, generate_many
from decodelab.engine.experiments.arena import Round, Tally, load_tally, play_round, save_tally, shuffled_order, wilson_interval


def configs(n=2):
    return [DecodingConfig(name=f"c{i}", do_sample=True, temperature=0.5 + i / 2, max_new_tokens=8) for i in range(n)]


def vote(tally, order, choice, number=0):
    rnd = Round(number=number, prompt="p", order=order, texts=["x"] * len(order), seeds=[1] * len(order))
    return tally.record(rnd, choice)


def test_wilson_interval_known_values():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_two_config_tally():
    tally = Tally(configs())
    for order, choice in [([0, 1], "A"), ([1, 0], "B"), ([1, 0], "A"), ([0, 1], "tie"), ([0, 1], "skip")]:
        vote(tally, order, choice)
    rows = tally.summary()
    # c0 won twice (as A, then as B), c1 once, one tie, one skip
    assert (rows[0]["wins"], rows[0]["losses"], rows[0]["ties"]) == (2, 1, 1)
    assert (rows[1]["wins"], rows[1]["losses"], rows[1]["ties"]) == (1, 2, 1)
    assert rows[0]["win_rate"] == pytest.approx(2.5 / 4)
    assert (rows[0]["ci_low"], rows[0]["ci_high"]) == pytest.approx(wilson_interval(2.5, 4))


def test_bradley_terry_known_values():
    tally = Tally(configs())
    for choice in ["A", "A", "A", "B"]:
        vote(tally, [0, 1], choice)
    ratings = tally.bradley_terry(prior=0.0)
    assert ratings[0] - ratings[1] == pytest.approx(400 * 0.47712125, abs=0.01)  # strength ratio 3
    assert sum(ratings) / 2 == pytest.approx(1000)
    cyclic = Tally(configs(3))
    for order in ([0, 1], [1, 2], [2, 0]):
        cyclic.votes.append({"order": order, "choice": "A", "winner": order[0]})
    assert cyclic.bradley_terry(prior=0.0) == pytest.approx([1000, 1000, 1000])


def test_many_configs_best_of_k():
    tally = Tally(configs(3))
    vote(tally, [2, 0, 1], "A")  # c2 beats c0 and c1
    wins, _ = tally.pairwise()
    assert wins[2][0] == 1 and wins[2][1] == 1 and sum(wins[0]) == 0
    assert tally.leader() == 2
    assert "blind A/B winner" in tally.describe(2)


def test_bad_votes_and_sizes():
    tally = Tally(configs())
    with pytest.raises(ConfigError):
        vote(tally, [0, 1], "C")
    with pytest.raises(ConfigError):
        Tally(configs(1))


def test_shuffling_covers_every_order():
    rng = random.Random(0)
    seen = {tuple(shuffled_order(3, rng)) for _ in range(300)}
    assert seen == set(itertools.permutations(range(3)))


def test_round_hides_identities(demo):
    tally = Tally([find_preset("greedy").replace(max_new_tokens=6), find_preset("creative").replace(max_new_tokens=6)])
    rnd = play_round(demo, tally, "The for statement", 0, random.Random(1))
    shown = json.dumps(rnd.shown())
    assert "greedy" not in shown and "creative" not in shown
    assert [label for label, _ in rnd.shown()] == ["A", "B"]
    assert len(set(rnd.seeds)) == 2  # fresh seeds per output
    revealed = " ".join(tally.reveal(rnd))
    assert "greedy" in revealed and "creative" in revealed


def test_persistence_and_resume(tmp_path):
    path = tmp_path / "t.json"
    tally = Tally(configs())
    vote(tally, [1, 0], "A")
    save_tally(tally, path)
    again = load_tally(path)
    assert again.configs == tally.configs and again.votes == tally.votes
    path.write_text('{"kind": "decodelab-ab", "schema": 1, "configs": [], "votes": []}')
    with pytest.raises(ConfigError):
        load_tally(path)
    path.write_text("nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_tally(path)


def test_cli_ab_votes_reveals_resumes_and_saves_winner(tmp_path):
    from decodelab.engine.library.presets import save_user_preset

    save_user_preset(find_preset("greedy").replace(name="zz-one", max_new_tokens=6))
    save_user_preset(find_preset("creative").replace(name="zz-two", max_new_tokens=6))
    tally_path = tmp_path / "ab.json"
    runner = CliRunner()
    args = ["ab", "-p", "zz-one", "-p", "zz-two", "--prompt", "The for statement", "--tally", str(tally_path)]
    result = runner.invoke(main, args + ["--rounds", "2"], input="at")
    assert result.exit_code == 0, result.output
    before_reveal = result.output.split("revealed:")[0]
    assert "zz-one" not in before_reveal and "zz-two" not in before_reveal
    assert "revealed: A = " in result.output and "win rate" in result.output
    assert len(load_tally(tally_path).votes) == 2
    result = runner.invoke(main, args + ["--rounds", "1", "--save-winner", "champ"], input="b")
    assert "resuming" in result.output and result.exit_code == 0
    assert len(load_tally(tally_path).votes) == 3
    assert "blind A/B winner" in find_preset("champ").description
    quit_early = runner.invoke(main, args + ["--rounds", "3"], input="q")
    assert quit_early.exit_code == 0 and len(load_tally(tally_path).votes) == 3


def test_cli_ab_needs_two_presets():
    result = CliRunner().invoke(main, ["ab", "-p", "greedy", "--prompt", "x", "--tally", "/tmp/never-written.json"])
    assert result.exit_code == 2 and "at least 2" in result.output


def test_rounds_over_a_prompt_file_run_as_one_multi_prompt_batch(llama, monkeypatch):
    from decodelab.engine.decoding import run as batching
    from decodelab.engine.experiments import arena

    calls = []
    real = batching.generate_parts  # every local run's way in: one call is one batch
    monkeypatch.setattr(batching, "generate_parts", lambda loaded, parts, **kw: calls.append(len(parts)) or
                        real(loaded, parts, **kw))
    tally = Tally([DecodingConfig(name="g", max_new_tokens=6), DecodingConfig(name="s", do_sample=True, max_new_tokens=6)])
    prompts = ["The for statement", "A function", "x"]
    rounds = list(arena.play_rounds(llama, tally, prompts, 2, 5, chunk=4, rng=random.Random(3)))
    assert calls == [4, 1]
    assert [r.number for r in rounds] == [2, 3, 4, 5, 6]
    assert [r.prompt for r in rounds] == [prompts[n % 3] for n in range(2, 7)]
    for rnd in rounds:  # the greedy contender's text is the same as a round played alone
        alone = generate_many(llama, rnd.prompt, [tally.configs[0]])[0].text
        assert rnd.texts[rnd.order.index(0)] == alone
