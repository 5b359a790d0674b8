"""Issue 36 items 3-4: quitting keeps the work (an autosave, restored on the next start, shift+f to start fresh,
--fresh to skip it), and sessions keep the reference pane (★), whose figures are measured again on load."""

from __future__ import annotations

import json

import pytest
from textual.widgets import Input, TextArea

from decodelab.engine import DecodingConfig
from decodelab.engine.backends.loading import ModelSpec, load_model
from decodelab.engine.library.sessions import (KEEP_PREVIOUS, Session, autosave_path, autosave_text, load_session,
                                               previous_workspaces)


def last_aside():
    """The newest workspace set aside."""
    return previous_workspaces()[0]
from decodelab.tui.app import DecodelabApp
from tests.test_conversation import TEMPLATE
from tests.tui_pilot import messages, wait_idle

TWO = [DecodingConfig(name="greedy", max_new_tokens=6),
       DecodingConfig(name="warm", do_sample=True, temperature=0.9, seed=4, max_new_tokens=6)]


@pytest.fixture(scope="module")
def chat_model():
    loaded = load_model(ModelSpec(device="cpu"))
    loaded.tokenizer.chat_template = TEMPLATE
    return loaded


def app_for(loaded, configs=None, restore=True, prompt="The for") -> DecodelabApp:
    return DecodelabApp(spec=ModelSpec(), configs=configs or TWO, prompt=prompt, loaded=loaded, autosave=True,
                        restore=restore)


async def say(app, pilot, text: str, key: str = "ctrl+n") -> None:
    app.query_one("#prompt", TextArea).text = text
    await pilot.press(key)
    await wait_idle(app, pilot)


async def build_work(app, pilot) -> list:
    """Three turns in each pane, a fourth pane, and a branch: what ctrl+q used to lose."""
    await pilot.press("ctrl+r")
    await wait_idle(app, pilot)
    await say(app, pilot, "And while?")
    await say(app, pilot, "And [/x] if?")  # markup-like text in a message survives too
    await pilot.press("escape")
    await pilot.press("d")  # a duplicate of the current pane
    await pilot.pause()
    return [(p.state.config.name, p.state.text, len(p.state.turns)) for p in app.panes()]


async def test_quit_and_restart_restores_panes_turns_and_prompt_then_shift_f_starts_fresh(chat_model):
    app = app_for(chat_model, restore=False)
    async with app.run_test(size=(120, 30)) as pilot:
        before = await build_work(app, pilot)
        app.query_one("#prompt", TextArea).text = "half-typed [bold] message"
        await pilot.press("ctrl+q")
    assert autosave_path().is_file() and [turns for _, _, turns in before] == [2, 0, 2]

    again = app_for(chat_model, configs=[DecodingConfig(name="other")], prompt="")
    async with again.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        await pilot.pause()
        assert [(p.state.config.name, p.state.text, len(p.state.turns)) for p in again.panes()] == before
        assert again.query_one("#prompt", TextArea).text == "half-typed [bold] message"
        assert any(m.startswith("Restored your workspace") and "3 panes, 6 turns" in m for m in messages(again))
        await pilot.press("escape", "F")
        await pilot.pause()
        await pilot.pause()
        assert [p.state.config.name for p in again.panes()] == ["other"]
        assert again.panes()[0].state.text == "" and again.query_one("#prompt", TextArea).text == ""
        assert any("Started fresh" in m and str(last_aside()) in m for m in messages(again))
        await pilot.press("ctrl+o")  # the restored work is one ctrl+o away: offered first
        await pilot.pause()
        assert again.screen.query_one(Input).value == str(last_aside())
        await pilot.press("escape")
        kept = load_session(last_aside())
        assert [c.name for c in kept.configs] == [name for name, _, _ in before]
        await pilot.press("ctrl+q")
    assert [c.name for c in load_session(autosave_path()).configs] == ["other"]


