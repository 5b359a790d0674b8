"""The one front door (engine/session.py): jobs grouped by model, a failure kept to its model's jobs, and one wording
per mistake that the CLI, the TUI and serve only format."""

from __future__ import annotations

import httpx
import pytest
from click.testing import CliRunner

from decodelab.cli.main import main
from decodelab.engine import DecodingConfig, generate_many
from decodelab.engine.config import ConfigError
from decodelab.engine.results import PromptError
from decodelab.engine.session import Job, Session

PROMPT = "The for statement"


def test_jobs_on_two_models_run_side_by_side_and_equal_their_runs_alone(demo, llama):
    session = Session()
    greedy = DecodingConfig(max_new_tokens=6)
    seeded = DecodingConfig(do_sample=True, seed=4, max_new_tokens=6)
    steps = []
    jobs = [Job(demo, PROMPT, [greedy, seeded], on_step=steps.append), Job(llama, PROMPT, [greedy]),
            Job(demo, "A function", [seeded])]
    outcomes = session.run(jobs)
    assert [len(o.completions) for o in outcomes] == [2, 1, 1] and steps
    assert [c.token_ids for c in outcomes[0].completions] == [c.token_ids for c in generate_many(demo, PROMPT,
                                                                                                  [greedy, seeded])]
    assert outcomes[1].completions[0].token_ids == generate_many(llama, PROMPT, [greedy])[0].token_ids


def test_a_model_that_fails_fails_its_own_jobs_only(demo, llama):
    outcomes = Session().run([Job(demo, PROMPT, [DecodingConfig(max_new_tokens=3)]),
                              Job(llama, PROMPT, [DecodingConfig(max_new_tokens=10_000)])])
    assert outcomes[0].completions and outcomes[0].error is None
    assert isinstance(outcomes[1].error, PromptError) and "context is 256" in str(outcomes[1].error)


def test_one_wording_per_mistake_on_every_front_end(demo):
    from decodelab.server import Server
    from decodelab.tui.preflight import context_error, vocab_error

    bad = DecodingConfig(logit_bias={"99999": -5.0})
    with pytest.raises(ConfigError) as engine:
        Session.check(demo, PROMPT, [bad])
    words = str(engine.value)
    assert "logit_bias token id 99999 is outside this model's vocabulary" in words
    assert vocab_error(demo, bad) == words  # the TUI's notification
    cli = CliRunner().invoke(main, ["run", "--model", "demo", "--prompt", PROMPT, "--set",
                                    'logit_bias={"99999" = -5}'])
    assert cli.exit_code == 2 and words in cli.stderr  # the CLI's error line
    server = Server(demo, port=0).start()
    try:
        r = httpx.post(f"{server.url}/completions", json={"prompt": PROMPT, "max_tokens": 2,
                                                           "logit_bias": {"99999": -5}}, timeout=60)
        assert r.status_code == 400 and r.json()["error"]["message"] == words  # serve's 400
    finally:
        server.stop()
    with pytest.raises(PromptError) as long:
        Session.check(demo, PROMPT, [DecodingConfig(max_new_tokens=5000)])
    assert context_error(demo, len(Session.encode(demo, PROMPT)), 5000) == str(long.value)


def test_the_context_is_checked_before_the_memory(demo):
    """A huge max_new_tokens is said to pass the context, not to need hundreds of GB (issue 36 item 5)."""
    result = CliRunner().invoke(main, ["run", "--model", "demo", "--prompt", "hi", "--set",
                                       "max_new_tokens=10000000000"])
    assert result.exit_code == 2 and "context is 512" in result.stderr and "GB" not in result.stderr


@pytest.mark.parametrize("engine", ["transformers", "llama.cpp"])
def test_serve_checks_the_context_before_the_memory(engine, request):
    from decodelab.server import Server

    model = request.getfixturevalue("demo" if engine == "transformers" else "demo_llamacpp")
    server = Server(model, port=0).start()
    try:
        for route, body in (("completions", {"prompt": "hi"}),
                            ("chat/completions", {"messages": [{"role": "user", "content": "hi"}]})):
            r = httpx.post(f"{server.url}/{route}", json={**body, "max_tokens": 10**10}, timeout=60)
            assert r.status_code == 400, r.text
            message = r.json()["error"]["message"]
            assert "context is 512" in message and "GB" not in message
    finally:
        server.stop()


async def test_the_app_checks_the_context_before_the_memory(demo):
    from tests.tui_pilot import make_app, messages, wait_idle

    app = make_app(demo, [DecodingConfig(name="huge", max_new_tokens=10**10)], prompt="hi")
    async with app.run_test() as pilot:
        await pilot.press("ctrl+r")
        await wait_idle(app, pilot)
        said = [m for m in messages(app) if "context" in m]
        assert said and "context is 512" in said[-1] and "GB" not in said[-1], messages(app)
        assert app.panes()[0].state.text == ""
