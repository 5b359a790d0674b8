"""Issue 36 item 8: Esc steps back one level and never drops typed input without asking; item 9's compact
settings editor at 80x24."""

from __future__ import annotations

from textual.widgets import Checkbox, Input

from decodelab.engine import DecodingConfig, find_preset
from decodelab.engine.library.presets import save_user_preset
from decodelab.tui.screens.ask import AskText, Confirm
from decodelab.tui.screens.config_editor import ConfigEditor
from decodelab.tui.screens.save_preset import SavePreset
from tests.tui_pilot import make_app, messages, run_all

PINNABLE = [DecodingConfig(name="warm", do_sample=True, temperature=0.8, max_new_tokens=8)]


async def test_esc_on_the_overwrite_question_returns_to_the_name_as_typed(demo):
    save_user_preset(DecodingConfig(name="old", temperature=0.5, do_sample=True), "taken")
    app = make_app(demo, PINNABLE)
    async with app.run_test(size=(100, 30)) as pilot:
        await run_all(app, pilot)
        await pilot.press("1", "s")
        app.screen.query_one(Input).value = "taken"
        app.screen.query_one(Checkbox).value = True  # pin the last run's seed
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, Confirm)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, SavePreset)  # one level back, not out of the dialog
        assert app.screen.query_one(Input).value == "taken" and app.screen.query_one(Checkbox).value
        app.screen.query_one(Input).value = "free"
        await pilot.press("enter")
        await pilot.pause()
        assert find_preset("free").seed == app.panes()[0].state.seed
        assert find_preset("taken").temperature == 0.5  # untouched


async def test_esc_on_overwriting_a_session_returns_to_the_path(demo, tmp_path):
    path = tmp_path / "s.json"
    path.write_text("{}")
    app = make_app(demo)
    async with app.run_test() as pilot:
        await pilot.press("escape", "ctrl+s")
        await pilot.pause()
        app.screen.query_one(Input).value = str(path)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, Confirm)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, AskText) and app.screen.query_one(Input).value == str(path)
        assert path.read_text() == "{}"


async def test_leaving_the_editor_with_changes_asks_first(demo):
    app = make_app(demo)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("escape", "1", "e")
        await pilot.pause()
        editor = app.screen
        assert isinstance(editor, ConfigEditor)
        await pilot.press("escape")  # no change: it just closes
        await pilot.pause()
        assert not isinstance(app.screen, (ConfigEditor, Confirm))
        await pilot.press("e")
        await pilot.pause()
        app.screen.query_one("#f-top_k", Input).value = "7"
        app.screen.query_one("#f-max_new_tokens", Input).value = "9"
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, Confirm)
        assert "Discard 2 changes (top_k, max_new_tokens)?" in str(app.screen.query_one("Label").render())
        await pilot.press("escape")  # no: back to the fields, the edits kept
        await pilot.pause()
        assert isinstance(app.screen, ConfigEditor) and app.screen.query_one("#f-top_k", Input).value == "7"
        await pilot.press("escape", "y")
        await pilot.pause()
        assert not isinstance(app.screen, (ConfigEditor, Confirm))
        assert app.panes()[0].state.config.top_k == 0  # discarded, as asked


async def test_the_editor_shows_a_dozen_fields_at_80x24(demo):
    app = make_app(demo)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("escape", "1", "e")
        await pilot.pause()
        await pilot.pause()
        editor = app.screen
        assert editor.has_class("-compact")
        scroll = editor.query_one("VerticalScroll")
        visible = [row for row in editor.query(".row") if scroll.region.contains_region(row.region)]
        assert len(visible) >= 12, len(visible)
        field = editor.query_one("#f-top_p", Input)
        field.focus()
        await pilot.pause()
        assert editor.query_one("#h-top_p").display and not editor.query_one("#h-top_k").display
    wide = make_app(demo)
    async with wide.run_test(size=(160, 60)) as pilot:
        await pilot.press("escape", "1", "e")
        await pilot.pause()
        assert not wide.screen.has_class("-compact") and wide.screen.query_one("#h-top_k").display


