"""The playground TUI, driven by Pilot on the demo model: every action, plus snapshots of the key screens."""

from __future__ import annotations

import functools
import threading

import pytest
from textual.widgets import Input, OptionList, TextArea

from decodelab.engine import DecodingConfig, find_preset
from decodelab.engine.backends.loading import ModelSpec
from decodelab.engine.library.presets import user_preset_dir
from decodelab.tui.app import DecodelabApp
from decodelab.tui.screens.ask import AskText, Confirm
from decodelab.tui.screens.config_editor import ConfigEditor
from decodelab.tui.screens.preset_picker import PresetPicker
from decodelab.tui.screens.save_preset import SavePreset
from decodelab.tui.widgets.inspector import Inspector

import tui_pilot

PROMPT = "The for statement"


def make_app(demo, configs=None, prompt=PROMPT, **kwargs) -> DecodelabApp:
    configs = configs or [DecodingConfig(name="greedy", max_new_tokens=12),
                          DecodingConfig(name="warm", do_sample=True, temperature=0.8, seed=5, max_new_tokens=12)]
    return DecodelabApp(spec=ModelSpec(), configs=configs, prompt=prompt, loaded=demo, **kwargs)


# These short runs must finish within a minute; tui_pilot's helper allows longer ones more time.
wait_idle = functools.partial(tui_pilot.wait_idle, timeout=60)


async def test_run_streams_into_every_pane_off_the_ui_thread(demo):
    app = make_app(demo)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+r")
        await wait_idle(app, pilot)
        panes = app.panes()
        assert all(p.state.completion is not None and p.state.text for p in panes)
        assert [len(p.state.steps) for p in panes] == [12, 12]
        assert app.runs.engine_threads and threading.main_thread().name not in app.runs.engine_threads
        assert "12 tok" in str(panes[0].query_one(".pane--stats").render())


async def test_rerun_same_seeds_reproduces_and_run_rerolls(demo):
    configs = [DecodingConfig(name="hot", do_sample=True, temperature=1.2, max_new_tokens=10)]
    app = make_app(demo, configs)
    async with app.run_test() as pilot:
        await pilot.press("ctrl+r")
        await wait_idle(app, pilot)
        pane = app.panes()[0]
        first_seed, first_ids = pane.state.seed, pane.state.token_ids
        await pilot.press("ctrl+g")
        await wait_idle(app, pilot)
        assert pane.state.seed == first_seed and pane.state.token_ids == first_ids
        await pilot.press("ctrl+r")
        await wait_idle(app, pilot)
        assert pane.state.seed != first_seed


async def test_cancel_keeps_partial_outputs(demo):
    configs = [DecodingConfig(name="long", max_new_tokens=400)]
    app = make_app(demo, configs)
    async with app.run_test() as pilot:
        await pilot.press("ctrl+r")
        await pilot.pause(0.3)
        await pilot.press("escape")
        await wait_idle(app, pilot)
        state = app.panes()[0].state
        assert state.stop_reason == "cancelled" and len(state.steps) < 400
        assert app.query_one("#prompt", TextArea).text == PROMPT  # nothing typed is lost


async def test_add_duplicate_remove_and_reorder_panes(demo):
    app = make_app(demo)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("escape", "1", "a")
        assert isinstance(app.screen, PresetPicker)
        await pilot.press(*"precise", "enter")
        await pilot.pause()
        names = [p.state.config.name for p in app.panes()]
        assert names == ["greedy", "warm", "precise"]
        await pilot.press("escape", "1", "d")
        await pilot.pause()
        assert [p.state.config.name for p in app.panes()] == ["greedy", "greedy-copy", "warm", "precise"]
        await pilot.press("greater_than_sign")
        await pilot.pause()
        assert [p.state.config.name for p in app.panes()] == ["greedy", "warm", "greedy-copy", "precise"]
        await pilot.press("x")
        await pilot.pause()
        assert [p.state.config.name for p in app.panes()] == ["greedy", "warm", "precise"]


async def test_edit_validates_with_engine_messages(demo):
    app = make_app(demo)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("escape", "2", "e")
        editor = app.screen
        assert isinstance(editor, ConfigEditor)
        editor.query_one("#f-top_p", Input).value = "1.5"
        await pilot.pause()
        assert "top_p=1.5 is invalid" in str(editor.query_one("#editor-error").render())
        assert editor.query_one("#apply").disabled
        editor.query_one("#f-top_p", Input).value = "0.5"
        editor.query_one("#f-stop_strings", Input).value = '"END", "\\n\\n"'
        await pilot.pause()
        assert not editor.query_one("#apply").disabled
        await pilot.press("ctrl+s")
        await pilot.pause()
        config = app.panes()[1].state.config
        assert config.top_p == 0.5 and config.stop_strings == ("END", "\n\n")


