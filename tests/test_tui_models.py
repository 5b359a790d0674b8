"""The TUI with panes on different models: shift+m, the shared pool, per-model batches, sessions, shift+r figures."""

from __future__ import annotations

import pytest
from tui_pilot import PROMPT, make_app, messages, plain, run_all, wait_idle

from decodelab.engine import DecodingConfig, generate_many
from decodelab.engine.backends.pool import load_key, spec_from_text
from decodelab.tui.widgets.pane import Pane

THREE = [DecodingConfig(name="greedy", max_new_tokens=12, min_new_tokens=12),
         DecodingConfig(name="warm", do_sample=True, temperature=0.8, seed=3, max_new_tokens=12, min_new_tokens=12),
         DecodingConfig(name="third", max_new_tokens=12, min_new_tokens=12)]
TWO = [DecodingConfig(name="greedy", max_new_tokens=12, min_new_tokens=12),
       DecodingConfig(name="other", max_new_tokens=12, min_new_tokens=12)]


async def wait_loaded(app, pilot, timeout: float = 120) -> None:
    for _ in range(int(timeout / 0.05)):
        await pilot.pause(0.05)
        if not app.shelf.loading_models:
            await pilot.pause()
            return
    raise AssertionError("the pane's model did not load")


async def wait_figures(pilot, pane, timeout: float = 60) -> None:
    """Wait for the pane's agreement figures (measured on a worker after the run)."""
    for _ in range(int(timeout / 0.05)):
        await pilot.pause(0.05)
        if pane.state.agreement is not None:
            return
    raise AssertionError("the pane was not measured against the reference")


async def set_model(app, pilot, pane, text: str) -> None:
    pane.focus()
    await pilot.pause()
    await pilot.press("M")
    await pilot.pause()
    box = app.screen.query_one("Input")
    box.value = text
    await pilot.press("enter")
    await wait_loaded(app, pilot)


@pytest.mark.asyncio
async def test_a_pane_on_its_own_model_runs_beside_the_others(demo, model_dirs, tiny_models):
    llama = str(model_dirs["llama"])
    app = make_app(demo, configs=TWO)
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        panes = app.query(Pane).results()
        first, second = list(panes)
        await set_model(app, pilot, second, llama)
        assert second.state.model_spec == spec_from_text(llama, app.shelf.loaded.spec)
        assert len(app.shelf.pool.models) == 1 and "panes also on" in str(app.query_one("#model-bar").render())
        assert model_dirs["llama"].name in second.border_title and "demo" in first.border_title
        app.query_one("PaneStrip").layout_panes()  # a resize renumbers the panes: the titles keep their model
        assert model_dirs["llama"].name in second.border_title
        await run_all(app, pilot)
        alone_demo = generate_many(demo, PROMPT, [TWO[0]])[0].text
        alone_llama = generate_many(tiny_models["llama"], PROMPT, [TWO[1]])[0].text
        assert first.state.text == alone_demo and second.state.text == alone_llama  # each on its own model
        assert len(app.runs.engine_threads) >= 2  # one thread per model
        # shift+r: the second pane measured against the first (different tokenizers: perplexities only)
        first.focus()
        await pilot.press("R")
        await wait_idle(app, pilot)
        await wait_figures(pilot, second)
        assert app.workspace.reference is first.state and "★" in first.border_title
        app.query_one("PaneStrip").layout_panes()
        assert "★" in first.border_title
        assert "★other tokenizer" in plain(second.query_one(".pane--stats"))
        # removed, the pane's model stays for u, and the bar says so (it said "panes also on" a model no pane used)
        second.focus()
        await pilot.press("x")
        await pilot.pause()
        await pilot.pause()
        bar = str(app.query_one("#model-bar").render())
        assert "panes also on" not in bar and "kept for u" in bar, bar
        await pilot.press("u")
        await pilot.pause()
        await pilot.pause()
        second = app.panes()[1]
        assert "panes also on" in str(app.query_one("#model-bar").render())
        # back on the app's model: the pool unloads the llama model
        await set_model(app, pilot, second, "")
        assert second.state.model_spec is None and not app.shelf.pool.models
        assert "demo" not in second.border_title  # one model again: no model in the titles


