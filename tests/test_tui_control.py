"""Issue 10, items 11-20: nothing the user made is lost, and every run can be stopped (Pilot on the demo model)."""

from __future__ import annotations

import threading

import pytest
from textual.widgets import Checkbox, Input, TextArea

from decodelab.engine import DecodingConfig, find_preset
from decodelab.engine.backends.loading import ModelSpec
from decodelab.tui.app import DecodelabApp
from decodelab.tui.screens.ask import Confirm
from decodelab.tui.screens.config_editor import ConfigEditor
from decodelab.tui.screens.save_preset import SavePreset

PROMPT = "The for statement"


def make_app(demo, configs=None, prompt=PROMPT) -> DecodelabApp:
    configs = configs or [DecodingConfig(name="greedy", max_new_tokens=12),
                          DecodingConfig(name="warm", do_sample=True, temperature=0.8, max_new_tokens=12)]
    return DecodelabApp(spec=ModelSpec(), configs=configs, prompt=prompt, loaded=demo)


async def until(pilot, condition, timeout: float = 60) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("the condition was never met")


async def run_all(app, pilot) -> None:
    await pilot.press("ctrl+r")
    await pilot.pause()
    await until(pilot, lambda: not app.running and not app.runs.pending)
    await pilot.pause()


@pytest.fixture
def recorded(monkeypatch):
    """Wraps generate_many and generate_parts (the TUI's runs): each call's completions are recorded, in one
    flat list per call, so a test can see a run end."""
    import decodelab.engine.backends.base as backend_base
    calls = []

    def wrap(real, flat):
        def wrapper(*args, **kwargs):
            call = {"done": threading.Event(), "result": None}
            calls.append(call)
            try:
                result = real(*args, **kwargs)
                call["result"] = [c for part in result for c in part] if flat else result
            finally:
                call["done"].set()
            return result
        return wrapper

    monkeypatch.setattr(backend_base, "generate_parts", wrap(backend_base.generate_parts, True))  # every run's way
    return calls


def finished_calls(calls) -> list:
    for call in calls:
        call["done"].wait(120)  # a safety net against a hung test, not a timing assertion
    return [call["result"] for call in calls]


# -- 11: errors never wipe a pane's text -----------------------------------------------------------------

async def test_edit_refuses_max_new_tokens_past_the_models_context(demo):
    app = make_app(demo)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("escape", "1", "e")
        editor = app.screen
        editor.query_one("#f-max_new_tokens", Input).value = "2000"
        await pilot.pause()
        message = str(editor.query_one("#editor-error").render())
        assert "model's context is 512" in message and "lower max_new_tokens to" in message
        assert editor.query_one("#apply").disabled
        await pilot.press("ctrl+s")
        await pilot.press("escape")
        assert app.panes()[0].state.config.max_new_tokens == 12


async def test_a_run_that_cannot_fit_is_refused_and_every_pane_keeps_its_text(demo):
    app = make_app(demo)
    async with app.run_test(size=(120, 40)) as pilot:
        await run_all(app, pilot)
        texts = [p.state.text for p in app.panes()]
        app.panes()[1].state.config = app.panes()[1].state.config.replace(max_new_tokens=510)
        await run_all(app, pilot)
        assert [p.state.text for p in app.panes()] == texts
        assert any("warm" in n.message and "context is 512" in n.message for n in app._notifications)


async def test_chat_template_is_not_turned_on_for_a_model_without_one(demo):
    app = make_app(demo)
    async with app.run_test() as pilot:
        await run_all(app, pilot)
        texts = [p.state.text for p in app.panes()]
        await pilot.press("ctrl+t")
        assert not app.shelf.loaded.spec.chat
        await run_all(app, pilot)
        assert all(p.state.text and not p.state.error for p in app.panes())
        assert [p.state.text for p in app.panes()][0] == texts[0]  # greedy: the same text again


