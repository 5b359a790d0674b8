"""Conversations (issue 17, item 1): chat messages as prompts in the engine, the CLI and the TUI.

The engine and CLI are checked on SmolLM2's own chat template (HF's apply_chat_template is the reference);
the TUI on the demo model with a small chat template, so a three-turn run takes seconds.
"""

from __future__ import annotations

import json

import pytest
from textual.widgets import Input, TextArea

from decodelab.engine import DecodingConfig
from decodelab.engine.backends.base import Part, generate_parts
from decodelab.engine.config import ConfigError
from decodelab.engine.conversation import build, check_messages, last_user, load_messages, with_reply
from decodelab.engine.decoding.run import encode_prompt
from decodelab.engine.results import PromptError
from decodelab.tui.widgets.token_view import TokenView
from tests.tui_pilot import messages, wait_idle

TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<assistant>{% endif %}")
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "The for"},
        {"role": "assistant", "content": " statement"}, {"role": "user", "content": "And while?"}]


@pytest.fixture(scope="module")
def chat_demo():
    """The demo model with a chat template of its own (its tokenizer has none)."""
    from decodelab.engine.backends.loading import ModelSpec, load_model

    loaded = load_model(ModelSpec(device="cpu"))
    loaded.tokenizer.chat_template = TEMPLATE
    return loaded


# -- the engine ------------------------------------------------------------------------------------------------

def test_messages_are_checked_with_messages_that_say_what_to_fix(tmp_path):
    assert check_messages([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]) \
        == [{"role": "user", "content": "ab"}]
    for bad, words in (([], "non-empty list"), ([{"role": "bot", "content": "x"}], "role 'bot'"),
                       ([{"role": "user"}], "no text content"), ([{"role": "system", "content": "x"}], "ends with a system")):
        with pytest.raises(ConfigError, match=words):
            check_messages(bad)
    path = tmp_path / "chat.json"
    path.write_text(json.dumps({"model": "x", "messages": CHAT}))
    assert load_messages(path) == CHAT
    path.write_text('[{"role": "user",\n "content": }]')
    with pytest.raises(ConfigError, match="line 2, column 13"):
        load_messages(path)


def test_build_keeps_a_lone_prompt_as_text_and_with_reply_extends_a_continued_reply():
    assert build("Hi") == "Hi"
    assert build("Hi", "Be brief.") == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert last_user(CHAT) == "And while?"
    assert with_reply(CHAT[:3], " loop")[-1] == {"role": "assistant", "content": " statement loop"}
    assert with_reply("Hi", "Hello") == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]


def test_smollm2_encodes_a_conversation_exactly_as_its_chat_template_does(smollm2):
    tok = smollm2.tokenizer
    reference = tok(tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True),
                    add_special_tokens=False)["input_ids"]
    assert encode_prompt(smollm2, CHAT).tolist() == reference
    text = tok.decode(encode_prompt(smollm2, CHAT))
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>") and text.endswith("<|im_start|>assistant\n")
    continued = tok.decode(encode_prompt(smollm2, CHAT[:3]))  # a last assistant message is continued, not closed
    assert continued.endswith("<|im_start|>assistant\n statement")


def test_a_model_without_a_chat_template_refuses_a_conversation(demo):
    with pytest.raises(PromptError, match="no chat template"):
        encode_prompt(demo, CHAT)


def test_parts_on_different_prompts_decode_in_one_batch_as_they_would_alone(chat_demo):
    configs = [DecodingConfig(name="g", max_new_tokens=8),
               DecodingConfig(name="s", do_sample=True, temperature=0.9, seed=3, max_new_tokens=8)]
    alone = [generate_parts(chat_demo, [Part(p, configs)])[0] for p in (CHAT, CHAT[:2])]
    together = generate_parts(chat_demo, [Part(CHAT, configs), Part(CHAT[:2], configs)])
    assert [[c.token_ids for c in part] for part in together] == [[c.token_ids for c in part] for part in alone]
    assert together[0][0].token_ids != together[1][0].token_ids  # the two prompts really differ


def test_remote_sends_the_conversation_as_messages():
    from decodelab.engine.backends.loading import ModelSpec
    from decodelab.engine.backends.remote import RemoteModel, request_body

    remote = RemoteModel(spec=ModelSpec(path="http://x/v1", chat=True), base_url="http://x/v1", model_name="m",
                         kind="vllm")
    assert request_body(remote, CHAT, DecodingConfig(), 1, 5)["messages"] == CHAT


