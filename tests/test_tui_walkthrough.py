"""Defects a newcomer met walking the TUI by keyboard (edit dialog, prompt focus, loading, stop one pane)."""

from __future__ import annotations

from textual.widgets import Input, TextArea

from decodelab.engine import DecodingConfig
from decodelab.engine.backends.loading import ModelSpec
from decodelab.tui.app import DecodelabApp
from decodelab.tui.screens.config_editor import ConfigEditor

from test_tui import make_app, wait_idle


async def test_enter_in_an_edit_field_applies_and_the_dialog_says_its_keys(demo):
    app = make_app(demo)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("escape", "2", "e")
        editor = app.screen
        assert isinstance(editor, ConfigEditor)
        assert "Enter or ctrl+s applies" in str(editor.query_one("#editor-keys").render())
        field = editor.query_one("#f-temperature", Input)
        field.focus()
        field.value = "1.3"
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert not isinstance(app.screen, ConfigEditor)
        assert app.panes()[1].state.config.temperature == 1.3


async def test_enter_on_an_invalid_value_keeps_the_dialog_open(demo):
    app = make_app(demo)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("escape", "2", "e")
        field = app.screen.query_one("#f-temperature", Input)
        field.focus()
        field.value = "hot"
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfigEditor)
        assert app.panes()[1].state.config.temperature == 0.8


async def test_p_returns_to_the_prompt_and_esc_mid_run_leaves_it(demo):
    configs = [DecodingConfig(name="long", max_new_tokens=400, min_new_tokens=400)]
    app = make_app(demo, configs)
    async with app.run_test(size=(80, 24)) as pilot:
        prompt = app.query_one("#prompt", TextArea)
        await pilot.press("escape", "1")
        assert app.focused is not prompt
        await pilot.press("p")
        assert app.focused is prompt
        await pilot.press("ctrl+r")
        await pilot.pause(0.2)
        assert app.running
        await pilot.press("escape")  # cancels, and the next key goes to the panes, not into the prompt
        assert app.focused is not prompt
        await wait_idle(app, pilot)
        assert prompt.text == "The for statement"


async def test_ctrl_r_while_the_model_loads_says_it_is_loading(demo):
    app = DecodelabApp(spec=ModelSpec(), configs=[DecodingConfig(name="g")], prompt="x", loaded=None)
    app.load = lambda spec: setattr(app.shelf, "loading", True)  # a load that is still under way
    async with app.run_test(size=(80, 24)) as pilot:
        app.load(app.shelf.spec)
        await pilot.press("ctrl+r")
        await pilot.pause()
        messages = [n.message for n in app._notifications]
        assert any("still loading" in m for m in messages), messages
        assert not any("No model is loaded" in m for m in messages)


async def test_stopping_the_only_running_pane_does_not_claim_others_go_on(demo):
    configs = [DecodingConfig(name="long", max_new_tokens=400, min_new_tokens=400)]
    app = make_app(demo, configs)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("escape", "1", "ctrl+r")
        await pilot.pause(0.2)
        await pilot.press("k")
        await wait_idle(app, pilot)
        messages = [n.message for n in app._notifications]
        assert any(m.startswith("Stopping long") for m in messages), messages
        assert not any("other panes go on" in m for m in messages)


def test_a_slow_pane_reports_its_rate_with_a_decimal_not_zero():
    from decodelab.engine.results import Timings
    from decodelab.tui.state import PaneState
    from decodelab.tui.widgets.pane import stats_text

    state = PaneState(DecodingConfig(name="g"))
    state.completion = type("C", (), {"timings": Timings(0.1, 10.0, 0.3)})()
    assert "0.3 tok/s" in stats_text(state, None)
    state.completion = type("C", (), {"timings": Timings(0.1, 1.0, 41.7)})()
    assert "42 tok/s" in stats_text(state, None)


async def test_switching_to_a_model_without_a_chat_template_turns_chat_off(demo):
    import dataclasses

    chatty = dataclasses.replace(demo, spec=dataclasses.replace(demo.spec, chat=True))
    app = DecodelabApp(spec=chatty.spec, configs=[DecodingConfig(name="g", max_new_tokens=4)], prompt="x",
                       loaded=chatty)
    async with app.run_test(size=(80, 24)) as pilot:
        from decodelab.tui.messages import ModelLoaded

        app.load = lambda spec: app.post_message(ModelLoaded(chatty))  # the spec keeps chat on, as m does
        app.shelf.load_path("demo")
        await pilot.pause()
        await pilot.pause()
        assert app.shelf.loaded.spec.chat is False
        assert any("no chat template" in n.message for n in app._notifications)
        await pilot.press("ctrl+r")
        await wait_idle(app, pilot)
        assert app.panes()[0].state.steps and not app.panes()[0].state.error


async def test_every_ab_candidate_can_be_seen_at_80x24_and_160x45(demo, tmp_path):
    """Issue 36's walk-through: with six panes, A/B drew only A; B-F sat off the screen's right edge."""
    from tui_pilot import open_ab

    configs = [DecodingConfig(name=f"c{i}", do_sample=True, temperature=0.5 + i / 10, seed=i, max_new_tokens=20)
               for i in range(6)]
    for size in ((80, 24), (160, 45)):
        app = make_app(demo, configs=configs)
        async with app.run_test(size=size) as pilot:
            screen = await open_ab(app, pilot, str(tmp_path / f"ab-{size[0]}.json"))
            boxes = list(screen.query(".arena-output"))
            assert [str(b.border_title) for b in boxes] == list("ABCDEF")
            assert all(b.region.right <= size[0] for b in boxes), [b.region for b in boxes]  # none off the edge
            outputs = screen.query_one("#arena-outputs")
            assert app.focused is outputs
            await pilot.press("end")
            await pilot.pause()
            last = boxes[-1]
            assert outputs.region.contains_region(last.region) or last.region.y < outputs.region.bottom


async def test_the_sweep_screen_fits_80x24_with_its_feedback_in_view(demo):
    """The walk-through: at 80x24 the Run button, progress and messages were below the edge, so a bad grid seemed
    to do nothing until eight Tabs down."""
    from decodelab.tui.screens.sweep import SweepScreen

    app = make_app(demo)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("escape", "S")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, SweepScreen) and screen.has_class("-compact")
        screen.query_one("#s-grid", Input).value = "temperature=[bold]x"
        await pilot.press("ctrl+r")
        await pilot.pause()
        status = screen.query_one("#sweep-status")
        assert "[bold]x" in str(status.render()) and "not a number" in str(status.render())
        assert status.region.bottom <= 24 and status.region.height >= 1
        assert screen.query_one("#run").region.bottom <= 24  # the whole form is on the screen