async def test_a_failed_run_keeps_the_text_and_shows_the_error_in_full(demo, monkeypatch):
    import decodelab.engine.backends.base as backend_base
    from decodelab.engine.results import GenerationError

    app = make_app(demo)
    async with app.run_test(size=(160, 45)) as pilot:
        await run_all(app, pilot)
        texts = [p.state.text for p in app.panes()]
        error = "out of memory running 2 configs (batch of 8 rows): run fewer configs, or lower max_new_tokens"

        def fail(*args, **kwargs):
            raise GenerationError(error)

        monkeypatch.setattr(backend_base, "generate_parts", fail)
        await run_all(app, pilot)
        for pane, text in zip(app.panes(), texts):
            assert pane.state.text == text and pane.state.error == error
            shown = pane.query_one(".pane--error")
            assert shown.display and str(shown.render()).replace("\n", " ").count("lower max_new_tokens") == 1


# -- 12: a failed model load keeps the working model -----------------------------------------------------

async def test_a_failed_load_keeps_the_working_model(demo, tmp_path):
    app = make_app(demo)
    async with app.run_test() as pilot:
        await pilot.press("escape", "m")
        app.screen.query_one(Input).value = str(tmp_path / "missing")
        await pilot.press("enter")
        await until(pilot, lambda: any("Could not load" in n.message for n in app._notifications))
        assert app.shelf.loaded is demo and app.shelf.spec.path == "demo"
        assert "demo" in str(app.query_one("#model-bar").render())
        await run_all(app, pilot)
        assert all(p.state.completion is not None for p in app.panes())


# -- 13: x can be undone --------------------------------------------------------------------------------

async def test_removing_a_pane_with_output_can_be_undone(demo):
    app = make_app(demo)
    async with app.run_test(size=(120, 40)) as pilot:
        await run_all(app, pilot)
        text = app.panes()[0].state.text
        await pilot.press("escape", "1", "x")
        await pilot.pause()
        assert [p.state.config.name for p in app.panes()] == ["warm"]
        assert any("press u to undo" in n.message for n in app._notifications)
        await pilot.press("u")
        await pilot.pause()
        assert [p.state.config.name for p in app.panes()] == ["greedy", "warm"]
        assert app.panes()[0].state.text == text


# -- 14 and 15: saving a preset -----------------------------------------------------------------------

async def test_save_keeps_seed_auto_unless_pinned_and_warns_about_builtins(demo):
    app = make_app(demo, [find_preset("balanced").replace(max_new_tokens=6)])
    async with app.run_test(size=(120, 40)) as pilot:
        await run_all(app, pilot)
        seed = app.panes()[0].state.seed
        await pilot.press("escape", "1", "s")
        dialog = app.screen
        assert isinstance(dialog, SavePreset)
        name = dialog.query_one(Input)
        assert name.value == "my-balanced"  # not the built-in's own name
        assert str(dialog.query_one("#save-note").render()) == ""
        name.value = "balanced"
        await pilot.pause()
        assert "built-in" in str(dialog.query_one("#save-note").render())
        name.value = "mine"
        await pilot.press("enter")
        await pilot.pause()
        assert find_preset("mine").seed is None  # seed=auto kept
        await pilot.press("s")
        app.screen.query_one(Input).value = "mine-pinned"
        await pilot.press("tab", "tab", "space")  # tick "pin the last run's seed"; Enter there saves
        assert app.screen.query_one(Checkbox).value
        await pilot.press("enter")
        await pilot.pause()
        assert find_preset("mine-pinned").seed == seed


async def test_the_overwrite_question_is_a_centred_modal_over_the_app(demo):
    app = make_app(demo)
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(2):
            await pilot.press("escape", "1", "s")
            app.screen.query_one(Input).value = "twice"
            await pilot.press("enter")
            await pilot.pause()
        assert isinstance(app.screen, Confirm)
        box = app.screen.query_one("Vertical").region
        assert abs(box.x - (100 - box.right)) <= 1 and abs(box.y - (30 - box.bottom)) <= 1  # centred
        assert box.width < 100 and box.height < 30
        assert app.screen_stack[-2] is app.screen_stack[0]  # right over the main screen


def test_snapshot_overwrite_dialog(snap_compare, demo):
    app = make_app(demo)

    async def ask_twice(pilot):
        from decodelab.engine.library.presets import save_user_preset

        save_user_preset(DecodingConfig(), "twice")  # no toast with a temporary path in the picture
        app.query_one("#prompt", TextArea).cursor_blink = False
        await pilot.press("escape", "1", "s")
        app.screen.query_one(Input).value = "twice"
        await pilot.press("enter")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=ask_twice)