async def test_a_start_that_names_its_panes_sets_the_last_workspace_aside(chat_model):
    first = app_for(chat_model, restore=False)
    async with first.run_test() as pilot:
        await pilot.press("ctrl+r")
        await wait_idle(first, pilot)
        await pilot.press("ctrl+q")
    saved = autosave_path().read_text()
    second = app_for(chat_model, configs=[DecodingConfig(name="named")], restore=False)
    async with second.run_test() as pilot:
        await pilot.pause()
        assert [p.state.config.name for p in second.panes()] == ["named"]
        assert last_aside().read_text() == saved  # moved, not overwritten
        assert any("set aside" in m and "ctrl+o" in m for m in messages(second))
        await pilot.press("ctrl+q")
    untouched = autosave_path().read_text()
    third = app_for(chat_model, configs=[DecodingConfig(name="again")], restore=False)
    async with third.run_test() as pilot:  # a second such start (the walk-through's make run, twice) keeps both
        await pilot.pause()
    kept = [path.read_text() for path in previous_workspaces()]
    assert kept == [untouched, saved]


def test_setting_aside_keeps_the_last_ten(tmp_path):
    from decodelab.engine.library.sessions import previous_workspace_path, prune_previous

    made = []
    for i in range(KEEP_PREVIOUS + 3):
        path = previous_workspace_path()
        assert not path.exists() and path not in made
        path.write_text(str(i))
        made.append(path)
    gone = prune_previous()
    assert len(gone) == 3 and len(previous_workspaces()) == KEEP_PREVIOUS


async def test_the_autosave_follows_changes_without_quitting(chat_model):
    app = app_for(chat_model, restore=False)
    async with app.run_test() as pilot:
        await pilot.press("ctrl+r")
        await wait_idle(app, pilot)
        app.autosave.save()  # the timer's tick (every AUTOSAVE_SECONDS)
        record = json.loads(autosave_path().read_text())
        assert [p["conversation"]["turn"]["versions"][0]["completion"]["text"] for p in record["panes"]] == \
               [p.state.text for p in app.panes()]
        written = autosave_path().stat().st_mtime_ns
        app.autosave.save()
        assert autosave_path().stat().st_mtime_ns == written  # nothing changed: nothing written


async def test_a_damaged_autosave_is_kept_aside_and_the_start_is_fresh(chat_model):
    autosave_path().parent.mkdir(parents=True, exist_ok=True)
    autosave_path().write_text('{"kind": "decodelab-session", "schema": 2, "panes": [{"config": 5}]}')
    app = app_for(chat_model)
    async with app.run_test() as pilot:
        await pilot.pause()
        assert [p.state.config.name for p in app.panes()] == ["greedy", "warm"]
        assert any("could not be restored" in m for m in messages(app))
        assert last_aside().read_text().startswith('{"kind"')


