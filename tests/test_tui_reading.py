"""Reading the TUI (issue 10, items 1-6): heatmap contrast, the selected token in view, status lines,
whole panes at 80x24, re-layout on resize, split UTF-8 characters; plus snapshots. Pilot on the demo model."""

from __future__ import annotations

import pytest
from textual.widgets import OptionList, Static, TextArea

from decodelab.engine import DecodingConfig
from decodelab.engine.decoding.detokenize import IncrementalText
from decodelab.engine.results import TokenStep
from tests.tui_pilot import PROMPT, THREE, make_app, messages, plain, run_all
from decodelab.themes.heatmap import ORDER, SCALES, colour, contrast_ratio, text_colour_for
from decodelab.engine.decoding.token_bytes import TokenBytes, display_pieces, readable
from decodelab.tui.widgets.inspector import Inspector
from decodelab.tui.widgets.pane_strip import PaneStrip, pane_widths
from decodelab.tui.widgets.token_view import TokenView


# -- 1. heatmap text ------------------------------------------------------------------------------------

def test_every_heatmap_colour_gets_text_of_wcag_contrast():
    """Black or white text on every colour of every scale reaches WCAG AA (4.5:1)."""
    for scale in SCALES:
        for value in [i / 100 for i in range(101)]:
            bg = colour(value, scale)
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
            if app.workspace.measure != "off":
                for view in app.query(TokenView):
                    for y in range(view.size.height):
                        for segment in view.render_line(y):
                            style = segment.style
                            if segment.text.strip() and style and style.bgcolor and "token" in style.meta:
                                fg = style.color.get_truecolor().hex
                                bg = style.bgcolor.get_truecolor().hex
                                assert contrast_ratio(fg, bg) >= 4.5, (theme, app.workspace.measure, segment.text, fg, bg)
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
        app.tokens.select_token(pane, newline)
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
        assert full.startswith("max_new_tokens · 60 tok · ppl")  # the word run --json writes
        assert stats.tooltip is not None and "seed 5" in str(stats.tooltip) and "tok/s" in str(stats.tooltip)
        await pilot.press("2", "right")
        await pilot.pause()
        header = str(app.query_one(Inspector).query_one("#inspector-info").render())
        assert "seed 5" in header and "tok/s" in header  # the full line, readable from the keyboard too
        assert app.query_one(Inspector).query_one(OptionList).scrollable_content_region.height >= 6
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
        app.tokens.toggle_inspector()
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
    from decodelab.engine.decoding.token_bytes import BYTE_DECODER

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
        app.tokens.select_token(pane, 0)
        await pilot.pause()
        inspector = app.query_one(Inspector)
        assert "'<0xE2>'" in str(inspector.query_one("#inspector-info").render())


# -- snapshots --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reading_session(demo, tmp_path_factory):
    """A session with real outputs and fixed timings, so screenshots are the same on every run."""
    import dataclasses

    from decodelab.engine import find_preset, generate_many
    from decodelab.engine.results import Timings
    from decodelab.engine.library.sessions import Session, save_session

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
        await pilot.pause()  # the main screen's panes are mounted
        app.theme = theme
        app.query_one("#prompt", TextArea).cursor_blink = False
        app.files.open_session(session)
        await pilot.pause()
        await pilot.pause()
        app.clear_notifications()
        app.panes()[0].focus()
        await pilot.pause()
        await pilot.press(*keys)
        strip, seen, still = app.query_one(PaneStrip), None, 0
        for _ in range(400):  # a busy machine lays the strip out late: wait until it has settled
            await pilot.pause(0.05)
            now = (strip.scroll_x, tuple(id(p) for p in strip.visible_panes()), app.pane() in strip.visible_panes())
            still = still + 1 if now == seen and now[2] else 0
            seen = now
            if still >= 6:
                break
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


def test_inspector_rows_are_measured_in_cells_so_cjk_tokens_keep_the_columns():
    from rich.cells import cell_len

    from decodelab.tui.widgets.inspector import TOKEN_CELLS, fit_cells

    for text in ("' the'", "'猫猫猫猫猫猫猫猫猫'", "'猫a猫猫猫猫猫猫'", "'a much longer token text'"):
        assert cell_len(fit_cells(text, TOKEN_CELLS)) == TOKEN_CELLS
    assert fit_cells("'猫猫猫猫猫猫猫猫猫'", TOKEN_CELLS).endswith("…")