# -- 16, 17, 18: stopping --------------------------------------------------------------------------------

async def test_ctrl_q_mid_run_cancels_the_run(demo, recorded):
    app = make_app(demo, [DecodingConfig(name="long", min_new_tokens=399, max_new_tokens=400)], prompt="The")
    async with app.run_test() as pilot:
        await pilot.press("ctrl+r")
        await until(pilot, lambda: len(app.panes()[0].state.steps) >= 3)
        await pilot.press("ctrl+q")
    [completions] = finished_calls(recorded)
    assert completions[0].stop_reason == "cancelled" and len(completions[0].steps) < 400


async def test_stop_one_pane_while_the_others_go_on(demo, recorded):
    configs = [DecodingConfig(name="stopped", min_new_tokens=299, max_new_tokens=300),
               DecodingConfig(name="goes-on", do_sample=True, seed=3, max_new_tokens=40)]
    app = make_app(demo, configs, prompt="The")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("escape", "1", "ctrl+r")  # from a pane: Esc there would cancel the whole run
        await until(pilot, lambda: len(app.panes()[0].state.steps) >= 2)
        await pilot.press("k")
        await until(pilot, lambda: not app.running)
        await pilot.pause()
        stopped, goes_on = app.panes()
        assert stopped.state.stop_reason == "cancelled" and len(stopped.state.steps) < 299
        assert goes_on.state.stop_reason in ("max_new_tokens", "eos") and goes_on.state.text
        assert not any("Run cancelled" in n.message for n in app._notifications)
        await pilot.press("k")  # nothing runs now: said, not silent
        assert any("not running" in n.message for n in app._notifications)


def test_the_engine_stops_a_row_and_leaves_the_others_as_they_were(demo):
    from decodelab.engine import generate_many

    configs = [DecodingConfig(name="a", max_new_tokens=20),
               DecodingConfig(name="b", do_sample=True, seed=9, max_new_tokens=20)]
    stops: set[int] = set()

    def on_step(event):
        if event.step == 4:
            stops.add(0)

    stopped, other = generate_many(demo, "The for", configs, on_step=on_step, stop_rows=stops)
    alone = generate_many(demo, "The for", configs[1:])[0]
    assert stopped.stop_reason == "cancelled" and len(stopped.steps) == 5
    assert other.token_ids == alone.token_ids and other.stop_reason == alone.stop_reason


async def test_leaving_the_ab_screen_cancels_its_round(demo, recorded, tmp_path):
    from decodelab.tui.screens.arena import ArenaScreen

    long = dict(do_sample=True, min_new_tokens=399, max_new_tokens=400)  # no early EOS: it must be cancelled
    configs = [DecodingConfig(name="a", **long), DecodingConfig(name="b", temperature=1.3, **long)]
    app = make_app(demo, configs, prompt="The")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("escape", "A")
        app.screen.query_one(Input).value = str(tmp_path / "ab.json")
        await pilot.press("enter")
        await until(pilot, lambda: bool(recorded))
        assert isinstance(app.screen, ArenaScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ArenaScreen)
        [completions] = finished_calls(recorded)
    assert all(c.stop_reason == "cancelled" and len(c.steps) < 400 for c in completions)


# -- 19, 20: the edit and sweep screens -----------------------------------------------------------------

async def test_a_bad_value_shows_the_rule_not_the_help(demo):
    from decodelab.engine.config import FIELD_HELP

    app = make_app(demo)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("escape", "1", "e")
        editor = app.screen
        assert isinstance(editor, ConfigEditor)
        editor.query_one("#f-temperature", Input).value = "abc"
        await pilot.pause()
        message = str(editor.query_one("#editor-error").render())
        assert "it must be a finite number" in message and ">= 0" in message
        assert FIELD_HELP["temperature"][:30] not in message