@pytest.mark.asyncio
async def test_same_tokenizer_panes_get_kl_figures_and_heatmap(llama, model_dirs):
    qwen = str(model_dirs["qwen2"])
    from decodelab.engine.backends.loading import ModelSpec
    from decodelab.tui.app import DecodelabApp

    app = DecodelabApp(spec=ModelSpec(path=str(model_dirs["llama"])), configs=TWO, prompt=PROMPT, loaded=llama)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        first, second = list(app.query(Pane).results())
        await set_model(app, pilot, second, qwen)
        first.focus()
        await pilot.press("R")
        await run_all(app, pilot)
        await wait_figures(pilot, second)
        figures = second.state.agreement
        assert figures.same_tokenizer and figures.kl_mean > 0 and len(second.state.kl_levels) == 12
        for _ in range(8):  # h reaches the kl measure (offered with a reference pane)
            if app.workspace.measure == "kl":
                break
            await pilot.press("h")
        assert app.workspace.measure == "kl"
        await pilot.press("R")  # off again: the kl measure goes with it
        assert app.workspace.reference is None and app.workspace.measure != "kl" and second.state.agreement is None


@pytest.mark.asyncio
async def test_bad_pane_models_and_memory_refusals_are_said(demo, monkeypatch):
    app = make_app(demo, configs=TWO)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        second = list(app.query(Pane).results())[1]
        second.focus()
        await pilot.press("M")
        await pilot.pause()
        app.screen.query_one("Input").value = "demo,bits=4"
        await pilot.press("enter")
        await pilot.pause()
        assert "not a load setting" in str(app.screen.query_one("#ask-error").render())  # the dialog stays open
        await pilot.press("escape")
        assert second.state.model_spec is None
        from decodelab.engine.backends import pool

        monkeypatch.setattr(pool, "available", lambda where: 1024)  # nothing fits
        await set_model(app, pilot, second, "demo,dtype=float32")
        await pilot.pause(0.2)
        assert second.state.model_spec is None  # back on the app's model, usable
        assert any("will not fit" in m and "free in RAM" in m for m in messages(app))


@pytest.mark.asyncio
async def test_sessions_keep_each_panes_model(demo, model_dirs, tmp_path):
    llama = str(model_dirs["llama"])
    app = make_app(demo, configs=TWO)
    path = tmp_path / "s.json"
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        second = list(app.query(Pane).results())[1]
        await set_model(app, pilot, second, llama)
        await run_all(app, pilot)
        await pilot.press("ctrl+s")
        await pilot.pause()
        app.screen.query_one("Input").value = str(path)
        await pilot.press("enter")
        await pilot.pause()
    again = make_app(demo, configs=TWO)
    async with again.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        again.files.open_session(str(path))
        await wait_loaded(again, pilot)
        await pilot.pause()
        second = list(again.query(Pane).results())[1]
        assert load_key(second.state.model_spec) == load_key(spec_from_text(llama))
        assert load_key(second.state.model_spec) in again.shelf.pool.models


@pytest.mark.asyncio
async def test_two_panes_on_one_pane_model_share_its_batch(demo, model_dirs, tiny_models):
    """Panes on the same model of their own decode as one batch (one thread, one prefill)."""
    llama = str(model_dirs["llama"])
    app = make_app(demo, configs=THREE)
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        first, second, third = list(app.query(Pane).results())
        await set_model(app, pilot, second, llama)
        await set_model(app, pilot, third, llama)
        assert app.shelf.backend_for(second.state) is app.shelf.backend_for(third.state)  # one object: one group in a run
        await run_all(app, pilot)
        together = generate_many(tiny_models["llama"], PROMPT, [THREE[1], THREE[2]])
        assert [second.state.text, third.state.text] == [c.text for c in together]
        assert len(app.runs.engine_threads) == 2  # the demo model's thread and the llama model's