def test_the_autosave_is_bounded(demo):
    from decodelab.engine import generate_many

    configs = [DecodingConfig(name="a", max_new_tokens=40), DecodingConfig(name="b", max_new_tokens=40)]
    session = Session(prompt="The for", model={"path": "demo"}, configs=configs,
                      completions=generate_many(demo, "The for", configs, top_alternatives=20, trace_stages=True))
    whole, left_out = autosave_text(session)
    assert left_out == "" and json.loads(whole)["panes"][0]["completion"]["tokens"][0]["alternatives"]
    size = len(whole.encode())
    slim, left_out = autosave_text(session, limit=size // 2)
    assert len(slim.encode()) <= size // 2 and "all but 5" in left_out
    assert len(json.loads(slim)["panes"][0]["completion"]["tokens"][0]["alternatives"]) == 5
    none, left_out = autosave_text(session, limit=100)
    assert none is None and "over" in left_out


def test_the_command_line_chooses_restore_or_fresh(monkeypatch):
    from click.testing import CliRunner

    import decodelab.tui.app as tui_app
    from decodelab.cli.main import main

    seen = []
    monkeypatch.setattr(tui_app, "run_app", lambda **kw: seen.append(kw["restore"]))
    for args in ([], ["--model", "demo"], ["--fresh"], ["-p", "greedy"], ["--prompt", "x"], ["--system", "s"],
                 ["--set", "top_k=3"]):
        result = CliRunner().invoke(main, ["--model", "demo", *args])
        assert result.exit_code == 0, result.output
    assert seen == [True, True, False, False, False, False, False]


# -- item 4: the reference pane ------------------------------------------------------------------------------

async def test_a_session_keeps_the_reference_and_measures_it_again(demo, tmp_path):
    path = tmp_path / "ref.json"
    configs = [DecodingConfig(name="greedy", max_new_tokens=12),
               DecodingConfig(name="warm", do_sample=True, temperature=0.9, seed=4, max_new_tokens=12)]
    app = DecodelabApp(spec=ModelSpec(), configs=configs, prompt="The for", loaded=demo)
    async with app.run_test() as pilot:
        await pilot.press("ctrl+r")
        await wait_idle(app, pilot)
        await pilot.press("escape", "2", "R")
        await wait_idle(app, pilot)
        for _ in range(200):
            await pilot.pause(0.05)
            if app.panes()[0].state.agreement is not None:
                break
        figures = app.panes()[0].state.agreement
        assert figures is not None and not isinstance(figures, str)
        await pilot.press("ctrl+s")
        app.screen.query_one(Input).value = str(path)
        await pilot.press("enter")
        await pilot.pause()
    assert json.loads(path.read_text())["reference"] == 1

    other = DecodelabApp(spec=ModelSpec(), configs=[DecodingConfig(name="x")], prompt="", loaded=demo)
    async with other.run_test() as pilot:
        await pilot.pause()
        other.files.open_session(str(path))
        await pilot.pause()
        assert other.workspace.reference is other.panes()[1].state
        assert any("Pane 2 is the reference" in m for m in messages(other))
        for _ in range(200):
            await pilot.pause(0.05)
            if other.panes()[0].state.agreement is not None:
                break
        again = other.panes()[0].state.agreement
        assert again is not None and again.kl_mean == pytest.approx(figures.kl_mean)
        assert again.top1_agreement == figures.top1_agreement


def test_a_session_with_a_reference_out_of_range_is_damaged():
    from decodelab.engine.config import ConfigError
    from decodelab.engine.library.sessions import dumps_session, loads_session

    doc = json.loads(dumps_session(Session(prompt="p", model={}, configs=[DecodingConfig()], reference=0)))
    assert loads_session(json.dumps(doc)).reference == 0
    doc["reference"] = 3
    with pytest.raises(ConfigError, match="reference 3 is not one of the 1 panes"):
        loads_session(json.dumps(doc))


@pytest.mark.parametrize("args, restore, prompt", [
    (["--resume", "-p", "greedy", "--prompt", "Hi"], True, None),  # make run's start: the workspace wins
    (["-p", "greedy", "--prompt", "Hi"], False, "Hi"),
    ([], True, None),
    (["--fresh"], False, None),
])
def test_resume_restores_even_a_start_that_names_its_panes(monkeypatch, args, restore, prompt):
    from click.testing import CliRunner

    import decodelab.tui.app as tui_app
    from decodelab.cli.main import main

    autosave_path().parent.mkdir(parents=True, exist_ok=True)
    autosave_path().write_text("{}")
    seen = {}
    monkeypatch.setattr(tui_app, "run_app", lambda **kw: seen.update(kw))
    result = CliRunner().invoke(main, ["--model", "demo", *args])
    assert result.exit_code == 0, result.output
    assert seen["restore"] is restore and seen["prompt"] == prompt and seen["run_at_start"] is (prompt is not None)
    both = CliRunner().invoke(main, ["--model", "demo", "--fresh", "--resume"])
    assert both.exit_code == 2 and "opposite" in both.output