async def test_sweep_from_a_greedy_pane_runs_focuses_a_field_and_reports_ctrl_b(demo):
    from decodelab.tui.screens.sweep import SweepScreen

    app = make_app(demo, [DecodingConfig(name="greedy", max_new_tokens=5)])
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.press("escape", "S")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, SweepScreen)
        assert app.focused is screen.query_one("#s-grid", Input)
        screen.query_one("#s-grid", Input).value = "temperature=0.3,1.2"
        screen.query_one("#s-seeds", Input).value = "1"
        await pilot.press("ctrl+r")
        await until(pilot, lambda: not screen.running)
        assert len(screen.results) == 2
        await pilot.press("ctrl+b")
        await pilot.pause()
        assert "added pane" in str(screen.query_one("#sweep-status").render())
        assert len(app.panes()) == 2


async def test_a_chat_run_on_a_model_without_a_template_is_refused_with_the_key_to_fix_it(demo):
    import dataclasses

    chat = dataclasses.replace(demo, spec=dataclasses.replace(demo.spec, chat=True))  # as `--model demo --chat`
    app = DecodelabApp(spec=chat.spec, configs=[DecodingConfig(max_new_tokens=4)], prompt=PROMPT, loaded=chat)
    async with app.run_test() as pilot:
        await run_all(app, pilot)
        assert app.panes()[0].state.completion is None
        assert any("no chat template" in n.message and "ctrl+t" in n.message for n in app._notifications)
        await pilot.press("ctrl+t")  # turning it off is always allowed
        assert not app.shelf.loaded.spec.chat
        await run_all(app, pilot)
        assert app.panes()[0].state.completion is not None


async def test_the_sweep_form_says_trials_is_ignored_for_a_grid(demo):
    app = make_app(demo, [DecodingConfig(name="base", do_sample=True, max_new_tokens=3)])
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.press("escape", "S")
        await pilot.pause()
        screen = app.screen
        screen.query_one("#s-grid", Input).value = "temperature=0.5"
        screen.query_one("#s-seeds", Input).value = "1"
        screen.query_one("#s-trials", Input).value = "5"
        await pilot.press("ctrl+r")
        await until(pilot, lambda: not screen.running)
        assert "trials is ignored" in str(screen.query_one("#sweep-status").render())


# -- one table for keys and the palette (tui/keys.py) ------------------------------------------------------

def test_every_key_names_a_part_and_a_method_that_exist():
    """Issue 31: each key's action is "part.method(args)" on one of the App's named parts; a pane key's method
    takes the pane first. The main keys are the main screen's (no dialog sees them)."""
    import inspect

    from textual.actions import parse

    from decodelab.engine.backends.loading import ModelSpec
    from decodelab.tui.app import PARTS
    from decodelab.tui.keys import KEYS, bindings
    from decodelab.tui.screens.main import MainScreen

    app = DecodelabApp(spec=ModelSpec())
    for key in KEYS:
        part, method, params = parse(key.action)
        assert part in PARTS, key.action
        owner = app.panes_part if part == "panes" else getattr(app, part)
        target = getattr(owner, method, None)
        assert callable(target), key.action
        wanted = len(params) + (key.scope == "pane")
        inspect.signature(target).bind(*range(wanted))  # takes (pane,) + the action's arguments
    keys = [k for key in KEYS for k in key.keys.split(",") if key.scope == "main"]
    assert len(keys) == len(set(keys))  # no key bound twice on the main screen
    assert [b.action for b in MainScreen.BINDINGS] == [b.action for b in bindings("main")]
    assert not [b for b in DecodelabApp.BINDINGS if "do(" in str(b)]  # the App binds none: a dialog never runs one


async def test_the_palette_lists_the_keys_and_runs_pane_commands_on_the_current_pane(demo):
    from decodelab.tui.keys import KEYS

    app = make_app(demo)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("escape", "2")
        await pilot.pause()
        commands = {c.title: c for c in app.get_system_commands(app.screen)}
        assert {k.title for k in KEYS if k.title} <= set(commands)
        assert commands["Stop this pane's run"].help.startswith("k: ")
        await commands["Duplicate this pane"].callback()
        await pilot.pause()
        assert [p.state.config.name for p in app.panes()] == ["greedy", "warm", "warm-copy"]


