"""Reading, inspecting and branching in the TUI (issue 10, items 1-10), driven by Pilot on the demo model."""

from __future__ import annotations

import pytest
from textual.widgets import OptionList, Static, TextArea

from engine import DecodingConfig
from engine.detokenize import IncrementalText
from engine.loading import ModelSpec
from engine.results import TokenStep
from themes.heatmap import ORDER, SCALES, colour, contrast_ratio, text_colour_for
from tui.app import DecodelabApp
from tui.token_bytes import TokenBytes, display_pieces, readable
from tui.widgets.inspector import Inspector
from tui.widgets.pane_strip import PaneStrip, pane_widths
from tui.widgets.token_view import TokenView

PROMPT = "The for statement"
THREE = [DecodingConfig(name="greedy", max_new_tokens=60),
         DecodingConfig(name="warm", do_sample=True, temperature=0.8, seed=5, max_new_tokens=60),
         DecodingConfig(name="hot", do_sample=True, temperature=1.3, seed=9, max_new_tokens=60)]


def make_app(demo, configs=None, prompt=PROMPT) -> DecodelabApp:
    return DecodelabApp(spec=ModelSpec(), configs=configs or THREE, prompt=prompt, loaded=demo)


async def wait_idle(app, pilot, timeout: float = 90) -> None:
    for _ in range(int(timeout / 0.05)):
        await pilot.pause(0.05)
        if not app.running and not app.pending:
            await pilot.pause()
            return
    raise AssertionError("the run did not finish")


async def run_all(app, pilot) -> None:
    await pilot.press("ctrl+r")
    await wait_idle(app, pilot)
    await pilot.press("escape")
    await pilot.pause()


def plain(widget) -> str:
    return "\n".join(widget.render_line(y).text for y in range(widget.size.height))


def messages(app) -> list[str]:
    return [n.message for n in app._notifications]


# -- 1. heatmap text ------------------------------------------------------------------------------------

def test_every_heatmap_colour_gets_text_of_wcag_contrast():
    """Black or white text on every colour of every scale reaches WCAG AA (4.5:1)."""
    for stops in SCALES.values():
        for value in [i / 100 for i in range(101)]:
            bg = colour(value, next(k for k, v in SCALES.items() if v is stops))
            assert contrast_ratio(text_colour_for(bg), bg) >= 4.5, bg
    assert contrast_ratio("#000000", "#ffffff") == pytest.approx(21.0)


@pytest.mark.parametrize("theme", ["decodelab-dark", "decodelab-light"])
async def test_heatmap_cells_on_screen_reach_contrast_in_both_themes(demo, theme):
    """Read the colours the pane really draws, for every measure: text never takes the link colour."""
    app = make_app(demo, THREE[:2])
    async with app.run_test(size=(120, 40)) as pilot:
        app.theme = theme
        await run_all(app, pilot)
        checked = 0
        for _ in ORDER:
            if app.measure != "off":
                for view in app.query(TokenView):
                    for y in range(view.size.height):
                        for segment in view.render_line(y):
                            style = segment.style
                            if segment.text.strip() and style and style.bgcolor and "token" in style.meta:
                                fg = style.color.get_truecolor().hex
                                bg = style.bgcolor.get_truecolor().hex
                                assert contrast_ratio(fg, bg) >= 4.5, (theme, app.measure, segment.text, fg, bg)
                                checked += 1
            await pilot.press("h")
        assert checked > 100


# -- 2. the selected token in view ------------------------------------------------------------------------

async def test_walking_tokens_scrolls_the_selected_one_into_view(demo):
    app = make_app(demo, [DecodingConfig(name="greedy", max_new_tokens=150)])
    async with app.run_test(size=(80, 24)) as pilot:
        await run_all(app, pilot)
        pane = app.panes()[0]
        scroll = pane.query_one("VerticalScroll")
        assert scroll.max_scroll_y > 0 and scroll.scroll_y == scroll.max_scroll_y  # streaming followed the end
        await pilot.press("1", "home")
        await pilot.pause()
        assert pane.state.cursor == 0 and scroll.scroll_y == 0
        for _ in range(30):
            await pilot.press("right", "right")
        await pilot.pause()
        view = pane.query_one(TokenView)
        line = view.token_line(60)
        assert line is not None and scroll.scroll_y <= line < scroll.scroll_y + scroll.size.height
        newline = max(i for i, s in enumerate(pane.state.steps) if "\n" in s.text)  # a bare line break, too
        app.select_token(pane, newline)
        await pilot.pause()
        await pilot.pause()
        line = view.token_line(newline)
        assert line is not None and scroll.scroll_y <= line < scroll.scroll_y + scroll.size.height
        assert "⏎" in plain(view)


# -- 3. status lines --------------------------------------------------------------------------------------

