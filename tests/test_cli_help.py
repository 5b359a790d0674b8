"""The command line around the TUI: help that lists and explains everything, and warnings where input is odd."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
from click.testing import CliRunner

from decodelab.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def walk(group: click.Group, path=()):
    for name, command in group.commands.items():
        yield path + (name,), command
        if isinstance(command, click.Group):
            yield from walk(command, path + (name,))


def test_top_level_help_lists_every_command_in_full():
    result = invoke("--help")
    assert result.exit_code == 0
    listed = result.output.split("Commands:")[1]
    for name in main.commands:
        assert f"\n  {name} " in listed, name
    assert "..." not in listed  # no summary is cut short
    assert "ctrl+q" in result.output  # how to leave the TUI


def test_every_option_of_every_command_has_help():
    missing = [f"{' '.join(path)} {opt.opts[0]}" for path, command in walk(main) for opt in command.params
               if isinstance(opt, click.Option) and not opt.help]
    assert missing == []


def test_sweep_says_trials_is_ignored_for_a_grid(tmp_path):
    result = invoke("sweep", "--prompt", "x", "--grid", "temperature=0.5,1", "--trials", "2",
                    "--model", str(tmp_path / "missing"))
    assert "--trials 2 is ignored" in result.stderr and "2 points" in result.stderr


def test_presets_save_on_an_existing_name_names_force():
    assert invoke("presets", "save", "warm", "--from", "balanced").exit_code == 0
    again = invoke("presets", "save", "warm", "--from", "balanced")
    assert again.exit_code == 2 and "--force" in again.stderr
    assert invoke("presets", "save", "warm", "--from", "creative", "--force").exit_code == 0


def test_saving_over_a_builtin_name_says_it_shadows_it():
    result = invoke("presets", "save", "balanced", "--from", "balanced", "--set", "temperature=0.9")
    assert result.exit_code == 0 and "shadows the built-in" in result.stderr


def test_readme_says_how_to_quit():
    assert "ctrl+q" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_run_warns_about_an_empty_prompt_on_stdin():
    result = invoke("run", "-p", "greedy", "--set", "max_new_tokens=2", input="")
    assert result.exit_code == 0
    assert "warning" in result.stderr and "empty" in result.stderr


def test_run_exits_1_naming_the_pane_that_ended_in_an_error(monkeypatch):
    from decodelab.engine.session import Session
    real = Session.run

    def one_pane_fails(self, jobs, **kwargs):
        (done,) = real(self, jobs, **kwargs)
        broken = dataclasses.replace(done.completions[1], stop_reason="error", extra={"error": "the stream was cut"})
        done.completions[1] = broken
        return [done]

    monkeypatch.setattr(Session, "run", one_pane_fails)
    result = invoke("run", "--prompt", "The for", "-p", "greedy", "-p", "balanced", "--set", "max_new_tokens=3")
    assert result.exit_code == 1
    assert "'balanced'" in result.stderr and "the stream was cut" in result.stderr
    assert "'greedy'" not in result.stderr