async def test_moving_a_pane_renumbers_the_titles_and_the_digit_keys(demo):
    """Issue 17: after > the titles read 1, 3, 2 and 3 focused the pane titled 2."""
    from decodelab.engine import DecodingConfig as Config

    app = make_app(demo, [Config(name="a", max_new_tokens=4), Config(name="b", max_new_tokens=4),
                          Config(name="c", max_new_tokens=4)])
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.press("escape", "2", "greater_than_sign")
        await pilot.pause()
        await pilot.pause()
        assert [(p.number, p.state.config.name) for p in app.panes()] == [(1, "a"), (2, "c"), (3, "b")]
        assert all(str(p.border_title).startswith(f"{p.number} ") for p in app.panes())
        await pilot.press("3")
        await pilot.pause()
        assert app.focused.state.config.name == "b"


async def test_ctrl_r_from_the_prompt_moves_to_the_panes_and_esc_from_the_alternatives_cancels(demo, monkeypatch):
    """Issue 17: after ctrl+r the prompt kept focus (typing 1 went into it). Esc in the alternatives goes back to
    the pane and leaves the run going (issue 36's walk-through lost a branch to it), saying so; Esc there cancels."""
    from decodelab.engine import DecodingConfig as Config

    import time

    from decodelab.engine.decoding.loop import DecodeLoop

    real = DecodeLoop._forward  # at least 50 ms a step (20 s for 400), so the run outlasts the keys on an idle machine
    monkeypatch.setattr(DecodeLoop, "_forward", lambda self, tokens: time.sleep(0.05) or real(self, tokens))
    app = make_app(demo, [Config(name="long", max_new_tokens=400), Config(name="other", max_new_tokens=400)])
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("escape", "p", "ctrl+r")
        await pilot.pause()
        assert app.running and app.focused is app.panes()[0]
        prompt = app.query_one("#prompt", TextArea).text
        await until(pilot, lambda: len(app.panes()[0].state.steps) > 3)
        await pilot.press("1", "right", "down")  # into the alternatives while it runs
        await pilot.pause()
        assert app.query_one("#prompt", TextArea).text == prompt
        await pilot.press("escape")
        await pilot.pause()
        assert app.running and app.focused is app.panes()[0]
        assert any("Esc again cancels" in n.message for n in app._notifications)
        await pilot.press("escape")
        await until(pilot, lambda: not app.running)
        assert app.panes()[0].state.stop_reason == "cancelled" and len(app.panes()[0].state.steps) < 400


async def test_the_editor_refuses_a_logit_bias_id_outside_the_vocabulary(demo):
    """Issue 17: "999999" = -100 showed ✓ in the editor, then the run failed."""
    app = make_app(demo)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("escape", "1", "e")
        editor = app.screen
        editor.query_one("#f-logit_bias", Input).value = '"999999" = -100'
        await pilot.pause()
        message = str(editor.query_one("#editor-error").render())
        assert "999999 is outside this model's vocabulary" in message and editor.query_one("#apply").disabled
        editor.query_one("#f-logit_bias", Input).value = '"17" = -100'
        await pilot.pause()
        assert not editor.query_one("#apply").disabled
        await pilot.press("escape")


async def test_the_editor_refuses_a_named_token_that_is_several_tokens(demo):
    """Issue 20: logprob_tokens names single tokens; a longer text is refused in the editor, not mid-run."""
    app = make_app(demo)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("escape", "1", "e")
        editor = app.screen
        editor.query_one("#f-logprob_tokens", Input).value = '"unbelievably"'
        await pilot.pause()
        message = str(editor.query_one("#editor-error").render())
        assert "'unbelievably' is 7 tokens" in message and editor.query_one("#apply").disabled
        editor.query_one("#f-logprob_tokens", Input).value = '" of", 7'
        await pilot.pause()
        assert not editor.query_one("#apply").disabled
        await pilot.press("escape")


async def test_f_after_a_run_lists_which_settings_mattered(demo):
    """Issue 20: the dead settings of the last run, in a dialog that scrolls (a toast cut them off)."""
    config = DecodingConfig(name="two", do_sample=True, top_k=40, min_p=0.3, seed=1, max_new_tokens=8)
    app = make_app(demo, [config])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+r")
        await until(pilot, lambda: not app.running and app.panes()[0].state.completion is not None)
        await pilot.press("escape", "1", "f")
        await pilot.pause()
        body = app.screen.body
        assert "over the last run:" in body and "dead: top_k=40 cut on 8/8 steps" in body
        assert "min_p=0.3 decided what was kept on 8/8 steps" in body
        await pilot.press("q")


