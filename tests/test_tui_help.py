"""Issue 36 item 6: ? and F1 open a help screen with every key, grouped, named in the footer; every key the
README lists for the TUI is in it."""

from __future__ import annotations

import re
from pathlib import Path

from textual.widgets import Static, TextArea

from decodelab.tui.keys import KEYS
from decodelab.tui.screens.help import HelpScreen, help_text
from tests.tui_pilot import make_app

README = Path(__file__).resolve().parents[1] / "README.md"
NOT_KEYS = {"┃"}
"""Bold in the README's TUI section but not a key (the branch marker)."""


def readme_keys() -> set[str]:
    """Every bold key in the README's TUI section, one key each ("c / y" is c and y, "A" is shift+a)."""
    text = README.read_text()
    section = text[text.index("### In the TUI"):text.index("### Blind A/B")]
    keys = set()
    for bold in re.findall(r"\*\*(.+?)\*\*", section):
        for atom in re.split(r" / | or | ", bold):
            atom = atom.strip()
            if not atom:
                continue
            if len(atom) == 1 and atom.isupper():
                atom = f"shift+{atom.lower()}"
            keys.add({"Esc": "esc"}.get(atom, atom))
    return keys - NOT_KEYS


def help_keys(text: str) -> set[str]:
    keys = set()
    for line in text.splitlines():
        m = re.match(r"^  (\S.*?)(\s{2,}|$)", line)
        if m:
            keys.update(a for a in re.split(r" or | ", m.group(1)) if a)
    return keys


def test_every_readme_key_is_in_the_help():
    listed = readme_keys()
    assert {"ctrl+r", "shift+a", "esc", "1–9", "←", "Home", "[", "{", "Enter", "ctrl+f", "?", "F1"} <= listed
    missing = listed - help_keys(help_text())
    assert not missing, f"README keys not in the help screen: {sorted(missing)}"


def test_every_bound_key_with_a_title_or_help_is_in_the_help():
    shown = help_text()
    for key in KEYS:
        if key.title:
            assert key.title in shown, key.title


async def test_question_mark_and_f1_open_it_and_the_footer_names_it(demo):
    app = make_app(demo)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        footer = [b.binding.description for b in app.screen.active_bindings.values() if b.binding.show]
        assert "Help" in footer
        box = app.query_one("#prompt", TextArea)
        box.focus()
        await pilot.press("?")  # a text box takes ? as text
        assert not isinstance(app.screen, HelpScreen) and "?" in box.text
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        body = app.screen.body
        assert "Conversations" in body and "ctrl+n" in body
        await pilot.press("escape")
        await pilot.press("escape")  # to the panes
        await pilot.press("?")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("?")  # again: closes
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("e")  # the editor: its own keys come first
        await pilot.pause()
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        body = app.screen.body
        assert body.startswith("Here (the settings editor)") and "Find a field" in body.split("\n\n")[0]
        await pilot.press("escape")
        await pilot.pause()
        assert type(app.screen).__name__ == "ConfigEditor"


async def test_the_footer_keeps_whole_keys_and_help_at_any_width(demo):
    from textual.widgets._footer import FooterKey

    from decodelab.tui.widgets.footer import FittingFooter, key_width

    for width in (40, 60, 80, 160):
        app = make_app(demo)
        async with app.run_test(size=(width, 24)) as pilot:
            await pilot.press("escape")
            await pilot.pause()
            await pilot.pause()
            keys = list(app.screen.query_one(FittingFooter).query(FooterKey))
            assert any(k.action == "help" for k in keys)
            assert sum(key_width(k) for k in keys) <= width, (width, [k.description for k in keys])
            if width == 160:
                assert {"Edit", "Save", "Run", "Add", "Heatmap", "Help"} <= {k.description for k in keys}


def test_the_help_names_every_screen_in_words_not_its_class():
    """The walk-through saw "Here (SavePreset)", "Here (AskText)": names a newcomer cannot know."""
    from textual.screen import Screen

    from decodelab.tui.screens import arena, ask, config_editor, export, model_picker, preset_picker, save_preset, sweep
    from decodelab.tui.screens.help import here_name

    classes = [c for module in (arena, ask, config_editor, export, model_picker, preset_picker, save_preset, sweep)
               for c in vars(module).values() if isinstance(c, type) and issubclass(c, Screen)
               and c.__module__ == module.__name__]
    assert len(classes) >= 9
    for cls in classes:
        fake = cls.__new__(cls)  # its name only: no app needed
        if cls is ask.AskText or issubclass(cls, ask.ShowText) or cls is ask.Confirm:
            fake.title_text = "Open a session file:"
        name = here_name(fake)
        assert name != cls.__name__ and not any(c.isupper() for c in name[1:].replace("A/B", "")), (cls, name)