async def test_status_line_puts_the_end_first_and_can_be_read_in_full(demo):
    app = make_app(demo)
    async with app.run_test(size=(80, 24)) as pilot:
        await run_all(app, pilot)
        stats = app.panes()[1].query_one(".pane--stats", Static)
        full = str(stats.render())
        assert full.startswith("max · 60 tok · ppl")
        assert stats.tooltip is not None and "seed 5" in str(stats.tooltip) and "tok/s" in str(stats.tooltip)
    app = make_app(demo)
    async with app.run_test(size=(160, 45)) as pilot:
        await run_all(app, pilot)
        stats = app.panes()[1].query_one(".pane--stats", Static)
        assert stats.size.height == 2  # room for a second line: nothing cut
        assert "seed 5" in plain(stats) and "tok/s" in plain(stats)


# -- 4, 5. whole panes, a sign of more, re-layout ------------------------------------------------------------

def test_pane_widths_fill_the_view_with_whole_panes():
    assert pane_widths(80, 3) == [40, 40, 40]
    assert pane_widths(100, 3) == [34, 33, 33]
    assert pane_widths(160, 3) == [54, 53, 53]
    widths = pane_widths(118, 7)  # any run of `fit` adjacent panes fills the view exactly
    fit = 118 // 32
    assert all(sum(widths[i : i + fit]) == 118 for i in range(len(widths) - fit + 1))


def whole_or_hidden(app) -> tuple[list, list]:
    strip = app.query_one(PaneStrip)
    left, right = strip.scroll_x, strip.scroll_x + strip.scrollable_content_region.width
    shown, hidden = [], []
    for pane in app.panes():
        region = pane.virtual_region
        if region.x >= left and region.right <= right:
            shown.append(pane)
        else:
            assert region.right <= left or region.x >= right, "a pane is cut at the edge"
            hidden.append(pane)
    return shown, hidden


async def test_80x24_shows_whole_panes_and_says_more_are_to_the_side(demo):
    app = make_app(demo)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        shown, hidden = whole_or_hidden(app)
        assert len(shown) == 2 and len(hidden) == 1
        assert "1 more ▶" in str(shown[-1].border_subtitle)
        await pilot.press("escape", "3")
        await pilot.pause()
        await pilot.pause()
        shown, hidden = whole_or_hidden(app)
        assert app.panes()[2] in shown
        assert "◀ 1 more" in str(shown[0].border_subtitle)


async def test_80x24_inspector_shows_at_least_five_alternatives(demo):
    app = make_app(demo)
    async with app.run_test(size=(80, 24)) as pilot:
        await run_all(app, pilot)
        await pilot.press("1", "right", "right")
        await pilot.pause()
        options = app.query_one(Inspector).query_one(OptionList)
        assert options.option_count >= 6
        visible_rows = options.scrollable_content_region.height
        assert visible_rows >= 6  # the header and five alternatives at least
        shown, _ = whole_or_hidden(app)
        assert app.panes()[0] in shown  # the pane it belongs to stays whole beside it


async def test_panes_are_laid_out_again_on_every_resize(demo):
    app = make_app(demo)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.resize_terminal(160, 45)
        await pilot.pause()
        await pilot.pause()
        strip = app.query_one(PaneStrip)
        shown, hidden = whole_or_hidden(app)
        assert len(shown) == 3 and not hidden
        assert sum(p.outer_size.width for p in shown) == strip.scrollable_content_region.width
        app.action_show_help_panel()
        await pilot.pause()
        await pilot.pause()
        narrower = strip.scrollable_content_region.width
        assert sum(p.outer_size.width for p in whole_or_hidden(app)[0]) == narrower < 160
        app.action_hide_help_panel()
        await pilot.pause()
        await pilot.pause()
        assert sum(p.outer_size.width for p in whole_or_hidden(app)[0]) == 160
        app.action_inspector()
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        await pilot.pause()
        assert app.screen.has_class("-narrow") and app.query_one(Inspector).outer_size.width == 40
        assert [p.outer_size.width for p in whole_or_hidden(app)[0]] == [40]
        await pilot.resize_terminal(120, 30)
        await pilot.pause()
        await pilot.pause()
        assert not app.screen.has_class("-narrow") and app.query_one(Inspector).outer_size.width == 46


# -- 6. split characters ------------------------------------------------------------------------------------

def steps_for(tokenizer, ids: list[int]) -> list[TokenStep]:
    """Steps with the pieces the engine's incremental detokenizer gives those ids."""
    detok = IncrementalText(tokenizer)
    return [TokenStep(i, detok.add(i), -1.0, -1.0, 0, 1.0, 1.0) for i in ids]