# -- the command line ----------------------------------------------------------------------------------------

def test_run_takes_a_system_prompt_and_a_messages_file_and_json_gives_each_panes_messages(tmp_path, smollm2,
                                                                                           monkeypatch, request):
    from click.testing import CliRunner

    from decodelab.cli.main import main

    monkeypatch.setenv("DECODELAB_CACHE_DIR", str(request.config.cache.mkdir("decodelab-cache")))  # converted once
    path = tmp_path / "chat.json"
    path.write_text(json.dumps(CHAT[1:3]))
    result = CliRunner().invoke(main, ["run", "--model", "smollm2", "--messages", str(path), "--system", "Be brief.",
                                       "--prompt", "And while?", "-p", "greedy", "--set", "max_new_tokens=6",
                                       "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["prompt"] == CHAT
    [record] = doc["completions"]
    assert record["messages"] == CHAT + [{"role": "assistant", "content": record["text"]}]
    reference = smollm2.generate(CHAT, [DecodingConfig(name="greedy", max_new_tokens=6)])[0]
    assert record["text"] == reference.text


def test_run_refuses_a_system_prompt_twice(tmp_path):
    from click.testing import CliRunner

    from decodelab.cli.main import main

    path = tmp_path / "chat.json"
    path.write_text(json.dumps(CHAT))
    result = CliRunner().invoke(main, ["run", "--model", "demo", "--messages", str(path), "--system", "x"])
    assert result.exit_code == 2 and "own system message" in result.output


# -- the TUI ----------------------------------------------------------------------------------------------------

def chat_app(loaded, configs=None):
    from decodelab.engine.backends.loading import ModelSpec
    from decodelab.tui.app import DecodelabApp

    configs = configs or [DecodingConfig(name="greedy", max_new_tokens=6),
                          DecodingConfig(name="warm", do_sample=True, temperature=0.9, seed=4, max_new_tokens=6)]
    return DecodelabApp(spec=ModelSpec(), configs=configs, prompt="The for", loaded=loaded, system="Be brief.")


async def say(app, pilot, text: str, key: str = "ctrl+n") -> None:
    app.query_one("#prompt", TextArea).text = text
    await pilot.press(key)
    await wait_idle(app, pilot)


async def test_three_turns_each_pane_answers_after_its_own_replies(chat_demo):
    app = chat_app(chat_demo)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+r")
        await wait_idle(app, pilot)
        await say(app, pilot, "And while?")
        await say(app, pilot, "And if?")
        greedy, warm = app.panes()
        for pane in (greedy, warm):
            state = pane.state
            assert len(state.turns) == 2 and "t3/3" in str(pane.border_title)
            assert state.prompt[0] == {"role": "system", "content": "Be brief."}
            assert [m["content"] for m in state.prompt if m["role"] == "user"] == ["The for", "And while?", "And if?"]
            replies = [m["content"] for m in state.prompt if m["role"] == "assistant"]
            assert replies == [t.reply for t in state.turns]  # its own earlier replies, not another pane's
        assert greedy.state.prompt != warm.state.prompt
        # the same conversation run alone gives the same reply: one batch of two prompts changed nothing
        alone = chat_demo.generate(warm.state.prompt, [warm.state.config])[0]
        assert alone.token_ids == warm.state.token_ids
        shown = str(warm.query_one(TokenView).render())
        assert "› The for" in shown and "› And if?" in shown


async def test_n_sends_to_one_pane_and_refusals_say_why(chat_demo):
    app = chat_app(chat_demo)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("ctrl+r")
        await wait_idle(app, pilot)
        await pilot.press("escape", "2")
        await say(app, pilot, "And while?", key="n")
        greedy, warm = app.panes()
        assert (len(greedy.state.turns), len(warm.state.turns)) == (0, 1)
        app.query_one("#prompt", TextArea).text = "  "
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert not app.running and any("Type the next user message" in m for m in messages(app))


async def test_an_earlier_turn_reruns_as_a_new_version_and_later_turns_come_back_with_the_old_one(chat_demo):
    app = chat_app(chat_demo, [DecodingConfig(name="warm", do_sample=True, temperature=0.9, max_new_tokens=6)])
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("ctrl+r")
        await wait_idle(app, pilot)
        await say(app, pilot, "And while?")
        await say(app, pilot, "And if?")
        await pilot.press("escape")
        pane = app.panes()[0]
        third = pane.state.text
        await pilot.press("{")
        await pilot.pause()
        box = app.query_one("#prompt", TextArea)
        assert box.text == "And while?" and pane.state.turn_label() == "t2/3"
        await pilot.press("ctrl+n")  # a new message cannot be sent from an earlier turn
        await pilot.pause()
        assert any("earlier turn is on show" in m for m in messages(app))
        box.text = "And until?"
        await pilot.press("ctrl+r")
        await wait_idle(app, pilot)
        state = pane.state
        assert state.turn_label() == "t2/2" and state.version_label() == "v2/2" and state.user == "And until?"
        await pilot.press("escape", "1", "left_square_bracket")
        await pilot.pause()
        assert state.user == "And while?" and state.turn_label() == "t2/3"  # v1 and the turn after it
        await pilot.press("right_curly_bracket")
        await pilot.pause()
        assert state.text == third and state.turn_label() == "t3/3"
        await pilot.press("left_curly_bracket", "right_square_bracket")
        await pilot.pause()
        assert state.user == "And until?" and not state.later


async def test_w_continues_a_reply_past_its_end(chat_demo):
    app = chat_app(chat_demo, [DecodingConfig(name="greedy", max_new_tokens=5)])
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("ctrl+r")
        await wait_idle(app, pilot)
        pane = app.panes()[0]
        before = pane.state.token_ids
        kept = before[:-1] if pane.state.stop_reason == "eos" else before
        await pilot.press("escape", "1", "w")
        await wait_idle(app, pilot)
        after = pane.state.token_ids
        assert after[:len(kept)] == kept and len(after) > len(kept)
        assert pane.state.version_label() == "v2/2" and pane.state.branched_at is None


async def test_a_session_keeps_every_turn_and_version_and_the_system_prompt(chat_demo, tmp_path):
    path = tmp_path / "talk.json"
    app = chat_app(chat_demo)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("ctrl+r")
        await wait_idle(app, pilot)
        await say(app, pilot, "And while?")
        assert app.query_one("#prompt", TextArea).text == ""  # sent: the box is empty for the next message
        await pilot.press("ctrl+r")  # a second version of turn 2, on its own message
        await wait_idle(app, pilot)
        assert [p.state.user for p in app.panes()] == ["And while?"] * 2
        saved = [(p.state.turn_label(), p.state.version_label(), p.state.text, [t.reply for t in p.state.turns])
                 for p in app.panes()]
        await pilot.press("ctrl+s")
        app.screen.query_one(Input).value = str(path)
        await pilot.press("enter")
        await pilot.pause()
    assert json.loads(path.read_text())["schema"] == 2
    other = chat_app(chat_demo)
    other_system = None
    async with other.run_test(size=(120, 30)) as pilot:
        await pilot.pause()  # the main screen's panes are mounted
        other.workspace.system_prompt = None
        other.files.open_session(str(path))
        await pilot.pause()
        other_system = other.workspace.system_prompt
        opened = [(p.state.turn_label(), p.state.version_label(), p.state.text, [t.reply for t in p.state.turns])
                  for p in other.panes()]
        assert [len(p.state.history) for p in other.panes()] == [2, 2]
    assert opened == saved and saved[0][:2] == ("t2/2", "v2/2") and other_system == "Be brief."


async def test_a_schema_1_session_still_opens(chat_demo, tmp_path):
    from decodelab.engine.results import completion_to_dict

    completion = chat_demo.generate("The for", [DecodingConfig(max_new_tokens=4)])[0]
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"schema": 1, "kind": "decodelab-session", "prompt": "The for", "model": {},
                                "panes": [{"config": DecodingConfig().to_dict(),
                                           "completion": completion_to_dict(completion)}]}))
    app = chat_app(chat_demo)
    async with app.run_test(size=(120, 30)) as pilot:
        app.files.open_session(str(path))
        await pilot.pause()
        [pane] = app.panes()
        assert pane.state.text == completion.text and pane.state.prompt == "The for"


