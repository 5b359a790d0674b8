"""Issue 36 item 1: text a user typed or an exception produced is shown as text, never read as Textual markup.

`[/x]` crashed the app (MarkupError: a closing tag with no opening one) and lost everything unsaved; `[bold]` and
`[link=x]` were silently swallowed, as was the `[llamacpp]` of an install hint. Each place is driven with all three.
"""

from __future__ import annotations

import pytest
from textual.widgets import Input, Static

from decodelab.engine import DecodingConfig

from test_tui import make_app, wait_idle
from tui_pilot import messages

TRICKY = ["[/x]", "[bold]", "[link=x]"]


async def submit(app, pilot, text: str) -> None:
    """Type into the open dialog's field and press Enter."""
    await pilot.pause()
    field = app.screen.query_one(Input)
    field.value = text
    field.focus()
    await pilot.pause()
    await pilot.press("enter")
    await pilot.pause()


@pytest.mark.parametrize("tricky", TRICKY)
async def test_paths_specs_and_names_with_brackets_are_shown_as_typed(demo, tmp_path, tricky):
    app = make_app(demo, [DecodingConfig(name="greedy", max_new_tokens=4)], prompt="The for")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("escape", "1", "M")  # a pane's own model: a spec that cannot load
        await submit(app, pilot, f"/tmp/{tricky}")
        await wait_idle(app, pilot)
        if app.screen.query("#ask-error"):  # the spec is refused in the dialog, quoting it ("=" reads as a setting)
            assert f"/tmp/{tricky}" in str(app.screen.query_one("#ask-error").render())
            await pilot.press("escape")
        else:  # it is taken, fails to load, and the note quotes it
            for _ in range(100):
                await pilot.pause(0.05)
                if any("Could not load" in m for m in messages(app)):
                    break
            assert any(f"/tmp/{tricky}" in m for m in messages(app)), messages(app)
        await pilot.press("ctrl+o")  # a session path that does not exist
        await submit(app, pilot, str(tmp_path / f"{tricky}.json"))
        said = str(app.screen.query_one("#ask-error").render())  # said in the dialog, the path kept to put right
        assert f"{tricky}.json does not exist" in said, said
        await pilot.press("escape")
        await pilot.press("ctrl+s")  # a session path with brackets saves, and says where
        await submit(app, pilot, str(tmp_path / f"s{tricky}.json"))
        assert (tmp_path / f"s{tricky}.json").exists()
        assert any(f"s{tricky}.json" in m for m in messages(app))
        await pilot.press("P")  # a system prompt: the model bar shows it
        await submit(app, pilot, f"Be {tricky} brief.")
        assert f"Be {tricky} brief." in str(app.query_one("#model-bar").render())
        await pilot.press("P")  # none again: the demo model has no chat template to send one through
        await submit(app, pilot, "")
        pane = app.panes()[0]
        pane.state.config = pane.state.config.replace(name=f"n{tricky}", stop_strings=(tricky,))
        pane.refresh_view()  # its title, summary and status line
        await pilot.pause()
        assert f"n{tricky}" in pane._border_title.plain  # drawn as typed (border_title reads back escaped)
        await pilot.press("ctrl+r")
        await wait_idle(app, pilot)
        await pilot.press("escape", "1", "right")  # the inspector's title names the pane
        await pilot.pause()
        assert f"n{tricky}" in app.query_one("#inspector")._border_title.plain
        await pilot.press("f")  # the whole config, with the stop string
        await pilot.pause()
        assert tricky in "".join(str(w.render()) for w in app.screen.query(Static))
        await pilot.press("escape")
        await pilot.press("=")  # an error that quotes what was typed
        await submit(app, pilot, f"top_p={tricky}")
        assert tricky in str(app.screen.query_one("#ask-error").render())
        await pilot.press("escape")
        await pilot.pause()
        assert app.return_code is None  # still running: nothing crashed


async def test_an_install_hint_keeps_its_extra(demo, monkeypatch):
    """Issue 36 item 2: "pip install 'decodelab[llamacpp]'" lost its [llamacpp] as a tag."""
    app = make_app(demo)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        app.notify("llama.cpp is not installed: pip install 'decodelab[llamacpp]'")
        await pilot.pause()
        note = list(app._notifications)[-1]
        assert note.message.endswith("'decodelab[llamacpp]'") and note.markup is False  # a Toast draws it as text