async def test_a_preset_saved_after_an_edit_says_it_was_edited(demo):
    schema = '{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}'
    edited = find_preset("balanced").replace(json_schema=schema, max_new_tokens=8)
    app = make_app(demo, [edited])
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("escape", "1", "s")
        await pilot.pause()
        description = app.screen.query_one("#save-description", Input)
        assert description.value.startswith(find_preset("balanced").description)
        assert "(edited: max_new_tokens, json_schema)" in description.value
        app.screen.query_one("#save-name", Input).value = "schema-balanced"
        await pilot.press("enter")
        await pilot.pause()
    assert "edited: max_new_tokens, json_schema" in find_preset("schema-balanced").description


async def test_an_empty_prompt_is_warned_about_and_still_runs(demo):
    app = make_app(demo, [DecodingConfig(name="greedy", max_new_tokens=4)], prompt="")
    async with app.run_test() as pilot:
        await run_all(app, pilot)
        assert any("The prompt is empty" in m for m in messages(app))
        assert app.panes()[0].state.completion is not None
    typed = make_app(demo, [DecodingConfig(name="greedy", max_new_tokens=4)], prompt="The for")
    async with typed.run_test() as pilot:
        await run_all(typed, pilot)
        assert not any("The prompt is empty" in m for m in messages(typed))


async def test_a_failed_open_save_or_tally_keeps_the_dialog_and_the_text(demo, tmp_path):
    """The walk-through: a bad session path, a folder to save into, a tally of other panes closed the dialog and
    threw the text away (the next keys then landed on the main screen)."""
    from textual.widgets import Input

    from decodelab.tui.screens.ask import AskText
    from tests.tui_pilot import make_app, messages, run_all

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    folder = tmp_path / "folder"
    folder.mkdir()
    app = make_app(demo)
    async with app.run_test(size=(100, 30)) as pilot:
        await run_all(app, pilot)
        for key, path, words in (("ctrl+o", str(bad), "not valid JSON"), ("ctrl+o", str(tmp_path / "none.json"),
                                                                             "does not exist")):
            await pilot.press(key)
            await pilot.pause()
            app.screen.query_one(Input).value = path
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, AskText) and app.screen.query_one(Input).value == path
            assert words in str(app.screen.query_one("#ask-error").render())
            await pilot.press("escape")
        await pilot.press("ctrl+s")
        await pilot.pause()
        app.screen.query_one(Input).value = str(folder)
        await pilot.press("enter")
        for _ in range(5):
            await pilot.pause()
        assert isinstance(app.screen, AskText) and app.screen.query_one(Input).value == str(folder)
        assert any("is a folder" in m for m in messages(app))
        await pilot.press("escape")
        await pilot.press("A")  # a tally that cannot be resumed
        await pilot.pause()
        app.screen.query_one(Input).value = str(bad)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, AskText) and "not valid JSON" in str(app.screen.query_one("#ask-error").render())
        await pilot.press("escape")


async def test_the_save_dialog_offers_the_seed_only_where_it_repeats_the_output(demo):
    """The walk-through: saving greedy said "(seed=auto)", and after editing temperature the dialog still offered
    to pin the seed of a run made at the old temperature, promising it would repeat what was seen."""
    from textual.widgets import Checkbox

    from decodelab.tui.screens.save_preset import SavePreset
    from tests.tui_pilot import make_app, messages, run_all

    configs = [DecodingConfig(name="g", max_new_tokens=6),
               DecodingConfig(name="warm", do_sample=True, temperature=1.1, max_new_tokens=6)]
    app = make_app(demo, configs=configs)
    async with app.run_test(size=(100, 30)) as pilot:
        await run_all(app, pilot)
        await pilot.press("escape", "2", "s")
        await pilot.pause()
        assert isinstance(app.screen, SavePreset) and app.screen.query(Checkbox)  # just run: offered
        await pilot.press("escape")
        app.panes()[1].state.config = app.panes()[1].state.config.replace(temperature=0.2)
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, SavePreset) and not app.screen.query(Checkbox)  # edited since: not offered
        await pilot.press("escape", "1", "s")
        await pilot.pause()
        app.screen.query_one("#save-name").value = "walk-greedy"
        await pilot.press("enter")
        await pilot.pause()
        said = [m for m in messages(app) if m.startswith("Saved preset walk-greedy")]
        assert said and "seed" not in said[0]