async def test_shift_p_sets_the_system_prompt_of_the_next_run(chat_demo):
    app = chat_app(chat_demo)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("escape", "P")
        app.screen.query_one(Input).value = "Answer in French."
        await pilot.press("enter")
        await pilot.press("ctrl+r")
        await wait_idle(app, pilot)
        assert app.panes()[0].state.prompt[0] == {"role": "system", "content": "Answer in French."}
        assert "system: Answer in French." in str(app.query_one("#model-bar").render())


async def test_after_ctrl_n_typing_stays_in_the_prompt_and_esc_there_does_not_cancel(chat_demo, monkeypatch):
    import time

    from decodelab.engine.decoding.loop import DecodeLoop

    real = DecodeLoop._forward
    monkeypatch.setattr(DecodeLoop, "_forward", lambda self, tokens: time.sleep(0.05) or real(self, tokens))
    # each step takes at least 50 ms, so the second turn (450 tokens: 22 s) is still running while the keys are
    # pressed, however idle the machine (10 ms was a race an idle one lost)
    app = chat_app(chat_demo, [DecodingConfig(name="long", max_new_tokens=4)])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+r")
        await wait_idle(app, pilot)
        pane = app.panes()[0]
        pane.state.config = pane.state.config.replace(max_new_tokens=450, min_new_tokens=450)  # a long second turn
        box = app.query_one("#prompt", TextArea)
        box.focus()
        box.text = "And while?"
        await pilot.press("ctrl+n")
        await pilot.press(*"And if")  # the next message, typed while the panes answer (A would open the A/B)
        assert app.focused is box and box.text == "And if" and app.running
        await pilot.press("escape")  # to the panes, as the prompt's border says; the run goes on
        assert app.focused is not box and app.running
        await pilot.press("escape")  # from a pane, Esc cancels
        await wait_idle(app, pilot)
        assert app.panes()[0].state.stop_reason == "cancelled"