async def test_heatmap_modes_cycle_with_a_legend(demo):
    app = make_app(demo)
    async with app.run_test() as pilot:
        await pilot.press("ctrl+r")
        await wait_idle(app, pilot)
        await pilot.press("escape", "1")
        seen = []
        for _ in range(6):
            await pilot.press("h")
            seen.append(app.workspace.measure)
            assert app.panes()[0].measure == app.workspace.measure
        assert seen == ["prob_processed", "rank", "entropy", "surprisal", "off", "prob"]
        assert "probability" in str(app.query_one("#legend").render())


async def test_inspector_and_branching(demo):
    app = make_app(demo, [DecodingConfig(name="greedy", max_new_tokens=12)])
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+r")
        await wait_idle(app, pilot)
        pane = app.panes()[0]
        original = pane.state.token_ids
        await pilot.press("escape", "1", "right", "right", "right")
        assert pane.state.cursor == 2
        inspector = app.query_one(Inspector)
        assert inspector.has_class("-visible")
        step = pane.state.steps[2]
        assert f"rank {step.rank}" in str(inspector.query_one("#inspector-info").render())
        options = inspector.query_one(OptionList)
        assert options.option_count == 1 + len(step.top)
        alternative = step.top[1]
        options.highlighted = 2  # the header row, then rank 0, then rank 1
        await pilot.press("b")
        await wait_idle(app, pilot)
        assert pane.state.token_ids[:3] == original[:2] + [alternative.token_id]
        assert pane.state.branched_at == 2 and len(pane.state.token_ids) == 12


async def test_clicking_a_token_selects_it(demo):
    app = make_app(demo, [DecodingConfig(name="greedy", max_new_tokens=8)])
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+r")
        await wait_idle(app, pilot)
        view = app.panes()[0].query_one("TokenView")
        view.action_select_token(3)
        await pilot.pause()
        assert app.panes()[0].state.cursor == 3 and app.query_one(Inspector).has_class("-visible")


async def test_save_preset_never_overwrites_silently(demo):
    app = make_app(demo)
    async with app.run_test() as pilot:
        await pilot.press("escape", "2", "s")
        assert isinstance(app.screen, SavePreset)
        app.screen.query_one(Input).value = "my-warm"
        await pilot.press("enter")
        await pilot.pause()
        path = user_preset_dir() / "my-warm.toml"
        saved = find_preset("my-warm")
        assert saved.temperature == 0.8 and saved.seed == 5
        before = path.read_text()
        app.panes()[1].state.config = app.panes()[1].state.config.replace(temperature=0.3)
        await pilot.press("s")
        app.screen.query_one(Input).value = "my-warm"
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, Confirm)
        await pilot.press("n")
        await pilot.pause()
        assert path.read_text() == before
        await pilot.press("s")
        app.screen.query_one(Input).value = "my-warm"
        await pilot.press("enter", "y")
        await pilot.pause()
        assert find_preset("my-warm").temperature == 0.3


async def test_bad_preset_name_is_refused_in_the_dialog(demo):
    app = make_app(demo)
    async with app.run_test() as pilot:
        await pilot.press("escape", "1", "s")
        app.screen.query_one(Input).value = "../escape"
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, SavePreset)
        assert "preset name" in str(app.screen.query_one("#save-error").render())


async def test_session_save_and_open(demo, tmp_path):
    path = tmp_path / "s.json"
    app = make_app(demo)
    async with app.run_test() as pilot:
        await pilot.press("ctrl+r")
        await wait_idle(app, pilot)
        texts = [p.state.text for p in app.panes()]
        await pilot.press("ctrl+s")
        app.screen.query_one(Input).value = str(path)
        await pilot.press("enter")
        await pilot.pause()
        assert path.is_file()
    other = make_app(demo, [DecodingConfig(name="other")], prompt="something else")
    async with other.run_test() as pilot:
        await pilot.press("ctrl+o")
        other.screen.query_one(Input).value = str(path)
        await pilot.press("enter")
        await pilot.pause()
        await pilot.pause()
        assert other.query_one("#prompt", TextArea).text == PROMPT
        assert [p.state.config.name for p in other.panes()] == ["greedy", "warm"]
        assert [p.state.text for p in other.panes()] == texts


