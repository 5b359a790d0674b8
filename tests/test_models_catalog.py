"""`decodelab models` lists what loads offline; a model's generation_config.json becomes "model defaults"."""

from __future__ import annotations

import json
from types import SimpleNamespace

from click.testing import CliRunner

from decodelab.cli.main import main
from decodelab.engine.config import DecodingConfig
from decodelab.engine.library.model_defaults import model_defaults


def fake_hf_cache(root):
    """A Hugging Face hub cache holding one causal LM and one encoder (files only, no network)."""
    for repo, arch in (("Org/tiny-chat", "LlamaForCausalLM"), ("Org/encoder", "BertModel")):
        folder = root / f"models--{repo.replace('/', '--')}"
        blob = folder / "blobs" / "abc123"
        blob.parent.mkdir(parents=True)
        blob.write_text(json.dumps({"architectures": [arch], "model_type": "llama"}))
        snapshot = folder / "snapshots" / ("0" * 40)
        snapshot.mkdir(parents=True)
        (snapshot / "config.json").symlink_to(blob)
        (folder / "refs").mkdir()
        (folder / "refs" / "main").write_text("0" * 40)
    return root


def test_models_lists_bundled_hf_cache_and_converted(tmp_path, monkeypatch):
    monkeypatch.setenv("DECODELAB_CACHE_DIR", str(tmp_path / "cache"))
    cache = fake_hf_cache(tmp_path / "hub")
    result = CliRunner().invoke(main, ["models", "--json", "--hf-cache", str(cache)])
    assert result.exit_code == 0, result.output
    entries = {e["name"]: e for e in json.loads(result.stdout)}
    assert entries["demo"]["kind"] == "bundled" and entries["demo"]["size_bytes"] > 1_000_000
    assert entries["Org/tiny-chat"]["kind"] == "hf-cache" and entries["Org/tiny-chat"]["detail"] == "LlamaForCausalLM"
    assert "may not be a causal LM" in entries["Org/encoder"]["detail"]
    monkeypatch.setenv("COLUMNS", "200")
    table = CliRunner().invoke(main, ["models", "--hf-cache", str(cache)]).stdout
    assert table.splitlines()[0].startswith("MODEL (--model)") and "Org/tiny-chat" in table


def test_models_at_80_columns_puts_each_name_on_its_own_line(tmp_path, monkeypatch):
    monkeypatch.setenv("DECODELAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "80")
    lines = CliRunner().invoke(main, ["models", "--hf-cache", str(tmp_path / "none")]).stdout.splitlines()
    assert "demo" in lines and not lines[0].startswith("MODEL")
    detail = lines[lines.index("demo") + 1]
    assert detail.startswith("    bundled") and len(detail) <= 80


def test_models_without_an_hf_cache_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("DECODELAB_CACHE_DIR", str(tmp_path / "cache"))
    result = CliRunner().invoke(main, ["models", "--hf-cache", str(tmp_path / "none")])
    assert result.exit_code == 0 and "demo" in result.stdout
    assert "no models in the local Hugging Face cache" in result.stderr


def test_model_defaults_come_from_generation_config(tmp_path):
    (tmp_path / "generation_config.json").write_text(json.dumps({
        "bos_token_id": 1, "eos_token_id": [2, 3], "do_sample": True, "temperature": 0.7, "top_p": 0.8,
        "top_k": 20, "repetition_penalty": 1.05, "transformers_version": "4.37.0"}))
    found = model_defaults(SimpleNamespace(source=str(tmp_path), name="qwen-like"))
    assert found is not None and found.config.name == "model defaults"
    c = found.config
    assert (c.do_sample, c.temperature, c.top_p, c.top_k, c.repetition_penalty) == (True, 0.7, 0.8, 20, 1.05)
    assert found.origin == str(tmp_path / "generation_config.json") and found.origin in c.description


def test_no_model_defaults_when_the_file_holds_only_ids(tmp_path, demo):
    (tmp_path / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}))
    assert model_defaults(SimpleNamespace(source=str(tmp_path), name="x")) is None
    assert model_defaults(SimpleNamespace(source=str(tmp_path / "missing"), name="x")) is None
    assert model_defaults(demo) is None  # the demo model ships no sampling settings


async def test_tui_model_dialog_offers_the_same_list(demo, tmp_path, monkeypatch):
    from textual.widgets import OptionList

    from decodelab.engine.backends.catalog import available_models
    from decodelab.tui.app import DecodelabApp
    from decodelab.tui.screens.model_picker import ModelPicker

    monkeypatch.setenv("DECODELAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(fake_hf_cache(tmp_path / "hub")))
    expected = [e.name for e in available_models()]
    assert "Org/tiny-chat" in expected
    app = DecodelabApp(spec=demo.spec, configs=[DecodingConfig(max_new_tokens=4)], prompt="x", loaded=demo)
    chosen = []
    async with app.run_test(size=(100, 30)) as pilot:
        app.shelf.load_path = chosen.append
        await pilot.press("escape", "m")
        await pilot.pause()
        assert isinstance(app.screen, ModelPicker)
        options = app.screen.query_one("#models", OptionList)
        for _ in range(200):
            await pilot.pause(0.05)
            if app.screen.names:
                break
        assert app.screen.names == expected and options.option_count == len(expected)
        assert options.highlighted == expected.index("demo")  # the current model
        await pilot.press("down")  # from the path field into the list
        target = expected.index("Org/tiny-chat")
        for _ in range(abs(target - options.highlighted)):
            await pilot.press("down" if target > options.highlighted else "up")
        await pilot.press("enter")
        await pilot.pause()
        assert chosen == ["Org/tiny-chat"] and not isinstance(app.screen, ModelPicker)
