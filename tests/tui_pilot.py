"""Shared Pilot helpers for the TUI tests on the demo model."""

from __future__ import annotations

from decodelab.engine import DecodingConfig
from decodelab.engine.backends.loading import ModelSpec
from decodelab.tui.app import DecodelabApp

PROMPT = "The for statement"
THREE = [DecodingConfig(name="greedy", max_new_tokens=60),
         DecodingConfig(name="warm", do_sample=True, temperature=0.8, seed=5, max_new_tokens=60),
         DecodingConfig(name="hot", do_sample=True, temperature=1.3, seed=9, max_new_tokens=60)]


def make_app(demo, configs=None, prompt=PROMPT) -> DecodelabApp:
    return DecodelabApp(spec=ModelSpec(), configs=configs or THREE, prompt=prompt, loaded=demo)


async def wait_idle(app, pilot, timeout: float = 600) -> None:
    """Wait until no run is in progress and every message is handled (a generous limit: the machine may be busy)."""
    for _ in range(int(timeout / 0.05)):
        await pilot.pause(0.05)
        if not app.running and not app.runs.pending:
            await pilot.pause()
            return
    raise AssertionError("the run did not finish")


async def run_all(app, pilot) -> None:
    """ctrl+r, wait for the run, then Esc from the prompt to the panes."""
    await pilot.press("ctrl+r")
    await wait_idle(app, pilot)
    await pilot.press("escape")
    await pilot.pause()


def plain(widget) -> str:
    """The text a widget draws on screen, line by line."""
    return "\n".join(widget.render_line(y).text for y in range(widget.size.height))


def messages(app) -> list[str]:
    return [n.message for n in app._notifications]


async def open_ab(app, pilot, tally: str):
    """shift+a from the panes with this tally file; the A/B screen once its first round is drawn."""
    from textual.widgets import Input

    from decodelab.tui.screens.arena import ArenaScreen

    await pilot.press("escape", "A")
    await pilot.pause()
    app.screen.query_one(Input).value = tally
    await pilot.press("enter")
    screen = app.screen
    assert isinstance(screen, ArenaScreen)
    for _ in range(200):
        await pilot.pause(0.05)
        if screen.round is not None:
            break
    await pilot.pause()
    return screen