async def test_coming_back_to_smollm2_with_m_turns_chat_on_again(demo):
    """Issue 17: m back to SmolLM2 left chat mode off, though chat follows the model."""
    app = make_app(demo)
    async with app.run_test(size=(120, 40)) as pilot:
        loads = []
        app.load = loads.append  # the spec that would be loaded
        assert not app.shelf.spec.chat
        app.shelf.load_path("smollm2")
        await pilot.pause()
        assert loads and loads[-1].path == "smollm2" and loads[-1].chat


# -- issue 17, item 2: one change for every pane ------------------------------------------------------------------

async def test_equals_sets_a_field_on_every_pane_checked_like_the_editor_and_u_undoes_it(demo):
    from textual.widgets import Input

    app = make_app(demo)
    async with app.run_test(size=(80, 24)) as pilot:
        before = [p.state.config for p in app.panes()]
        await pilot.press("escape", "=")
        field = app.screen.query_one(Input)
        for typed, words in (("max_new_tokens=5000", "model's context is 512"), ("temprature=1", "'temperature'"),
                             ("top_p=3", "top_p=3 is invalid"), ("32", "FIELD=VALUE")):
            field.value = typed
            await pilot.press("enter")
            assert words in str(app.screen.query_one("#ask-error").render())  # the dialog stays open, saying why
        field.value = "max_new_tokens=7"
        await pilot.press("enter")
        await pilot.pause()
        assert [p.state.config.max_new_tokens for p in app.panes()] == [7] * len(before)
        assert [p.state.config.replace(max_new_tokens=b.max_new_tokens) for p, b in zip(app.panes(), before)] == before
        await pilot.press("u")
        assert [p.state.config for p in app.panes()] == before


async def test_the_editor_jumps_to_a_field_by_part_of_its_name(demo):
    from textual.widgets import Input

    app = make_app(demo)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("escape", "1", "e")
        editor = app.screen
        await pilot.press(*"max_new", "enter")
        assert editor.focused is editor.query_one("#f-max_new_tokens", Input)
        await pilot.press("ctrl+f", *"dry mult", "enter")
        assert editor.focused is editor.query_one("#f-dry_multiplier", Input)
        await pilot.press("ctrl+f", *"zzz", "enter")
        assert editor.focused is editor.query_one("#find", Input)


async def test_a_cut_config_summary_says_so_and_the_tooltip_has_it_whole(demo):
    config = DecodingConfig(name="busy", do_sample=True, temperature=0.7, top_p=0.9, top_n_sigma=1.5,
                            xtc_probability=0.5, xtc_threshold=0.1, dry_multiplier=0.8, repetition_penalty=1.1)
    app = make_app(demo, [config, DecodingConfig(name="g")])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        label = app.panes()[0].query_one(".pane--summary")
        drawn = label.render_line(0).text.rstrip()
        assert drawn.endswith("…") and label.tooltip == config.summary()


async def test_f_shows_the_whole_config_and_equals_names_the_greedy_panes_it_does_not_change(demo):
    app = make_app(demo)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("escape", "2", "f")
        await pilot.pause()
        from decodelab.tui.screens.ask import ShowText

        assert isinstance(app.screen, ShowText)
        shown = app.screen.body
        assert "temperature = 0.8" in shown and "do_sample = true" in shown and "max_new_tokens = 12" in shown
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ShowText)
        await pilot.press("=")
        app.screen.query_one("#ask-input").value = "temperature=0.5"
        await pilot.press("enter")
        await pilot.pause()
        assert any("greedy pane 1 ignores temperature" in n.message for n in app._notifications)


async def test_esc_in_the_prompt_with_no_panes_leaves_it_so_a_adds_one(demo):
    app = make_app(demo, [DecodingConfig(name="only", max_new_tokens=4)])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("escape", "1", "x", "p", "escape")
        assert not app.panes() and app.focused is None
        await pilot.press("a")
        await pilot.pause()
        from decodelab.tui.screens.preset_picker import PresetPicker

        assert isinstance(app.screen, PresetPicker)