def byte_ids(tokenizer, data: bytes) -> list[int]:
    from tui.token_bytes import BYTE_DECODER

    alphabet = {b: c for c, b in BYTE_DECODER.items()}
    return [tokenizer.convert_tokens_to_ids(alphabet[b]) for b in data]


def test_a_character_split_over_tokens_and_a_stray_byte(demo):
    tok = demo.tokenizer
    lookup = TokenBytes(tok)
    routine = tok.encode("outine")
    # a right split: the character shows on the token that completes it, its first bytes as bytes meanwhile
    whole = steps_for(tok, byte_ids(tok, "’".encode()) + routine)
    pieces = display_pieces(whole, sum(len(s.text) for s in whole), lookup)
    assert [p for p, _ in pieces] == ["", "", "’", "outine"]
    streaming = whole[:2]  # the character is not complete yet
    assert [p for p, _ in display_pieces(streaming, 0, lookup)] == ["<0xE2>", "<0x80>"]
    # a stray lead byte: the engine's text holds U+FFFD; the pane shows the byte and the right text
    stray = steps_for(tok, byte_ids(tok, b"\xe2") + routine)
    assert stray[1].text == "\ufffdoutine"
    pieces = display_pieces(stray, sum(len(s.text) for s in stray), lookup)
    assert pieces == [("<0xE2>", True), ("outine", False)]
    assert readable(b"\xe2\x80") == "<0xE2><0x80>" and readable(" é".encode()) == " é"


async def test_pane_and_inspector_show_split_bytes_not_replacement_characters(demo):
    tok = demo.tokenizer
    app = make_app(demo, [DecodingConfig(name="greedy")])
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        pane = app.panes()[0]
        steps = steps_for(tok, byte_ids(tok, b"\xe2") + tok.encode("outine") + byte_ids(tok, b"\xe2\x80"))
        pane.state.steps, pane.state.text = steps, "".join(s.text for s in steps)
        pane.refresh_view()
        await pilot.pause()
        text = plain(pane.query_one(TokenView))
        assert "\ufffd" not in text and "<0xE2>outine<0xE2><0x80>" in text
        app.select_token(pane, 0)
        await pilot.pause()
        inspector = app.query_one(Inspector)
        assert "'<0xE2>'" in str(inspector.query_one("#inspector-info").render())


# -- 7. branching from the keyboard ---------------------------------------------------------------------------

async def test_down_enters_the_alternatives_and_enter_branches_that_pane(demo):
    app = make_app(demo)
    async with app.run_test(size=(160, 45)) as pilot:
        await run_all(app, pilot)
        first, second, third = app.panes()
        before = [first.state.token_ids, third.state.token_ids]
        await pilot.press("2", "right", "right", "right", "down")
        inspector = app.query_one(Inspector)
        options = inspector.query_one(OptionList)
        assert app.focused is options and inspector.owner is second
        assert "pane 2 warm" in str(inspector.border_title)
        chosen = second.state.steps[2]
        target = chosen.top[options.highlighted - 1]
        assert target.token_id != chosen.token_id  # the first row that is a real alternative
        await pilot.press("enter")
        await wait_idle(app, pilot)
        assert second.state.branched_at == 2 and second.state.token_ids[2] == target.token_id
        assert [first.state.token_ids, third.state.token_ids] == before
        await pilot.press("escape")
        assert app.focused is second  # and back


async def test_tab_moves_the_inspector_with_the_pane_and_refusals_say_why(demo):
    app = make_app(demo)
    async with app.run_test(size=(160, 45)) as pilot:
        await run_all(app, pilot)
        await pilot.press("1", "right")
        inspector = app.query_one(Inspector)
        assert inspector.owner is app.panes()[0]
        await pilot.press("tab", "tab")
        assert app.focused is app.panes()[2]
        assert inspector.owner is app.panes()[2] and "pane 3 hot" in str(inspector.border_title)
        assert "no token selected" in str(inspector.query_one("#inspector-info").render())
        await pilot.press("b")
        await pilot.pause()
        assert not app.running
        assert any("no selected token" in m for m in messages(app))
        await pilot.press("1", "down")
        options = inspector.query_one(OptionList)
        step = app.panes()[0].state.steps[0]
        assert step.top[0].token_id == step.token_id  # greedy: the chosen token is the top row
        options.highlighted = 1
        await pilot.press("enter")
        await pilot.pause()
        assert not app.running and any("already chose that token" in m for m in messages(app))


# -- 8, 9. history and the branch in progress ----------------------------------------------------------------

