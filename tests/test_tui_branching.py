"""Inspecting and branching in the TUI (issue 10, items 7-10): the inspector belongs to its pane, keys
into the alternatives and back, refusals that say why, version history, a branch in progress, each
pane's own end. Pilot on the demo model."""

from __future__ import annotations

from textual.widgets import OptionList, Static

from decodelab.engine import DecodingConfig
from tests.tui_pilot import make_app, messages, plain, run_all, wait_idle
from decodelab.tui.widgets.inspector import Inspector
from decodelab.tui.widgets.token_view import TokenView


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
        if any(a.token_id == chosen.token_id for a in chosen.top):  # it starts on the token the pane chose
            assert chosen.top[options.highlighted - 1].token_id == chosen.token_id
        await pilot.press("down" if options.highlighted < len(chosen.top) else "up")
        target = chosen.top[options.highlighted - 1]
        assert target.token_id != chosen.token_id
        await pilot.press("enter")
        await wait_idle(app, pilot)
        assert second.state.branched_at == 2 and second.state.token_ids[2] == target.token_id
        assert [first.state.token_ids, third.state.token_ids] == before
        await pilot.press("escape")
        assert app.focused is second  # and back


async def test_esc_in_the_alternatives_goes_back_without_cancelling_the_branch(demo):
    """The walk-through: Enter on an alternative, then Esc while the branch streamed, cancelled the branch."""
    app = make_app(demo, configs=[DecodingConfig(name="long", max_new_tokens=120)])
    async with app.run_test(size=(120, 40)) as pilot:
        await run_all(app, pilot)
        pane = app.panes()[0]
        await pilot.press("1", "right", "right", "down", "down", "enter", "escape")
        assert app.focused is pane
        await wait_idle(app, pilot)
        assert pane.state.stop_reason == "max_new_tokens" and pane.state.branched_at == 1
        assert not any("cancelled" in m for m in messages(app))


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


async def test_removing_the_inspected_pane_leaves_no_token_of_it(demo):
    app = make_app(demo)
    async with app.run_test(size=(160, 45)) as pilot:
        await run_all(app, pilot)
        removed = app.panes()[1]
        await pilot.press("2", "right", "right")
        inspector = app.query_one(Inspector)
        assert inspector.owner is removed
        await pilot.press("x")
        await pilot.pause()
        await pilot.pause()
        assert removed not in app.panes() and inspector.owner is not removed
        assert "pane 2 hot" in str(inspector.border_title)  # the neighbour, renumbered


# -- 8, 9. history and the branch in progress ----------------------------------------------------------------

async def test_branching_keeps_the_old_text_to_step_back_to(demo):
    app = make_app(demo, [DecodingConfig(name="greedy", max_new_tokens=40)])
    async with app.run_test(size=(120, 40)) as pilot:
        await run_all(app, pilot)
        pane = app.panes()[0]
        original = pane.state.text
        await pilot.press("1", "right", "right", "right", "right", "down", "down", "enter")
        await wait_idle(app, pilot)
        branched = pane.state.text
        assert branched != original and "v2/2" in str(pane.border_title) and "┃@3" in str(pane.border_title)
        assert "┃" in plain(pane.query_one(TokenView))  # the branch point, marked in the text
        await pilot.press("escape", "left_square_bracket")
        await pilot.pause()
        assert pane.state.text == original and "v1/2" in str(pane.border_title)
        assert "┃" not in str(pane.border_title) and "╎@3" in str(pane.border_title)  # v1 is no branch
        shown = plain(pane.query_one(TokenView))
        assert "╎" in shown and "┃" not in shown  # where v2 branched from it, fainter
        assert any("v2 branched from it @3" in m for m in messages(app))
        await pilot.press("left_square_bracket")
        assert any("oldest version" in m for m in messages(app))
        await pilot.press("right_square_bracket")
        assert pane.state.text == branched and pane.state.branched_at == 3


