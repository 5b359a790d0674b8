"""One decode loop behind every path: the same seeded config gives the same tokens alone, in a batch
with other configs, among other prompts, and through the TUI, `run`, `serve`, `sweep` and `ab`."""

from __future__ import annotations

import json
import random

import pytest
from click.testing import CliRunner

from decodelab.cli.main import main
from decodelab.engine import DecodingConfig, generate_many, run_prompts
from decodelab.engine.experiments import arena
from decodelab.engine.experiments.sweep import PromptCase, SweepSpec, evaluate

from serving import client, server  # noqa: F401 - fixtures
from tui_pilot import make_app, wait_idle

PROMPT = "The for statement"
SEED = 123000
CONFIG = DecodingConfig(name="seeded", do_sample=True, temperature=0.9, top_p=0.9, min_p=0.05, seed=SEED,
                        max_new_tokens=14)
OTHERS = [DecodingConfig(name="greedy", max_new_tokens=20),
          DecodingConfig(name="hot", do_sample=True, temperature=1.4, top_k=20, seed=5, max_new_tokens=9),
          DecodingConfig(name="penalised", repetition_penalty=1.3, no_repeat_ngram_size=2, max_new_tokens=16)]


@pytest.fixture(scope="module")
def alone(demo):
    completion = generate_many(demo, PROMPT, [CONFIG])[0]
    assert len(completion.token_ids) == 14 and completion.seed == SEED
    return completion


def test_in_a_batch_of_configs_and_among_other_prompts(demo, alone):
    mixed = generate_many(demo, PROMPT, [OTHERS[0], CONFIG, *OTHERS[1:]])
    assert mixed[1].token_ids == alone.token_ids
    shared = run_prompts(demo, [("A function", OTHERS), (PROMPT, [OTHERS[1], CONFIG]), ("x", OTHERS[:1])])
    assert shared[1][1].token_ids == alone.token_ids


def test_nine_rows_pad_to_sixteen_and_still_agree(demo, alone):
    """A batch past the first bucket (8) runs at 16 rows; rows leave as they finish."""
    many = generate_many(demo, PROMPT, OTHERS * 3 + [CONFIG])
    assert many[-1].token_ids == alone.token_ids


def test_run_json(demo, alone):
    result = CliRunner().invoke(main, ["run", "--model", "demo", "--prompt", PROMPT, "--set", "do_sample=true",
                                       "--set", "temperature=0.9", "--set", "top_p=0.9", "--set", "min_p=0.05",
                                       "--set", "max_new_tokens=14", "-p", "greedy",
                                       "--seed", str(SEED), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [c["token_ids"] for c in doc["completions"]] == [alone.token_ids]


def test_serve(client, alone):  # noqa: F811 - the fixture
    r = client.completions.create(model="demo", prompt=PROMPT, max_tokens=14, temperature=0.9, top_p=0.9,
                                  seed=SEED, extra_body={"min_p": 0.05})
    assert r.choices[0].text == alone.text


def test_sweep(demo, alone):
    spec = SweepSpec(base=CONFIG.replace(seed=None), grid={"temperature": [0.9]}, seeds=1, seed=SEED // 1000,
                     prompts=[PromptCase(PROMPT)])
    (result,) = evaluate(demo, spec, [{"temperature": 0.9}])
    assert [s["text"] for s in result.samples] == [alone.text] and result.samples[0]["seed"] == SEED


def test_ab_rounds_report_seeds_that_reproduce(demo):
    tally = arena.Tally([CONFIG.replace(name="a"), OTHERS[1].replace(name="b")])
    rnd = next(iter(arena.play_rounds(demo, tally, [PROMPT], 1, 1, chunk=4, rng=random.Random(1))))
    for slot, (index, seed) in enumerate(zip(rnd.order, rnd.seeds)):
        again = generate_many(demo, rnd.prompt, [tally.configs[index].replace(seed=seed)])[0]
        assert again.text == rnd.texts[slot]


async def test_tui(demo, alone):
    app = make_app(demo, configs=[OTHERS[0], CONFIG, OTHERS[1]], prompt=PROMPT)
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.press("ctrl+r")
        await wait_idle(app, pilot)
        assert app.panes()[1].state.token_ids == alone.token_ids


def _replayed(loaded, prompt_ids, config, token_ids):
    """The tokens the Sampler picks from the engine's own teacher-forced logits over token_ids, with the config's
    seed (the same stateless noise every path and engine draws with)."""
    import torch

    from decodelab.engine.sampling import Sampler

    runner = loaded.runner
    logits = runner.score(torch.cat([prompt_ids, torch.tensor(token_ids)]), len(token_ids) + 1)[:-1]
    sampler = Sampler([config], [config.seed], logits.shape[-1], prompts=prompt_ids, max_new=len(token_ids),
                      eos_ids=torch.tensor(runner.eos_ids()), tokenizer=loaded.tokenizer)
    picks = []
    for step, token in enumerate(token_ids):
        processed = sampler.process(logits[step: step + 1], step)
        picks.append(int(sampler.pick(processed, step)[0]))
        sampler.accept(torch.tensor([token]), processed)
    return picks


@pytest.mark.parametrize("seed, temperature", [(1, 0.8), (2, 1.0), (3, 1.3), (4, 1.6)])
def test_seeds_draw_alike_on_both_engines(demo, demo_llamacpp, seed, temperature):
    """Across engines: each engine's seeded row replays exactly from its own logits, and two engines on the same
    weights (the demo model and its GGUF) give the same tokens until the first step where their logits, not their
    noise, part: there each engine's own pick is what its own logits give with the one shared uniform draw."""
    from decodelab.engine.decoding.run import encode_prompt

    config = CONFIG.replace(seed=seed, temperature=temperature, max_new_tokens=40)
    ours, theirs = (generate_many(m, PROMPT, [config])[0] for m in (demo, demo_llamacpp))
    prompt_ids = encode_prompt(demo, PROMPT).cpu()
    assert torch_equal_lists(encode_prompt(demo_llamacpp, PROMPT).tolist(), prompt_ids.tolist())
    for loaded, completion in ((demo, ours), (demo_llamacpp, theirs)):
        assert _replayed(loaded, prompt_ids, config, completion.token_ids) == completion.token_ids
    same = next((i for i, (a, b) in enumerate(zip(ours.token_ids, theirs.token_ids)) if a != b), None)
    if same is not None:  # the texts part here: the logits differ (float32 against llama.cpp's kernels) ...
        shared = ours.token_ids[:same]
        assert _replayed(demo, prompt_ids, config, shared + [ours.token_ids[same]])[-1] == ours.token_ids[same]
        assert _replayed(demo_llamacpp, prompt_ids, config, shared + [theirs.token_ids[same]])[-1] == \
            theirs.token_ids[same]
        assert abs(ours.steps[same - 1].logprob - theirs.steps[same - 1].logprob) < 0.05  # ... only a little


def torch_equal_lists(a, b) -> bool:
    return list(a) == list(b)