async def test_branching_keeps_the_old_text_to_step_back_to(demo):
    app = make_app(demo, [DecodingConfig(name="greedy", max_new_tokens=40)])
    async with app.run_test(size=(120, 40)) as pilot:
        await run_all(app, pilot)
        pane = app.panes()[0]
        original = pane.state.text
        await pilot.press("1", "right", "right", "right", "right", "down", "enter")
        await wait_idle(app, pilot)
        branched = pane.state.text
        assert branched != original and "v2/2" in str(pane.border_title) and "┃@3" in str(pane.border_title)
        assert "┃" in plain(pane.query_one(TokenView))  # the branch point, marked in the text
        await pilot.press("escape", "left_square_bracket")
        await pilot.pause()
        assert pane.state.text == original and "v1/2" in str(pane.border_title)
        assert "┃" in plain(pane.query_one(TokenView))  # where v2 branched from it
        assert any("v2 branched from it @3" in m for m in messages(app))
        await pilot.press("left_square_bracket")
        assert any("oldest version" in m for m in messages(app))
        await pilot.press("right_square_bracket")
        assert pane.state.text == branched and pane.state.branched_at == 3


async def test_a_branch_rerun_keeps_its_prefix_on_show_and_no_stale_token(demo):
    app = make_app(demo, [DecodingConfig(name="greedy", max_new_tokens=300)])
    async with app.run_test(size=(120, 40)) as pilot:
        await run_all(app, pilot)
        pane = app.panes()[0]
        prefix_text = "".join(s.text for s in pane.state.steps[:5])
        await pilot.press("1", *["right"] * 6, "down", "enter")
        await pilot.pause()
        assert app.running and pane.state.running
        shown = plain(pane.query_one(TokenView)).replace("\n", "")
        assert shown.replace("┃", "").startswith(prefix_text.replace("\n", ""))
        inspector = app.query_one(Inspector)
        assert inspector.owner is pane and "token 5" in str(inspector.border_title)
        await wait_idle(app, pilot)
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert "running" in str(inspector.query_one("#inspector-info").render())  # the old token is gone
        await wait_idle(app, pilot)


# -- 10. each pane's own end ---------------------------------------------------------------------------------

async def test_a_pane_that_stopped_says_so_while_the_others_run(demo):
    configs = [DecodingConfig(name="short", stop_strings=("\n",), max_new_tokens=300),
               DecodingConfig(name="long", max_new_tokens=400)]
    app = make_app(demo, configs)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+r")
        short, long = app.panes()
        for _ in range(400):
            await pilot.pause(0.05)
            if short.state.stop_reason:
                break
        await pilot.pause(0.1)
        assert app.running and long.state.running and not long.state.stop_reason
        assert str(short.query_one(".pane--stats", Static).render()).startswith("stop · ")
        assert str(long.query_one(".pane--stats", Static).render()).startswith("running…")
        await pilot.press("escape")
        await wait_idle(app, pilot)


# -- snapshots --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reading_session(demo, tmp_path_factory):
    """A session with real outputs and fixed timings, so screenshots are the same on every run."""
    import dataclasses

    from engine import find_preset, generate_many
    from engine.results import Timings
    from engine.sessions import Session, save_session

    configs = [find_preset("greedy").replace(max_new_tokens=60),
               find_preset("balanced").replace(seed=11, max_new_tokens=60),
               find_preset("creative").replace(seed=12, max_new_tokens=60)]
    completions = [dataclasses.replace(c, timings=Timings(0.01, 1.0, 40.0))
                   for c in generate_many(demo, PROMPT, configs)]
    path = tmp_path_factory.mktemp("snap") / "session.json"
    save_session(Session(prompt=PROMPT, model={"path": "demo"}, configs=configs, completions=completions), path)
    return str(path)


def opened(demo, session, *keys, theme="decodelab-dark"):
    app = make_app(demo, [DecodingConfig(name="placeholder")])

    async def before(pilot):
        app.theme = theme
        app.query_one("#prompt", TextArea).cursor_blink = False
        app.open_session(session)
        await pilot.pause()
        await pilot.pause()
        app.clear_notifications()
        app.panes()[0].focus()
        await pilot.pause()
        await pilot.press(*keys)
        await pilot.pause()
        await pilot.pause()
        app.clear_notifications()

    return app, before


def test_snapshot_80x24_walked_into_the_alternatives(snap_compare, demo, reading_session):
    app, before = opened(demo, reading_session, "1", *["right"] * 30, "down")
    assert snap_compare(app, terminal_size=(80, 24), run_before=before)


def test_snapshot_80x24_light_theme_third_pane(snap_compare, demo, reading_session):
    app, before = opened(demo, reading_session, "3", theme="decodelab-light")
    assert snap_compare(app, terminal_size=(80, 24), run_before=before)


def test_snapshot_160x45_inspector(snap_compare, demo, reading_session):
    app, before = opened(demo, reading_session, "2", *["right"] * 20)
    assert snap_compare(app, terminal_size=(160, 45), run_before=before)
