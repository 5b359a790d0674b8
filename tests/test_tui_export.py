"""Issue 36 item 10: the CLI's `presets export` targets from the app (shift+e and the palette), saying what each
target drops, copying or writing the export."""

from __future__ import annotations

from click.testing import CliRunner
from textual.widgets import Input, OptionList, Static

from decodelab.cli.main import main
from decodelab.engine import DecodingConfig
from decodelab.engine.dialects import FORMATS
from decodelab.engine.library.presets import save_user_preset
from decodelab.tui.screens.ask import AskText, Confirm
from decodelab.tui.screens.export import ExportPicker, ShowExport
from tests.tui_pilot import make_app, messages

CONFIG = DecodingConfig(name="pless", do_sample=True, temperature=0.7, p_less=True, top_k=40, max_new_tokens=8)


async def test_export_from_a_pane_shows_what_it_drops_and_writes_what_the_cli_writes(demo, tmp_path):
    save_user_preset(CONFIG, "pless")
    cli = CliRunner().invoke(main, ["presets", "export", "pless", "--format", "vllm"])
    assert cli.exit_code == 0 and "p_less" in cli.stderr
    app = make_app(demo, [CONFIG])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("escape", "1", "E")
        await pilot.pause()
        picker = app.screen
        assert isinstance(picker, ExportPicker)
        labels = [str(picker.query_one(OptionList).get_option_at_index(i).prompt) for i in range(len(FORMATS))]
        assert all(" note" in label for label in labels)  # no stack has p-less
        width = picker.query_one(OptionList).scrollable_content_region.width
        assert all(len(label) <= width for label in labels), (width, labels)  # one line each at 80 columns
        picker.query_one(OptionList).highlighted = FORMATS.index("vllm")
        await pilot.press("enter")
        await pilot.pause()
        shown = app.screen
        assert isinstance(shown, ShowExport) and shown.export == cli.stdout
        body = str(shown.query(Static).last().render())
        notes = [line.removeprefix("note: ") for line in cli.stderr.splitlines() if line.startswith("note: ")]
        assert notes and any("p-less" in n for n in notes)
        assert "NOT carried over" in body and all(f"- {n}" in body for n in notes)  # the CLI's notes, each
        await pilot.press("y")
        assert app.clipboard == cli.stdout
        await pilot.press("w")
        await pilot.pause()
        assert isinstance(app.screen, AskText)
        assert app.screen.query_one(Input).value.endswith("pless.vllm.json")
        target = tmp_path / "out.json"
        app.screen.query_one(Input).value = str(target)
        await pilot.press("enter")
        await pilot.pause()
        assert target.read_text() == cli.stdout
        await pilot.press("w")
        await pilot.pause()
        app.screen.query_one(Input).value = str(target)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, Confirm)
        await pilot.press("escape")  # no: back to the path, as typed
        await pilot.pause()
        assert isinstance(app.screen, AskText) and app.screen.query_one(Input).value == str(target)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is shown
        await pilot.press("escape")  # one step back: the targets, on the one shown
        await pilot.pause()
        assert isinstance(app.screen, ExportPicker)
        assert app.screen.query_one(OptionList).highlighted == FORMATS.index("vllm")
        assert any("Wrote" in m for m in messages(app))


async def test_every_target_exports_a_plain_config_from_the_palette_entry(demo):
    from decodelab.tui.keys import KEYS

    key = next(k for k in KEYS if k.action == "files.export")
    assert key.title.startswith("Export") and key.scope == "pane"
    app = make_app(demo, [DecodingConfig(name="greedy", max_new_tokens=8)])
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        for fmt in FORMATS:
            app.files.export(app.panes()[0], fmt)
            await pilot.pause()
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, ShowExport) and app.screen.fmt == fmt and app.screen.export.strip()
            await pilot.press("q")
            await pilot.pause()
            assert not isinstance(app.screen, (ShowExport, ExportPicker))