async def test_a_branch_rerun_keeps_its_prefix_on_show_and_no_stale_token(demo):
    app = make_app(demo, [DecodingConfig(name="greedy", max_new_tokens=120)])
    async with app.run_test(size=(120, 40)) as pilot:
        await run_all(app, pilot)
        pane = app.panes()[0]
        prefix_text = "".join(s.text for s in pane.state.steps[:5])
        app.runs._work = lambda *args, **kwargs: None  # hold the engine: the screen as the rerun starts
        await pilot.press("1", *["right"] * 6, "down", "down", "enter")
        await pilot.pause()
        assert app.running and pane.state.running and pane.state.branched_at == 5
        shown = plain(pane.query_one(TokenView)).replace("\n", "")
        assert shown.replace("┃", "").startswith(prefix_text.replace("\n", ""))
        inspector = app.query_one(Inspector)
        assert inspector.owner is pane and "token 5" in str(inspector.border_title)
        app.runs.running = pane.state.running = False
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert "running" in str(inspector.query_one("#inspector-info").render())  # the old token is gone
        app.runs.running = pane.state.running = False


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
        assert str(short.query_one(".pane--stats", Static).render()).startswith("stop_string · ")
        assert str(long.query_one(".pane--stats", Static).render()).startswith("running…")
        await pilot.press("escape")
        await wait_idle(app, pilot)


# -- issue 17: a branch never pins a seed, never loses the output, never runs on another model -----------------

async def test_branching_an_auto_seed_pane_reuses_its_seed_for_that_run_only(demo):
    app = make_app(demo, [DecodingConfig(name="warm", do_sample=True, temperature=0.8, max_new_tokens=12)])
    async with app.run_test(size=(120, 40)) as pilot:
        await run_all(app, pilot)
        pane = app.panes()[0]
        seed = pane.state.seed
        await pilot.press("1", "right", "right", "down", "down", "enter")
        await wait_idle(app, pilot)
        assert pane.state.branched_at == 1 and pane.state.seed == seed
        assert pane.state.config.seed is None  # still seed=auto: the next run draws a new seed
        assert "seed=auto" in pane.state.config.summary()


async def test_a_failed_branch_gives_the_previous_output_back(demo, monkeypatch):
    import decodelab.engine.backends.base as backend_base
    from decodelab.engine.results import GenerationError

    app = make_app(demo, [DecodingConfig(name="greedy", max_new_tokens=12)])
    async with app.run_test(size=(120, 40)) as pilot:
        await run_all(app, pilot)
        pane = app.panes()[0]
        before = (pane.state.token_ids, pane.state.text)

        def fail(*args, **kwargs):
            raise GenerationError("the model failed on the prompt: index out of range in self")

        monkeypatch.setattr(backend_base, "generate_parts", fail)
        await pilot.press("1", "right", "right", "down", "down", "enter")
        await wait_idle(app, pilot)
        assert (pane.state.token_ids, pane.state.text) == before and pane.state.branched_at is None
        assert "index out of range" in (pane.state.error or "")


async def test_an_output_of_another_model_is_not_branched(demo):
    app = make_app(demo, [DecodingConfig(name="greedy", max_new_tokens=12)])
    async with app.run_test(size=(120, 40)) as pilot:
        await run_all(app, pilot)
        pane = app.panes()[0]
        pane.state.model = "smollm2"  # as if written before m switched the model
        await pilot.press("1", "right", "right", "down", "down", "enter")
        await pilot.pause()
        assert pane.state.branched_at is None and not app.running
        assert any("was written by smollm2" in m for m in messages(app))
        pane.refresh_view()
        assert "by smollm2" in str(pane.border_subtitle)  # the pane says which model wrote it


async def test_end_with_no_token_selected_goes_to_the_last_token(demo):
    """Issue 17: End with no token selected went to token 0."""
    app = make_app(demo, [DecodingConfig(name="greedy", max_new_tokens=12)])
    async with app.run_test(size=(120, 40)) as pilot:
        await run_all(app, pilot)
        pane = app.panes()[0]
        await pilot.press("1", "end")
        await pilot.pause()
        assert pane.state.cursor == len(pane.state.steps) - 1
        pane.state.cursor = None
        await pilot.press("home")
        await pilot.pause()
        assert pane.state.cursor == 0