async def test_ab_and_sweeps_run_on_the_current_panes_conversation(chat_demo):
    app = chat_app(chat_demo)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("ctrl+r")
        await wait_idle(app, pilot)
        await say(app, pilot, "And while?")  # the box is empty now
        await pilot.press("escape", "2")
        prompt = app.panes_part.comparison_prompt()
        warm = app.panes()[1].state
        assert prompt == warm.prompt and prompt[-1] == {"role": "user", "content": "And while?"}


async def test_a_pane_added_mid_conversation_answers_the_latest_message_not_an_empty_one(chat_demo):
    app = chat_app(chat_demo)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("ctrl+r")
        await wait_idle(app, pilot)
        await say(app, pilot, "And while?")
        app.panes_part.add_pane(DecodingConfig(name="beam", num_beams=3, max_new_tokens=6))
        await pilot.pause()
        await pilot.press("ctrl+r")  # the box is empty
        await wait_idle(app, pilot)
        new = app.panes()[-1].state
        assert new.user == "And while?" and new.prompt[-1] == {"role": "user", "content": "And while?"}
        assert "› And while?" in str(app.panes()[-1].query_one(TokenView).render())


async def test_shift_n_starts_a_new_conversation_and_u_brings_the_old_one_back(chat_demo):
    app = chat_app(chat_demo)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("ctrl+r")
        await wait_idle(app, pilot)
        await say(app, pilot, "And while?")
        await pilot.press("escape", "N")
        assert all(not p.state.turns for p in app.panes())
        app.workspace.system_prompt = None
        app.query_one("#prompt", TextArea).text = "The if"
        await pilot.press("ctrl+r")
        await wait_idle(app, pilot)
        assert [p.state.prompt for p in app.panes()] == ["The if", "The if"]  # from the prompt box alone
        await pilot.press("escape", "u")
        assert all(len(p.state.turns) == 1 for p in app.panes())


def test_a_beam_only_part_waits_for_the_batch_instead_of_holding_it(chat_demo):
    """The walk-through: a beam pane on its own prompt kept the other panes at 0 tokens for 20 s."""
    chat_demo.runner.joins = None  # as on a fresh load: the cache kind is not known yet
    order = []
    greedy = Part(CHAT, [DecodingConfig(max_new_tokens=8)], on_step=lambda e: order.append("rows"))
    beams = Part(CHAT[:2], [DecodingConfig(num_beams=3, max_new_tokens=8)], on_step=lambda e: order.append("beam"))
    generate_parts(chat_demo, [beams, greedy])
    assert order[0] == "rows" and "beam" not in order[:order.count("rows")]


async def test_p_selects_a_message_already_run_so_the_next_one_replaces_it(chat_demo):
    app = chat_app(chat_demo)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("ctrl+r")
        await wait_idle(app, pilot)
        await pilot.press("p", *"And while?", "ctrl+n")
        await wait_idle(app, pilot)
        assert app.panes()[0].state.user == "And while?"  # not "The forAnd while?"
        box = app.query_one("#prompt", TextArea)
        box.text = "draft"
        await pilot.press("escape", "p", *" more")
        assert box.text == "draft more"  # a draft not yet sent is kept and typing goes on at its end