async def test_focusing_a_middle_pane_at_80_columns_shows_whole_panes(demo):
    """The walk-through: 3 at 80x24 with four panes showed half of pane 2, pane 3 and half of pane 4."""
    from decodelab.tui.widgets.pane_strip import PaneStrip

    configs = [DecodingConfig(name=f"p{i}", max_new_tokens=4) for i in range(4)]
    app = make_app(demo, configs)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("escape")
        for key in ("3", "2", "4", "1", "3"):
            await pilot.press(key)
            await pilot.pause()
            await pilot.pause()
            strip = app.query_one(PaneStrip)
            starts = [p.virtual_region.x for p in app.panes()]
            assert round(strip.scroll_x) in starts, (key, strip.scroll_x, starts)
            assert app.panes()[int(key) - 1] in strip.visible_panes()


async def test_a_constrained_pane_shows_what_its_constraint_removed(demo):
    """Issue 19: the constraint heatmap (offered only when a pane has a constraint), the inspector's line and the
    pane's status say how much of the model's probability the constraint took, and mark forced tokens."""
    configs = [DecodingConfig(name="choice", choice=["while", "return"], max_new_tokens=10),
               DecodingConfig(name="free", max_new_tokens=10)]
    app = make_app(demo, configs)
    async with app.run_test(size=(80, 24)) as pilot:
        measures = []
        for _ in range(len(ORDER)):
            await pilot.press("escape", "h")
            measures.append(app.workspace.measure)
        assert "constraint" in measures
        await run_all(app, pilot)
        stats = str(app.panes()[0].query_one(".pane--stats", Static).render())
        assert "constraint −" in stats and "forced" in stats
        assert "constraint" not in str(app.panes()[1].query_one(".pane--stats", Static).render())
        await pilot.press("1", "i")
        await pilot.pause()
        header = str(app.query_one(Inspector).query_one("#inspector-info").render())
        assert "choice removed" in header and "forced: the model gave this token" in header
        options = app.query_one(Inspector).query_one(OptionList)
        removed = next(i for i in range(options.option_count) if "✗constr" in str(options.get_option_at_index(i).prompt))
        options.highlighted = removed
        await pilot.press("b")
        await pilot.pause()
        assert not app.running and any("does not allow that token" in m for m in messages(app))
    app = make_app(demo, configs[1:])
    async with app.run_test(size=(80, 24)) as pilot:
        seen = set()
        for _ in range(len(ORDER) + 1):
            await pilot.press("escape", "h")
            seen.add(app.workspace.measure)
        assert "constraint" not in seen  # nothing to show without a constrained pane


async def test_a_stop_string_s_trimmed_tokens_show_nothing_in_the_pane(demo):
    """The walk-through's `stop_strings="as silver"`: the pane drew the trimmed tokens' bytes (`a tail  silver`)
    after the text the output ends with."""
    from decodelab.engine import generate_many

    free = generate_many(demo, PROMPT, [DecodingConfig(max_new_tokens=20)])[0]
    pieces = [demo.tokenizer.decode([t]) for t in free.token_ids]
    at = next(i for i in range(3, len(pieces) - 1) if pieces[i].strip() and pieces[i + 1].strip())
    stop = pieces[i := at][1:] + pieces[i + 1]  # starts inside one token, ends in the next
    config = DecodingConfig(name="cut", max_new_tokens=20, stop_strings=(stop,))
    want = generate_many(demo, PROMPT, [config])[0]
    assert want.stop_reason == "stop_string" and stop not in want.text
    app = make_app(demo, configs=[config])
    async with app.run_test(size=(100, 30)) as pilot:
        await run_all(app, pilot)
        shown = plain(app.panes()[0].query_one(TokenView))
        assert shown.rstrip() == want.text.rstrip() and stop[-3:] not in shown
        assert "".join(p for p, _ in display_pieces(want.steps, len(want.text), app.panes()[0].token_bytes, True)) \
            == want.text