async def test_bad_session_file_is_a_notification(demo, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    app = make_app(demo)
    async with app.run_test() as pilot:
        app.files.open_session(str(bad))
        await pilot.pause()
        assert any("not a decodelab session" in n.message for n in app._notifications)
        assert len(app.panes()) == 2


async def test_failed_model_load_offers_another(tmp_path):
    app = DecodelabApp(spec=ModelSpec(path=str(tmp_path / "missing")), configs=[DecodingConfig()], prompt="x")
    async with app.run_test() as pilot:
        for _ in range(100):
            await pilot.pause(0.05)
            if isinstance(app.screen, AskText):
                break
        assert isinstance(app.screen, AskText)
        assert "no such model folder" in app.screen.detail
        await pilot.press("ctrl+r")  # with no model, a run is refused with a message, not a crash
        app.screen.query_one(Input).value = "demo"
        await pilot.press("enter")
        for _ in range(200):
            await pilot.pause(0.05)
            if app.shelf.loaded is not None:
                break
        assert app.shelf.loaded is not None and app.shelf.loaded.name == "demo"


async def test_a_run_that_cannot_fit_is_refused_and_the_app_survives(demo):
    app = make_app(demo, [DecodingConfig(max_new_tokens=500)], prompt="word " * 100)
    async with app.run_test() as pilot:
        await pilot.press("ctrl+r")
        await wait_idle(app, pilot)
        state = app.panes()[0].state
        assert state.completion is None and not state.running  # refused before running
        assert any("context" in n.message for n in app._notifications)
        assert app.query_one("#prompt", TextArea).text == "word " * 100


async def test_chat_toggle_and_theme(demo):
    app = make_app(demo)
    async with app.run_test() as pilot:
        await pilot.press("ctrl+t")  # the demo model has no chat template: chat stays off, and it says why
        assert not app.shelf.loaded.spec.chat
        assert any("no chat template" in n.message for n in app._notifications)
        await pilot.press("escape", "1", "t")
        assert app.theme == "decodelab-light"


# -- snapshots ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def session_file(demo, tmp_path_factory):
    """A session with real outputs and fixed timings, so screenshots are the same on every run."""
    import dataclasses

    from decodelab.engine import generate_many
    from decodelab.engine.results import Timings
    from decodelab.engine.library.sessions import Session, save_session

    configs = [find_preset("greedy").replace(max_new_tokens=40),
               find_preset("balanced").replace(seed=11, max_new_tokens=40),
               find_preset("creative").replace(seed=12, max_new_tokens=40)]
    completions = [dataclasses.replace(c, timings=Timings(0.01, 1.0, 40.0))
                   for c in generate_many(demo, PROMPT, configs)]
    path = tmp_path_factory.mktemp("snap") / "session.json"
    save_session(Session(prompt=PROMPT, model={"path": "demo"}, configs=configs, completions=completions), path)
    return str(path)


def snapshot_app(demo, session_file):
    app = make_app(demo, [DecodingConfig(name="placeholder")])

    async def before(pilot):
        await pilot.pause()  # the main screen's panes are mounted
        app.query_one("#prompt", TextArea).cursor_blink = False
        app.files.open_session(session_file)
        await pilot.pause()
        await pilot.pause()
        app.clear_notifications()
        app.panes()[0].focus()
        await pilot.pause()

    return app, before


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_snapshot_main_screen(snap_compare, demo, session_file, size):
    app, before = snapshot_app(demo, session_file)
    assert snap_compare(app, terminal_size=size, run_before=before)


def test_snapshot_config_editor(snap_compare, demo, session_file):
    app, before = snapshot_app(demo, session_file)

    async def open_editor(pilot):
        await before(pilot)
        await pilot.press("escape", "2", "e")
        app.screen.query_one("#find").cursor_blink = False  # a blinking cursor made the picture depend on timing
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 40), run_before=open_editor)


def test_snapshot_inspector(snap_compare, demo, session_file):
    app, before = snapshot_app(demo, session_file)

    async def inspect(pilot):
        await before(pilot)
        await pilot.press("escape", "1", "right", "right", "right", "right")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(160, 48), run_before=inspect)


async def test_diff_marks_first_divergence_and_copy(demo):
    configs = [DecodingConfig(name="greedy", max_new_tokens=12),
               DecodingConfig(name="hot", do_sample=True, temperature=1.5, seed=3, max_new_tokens=12)]
    app = make_app(demo, configs)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+r")
        await wait_idle(app, pilot)
        greedy, hot = app.panes()
        expected = next(i for i, (a, b) in enumerate(zip(greedy.state.token_ids, hot.state.token_ids)) if a != b)
        await pilot.press("escape", "v")
        assert app.workspace.diff_mode == "greedy" and hot.diverge_at == expected and greedy.diverge_at is None
        assert f"diverges @{expected}" in str(hot.query_one(".pane--stats").render())
        await pilot.press("v")
        assert app.workspace.diff_mode == "left" and hot.diverge_at == expected
        await pilot.press("2", "c")
        assert app.clipboard == hot.state.text
        await pilot.press("y")
        assert 'name = "hot"' in app.clipboard and "temperature = 1.5" in app.clipboard


async def test_blind_ab_screen_votes_reveals_and_saves(demo, tmp_path):
    from decodelab.engine.experiments.arena import load_tally

    tally_path = tmp_path / "ab.json"
    app = make_app(demo, [DecodingConfig(name="cool", do_sample=True, temperature=0.3, max_new_tokens=8),
                          DecodingConfig(name="hot", do_sample=True, temperature=1.4, max_new_tokens=8)])
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await tui_pilot.open_ab(app, pilot, str(tally_path))
        titles = [box.border_title for box in screen.query(".arena-output")]
        assert titles == ["A", "B"]  # identities hidden
        await pilot.press("a")
        titles = [box.border_title for box in screen.query(".arena-output")]
        assert any("cool" in t for t in titles) and any("hot" in t for t in titles)
        tally = load_tally(tally_path)
        assert len(tally.votes) == 1 and tally.votes[0]["choice"] == "A"
        await pilot.press("w")
        app.screen.query_one(Input).value = "ab-champ"
        await pilot.press("enter")
        await pilot.pause()
        assert "blind A/B winner" in find_preset("ab-champ").description


async def test_sweep_screen_runs_and_keeps_the_best(demo):
    from decodelab.tui.screens.sweep import SweepScreen

    app = make_app(demo, [DecodingConfig(name="base", do_sample=True, max_new_tokens=6)])
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.press("escape", "S")
        screen = app.screen
        assert isinstance(screen, SweepScreen)
        screen.query_one("#s-grid", Input).value = "temperature=0.3,1.2"
        screen.query_one("#s-seeds", Input).value = "2"
        await pilot.press("ctrl+r")
        for _ in range(400):
            await pilot.pause(0.05)
            if not screen.running:
                break
        assert len(screen.results) == 2
        assert "2 points" in str(screen.query_one("#sweep-status").render())
        await pilot.press("ctrl+b")
        await pilot.press("escape")
        await pilot.pause()
        assert len(app.panes()) == 2 and app.panes()[1].state.config.name.startswith("sweep-")


async def test_sweep_screen_reports_bad_input(demo):
    app = make_app(demo)
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.press("escape", "S")
        app.screen.query_one("#s-grid", Input).value = "temprature=1"
        await pilot.press("ctrl+r")
        assert "cannot sweep" in str(app.screen.query_one("#sweep-status").render())


def test_steps_without_logprobs_render_without_colour():
    """A remote server that reports no logprobs gives NaN: no heatmap colour, "n/a" in the inspector."""
    from decodelab.engine.results import TokenStep
    from decodelab.themes.heatmap import ORDER, level
    from decodelab.tui.widgets.inspector import _pct
    from decodelab.tui.widgets.token_view import render_tokens

    nan = float("nan")
    step = TokenStep(-1, "hi", nan, nan, -1, nan, nan)
    assert all(level(step, m) is None for m in ORDER)
    assert render_tokens([step], 2, "prob", 0, None).plain == "hi"
    assert _pct(nan).strip() == "n/a" and _pct(float("-inf")).strip() == "cut"


async def test_session_dialogs_offer_the_sessions_folder_and_the_file_just_saved(demo, tmp_path):
    """Issue 17: they offered a name in the current folder (often a git clone), and ctrl+o did not offer the
    file just saved; opening left focus in the prompt, where the next digit was typed."""
    import os

    app = make_app(demo)
    async with app.run_test() as pilot:
        await pilot.press("ctrl+r")
        await wait_idle(app, pilot)
        await pilot.press("ctrl+s")
        offered = app.screen.query_one(Input).value
        assert offered.startswith(os.path.join(os.environ["DECODELAB_CONFIG_DIR"], "sessions", "session-"))
        await pilot.press("enter")
        await pilot.pause()
        assert os.path.isfile(offered)
    other = make_app(demo, [DecodingConfig(name="other")], prompt="something else")
    async with other.run_test() as pilot:
        await pilot.press("ctrl+o")
        assert other.screen.query_one(Input).value == offered  # the newest session in the folder
        await pilot.press("enter")
        for _ in range(5):
            await pilot.pause()
        assert other.focused is other.panes()[0]
        await pilot.press("2")
        await pilot.pause()
        assert other.query_one("#prompt", TextArea).text == PROMPT and other.focused is other.panes()[1]
