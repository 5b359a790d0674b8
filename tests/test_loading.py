"""Model loading: the bundled demo model in each dtype and quantization on CPU, and every failure's message."""

from __future__ import annotations

import re

import pytest
import torch

from decodelab.engine import ConfigError, DecodingConfig, generate_many
from decodelab.engine.backends.loading import ModelLoadError, ModelSpec, demo_model_path, load_model
from decodelab.engine.library.profiles import load_model_profile, loads_model_profile, save_model_profile


def test_demo_model_ships_small(demo):
    files = {p.name for p in demo_model_path().iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= files
    assert (demo_model_path() / "model.safetensors").stat().st_size <= 10 * 2**20
    assert 2_000_000 <= demo.num_parameters <= 8_000_000
    assert demo.dtype == torch.float32 and demo.device.type == "cpu"
    assert demo.memory_bytes > 0 and "demo" in demo.describe()


def test_demo_greedy_text_is_real_english(demo):
    import pydoc_data.topics

    known = set(re.findall(r"[a-z]+", " ".join(pydoc_data.topics.topics.values()).lower()))
    text = generate_many(demo, "The for statement", [DecodingConfig(max_new_tokens=40)])[0].text
    words = re.findall(r"[A-Za-z]+", text)
    assert len(words) >= 10, text
    real = [w for w in words if w.lower() in known]
    assert len(real) / len(words) >= 0.9, text


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_demo_loads_in_dtype(dtype):
    loaded = load_model(ModelSpec(dtype=dtype, device="cpu"))
    assert loaded.dtype == getattr(torch, dtype)
    assert next(loaded.model.parameters()).dtype == getattr(torch, dtype)
    out = generate_many(loaded, "The for statement", [DecodingConfig(max_new_tokens=5)])[0]
    assert len(out.token_ids) == 5


@pytest.mark.parametrize("quantization,module", [("8bit", "Linear8bitLt"), ("4bit", "Linear4bit")])
def test_demo_loads_quantized_on_cpu(quantization, module, demo):
    loaded = load_model(ModelSpec(quantization=quantization, device="cpu"))
    kinds = {type(m).__name__ for m in loaded.model.modules()}
    assert module in kinds
    assert loaded.memory_bytes < demo.memory_bytes
    out = generate_many(loaded, "The for statement",
                        [DecodingConfig(max_new_tokens=6), DecodingConfig(do_sample=True, seed=1, max_new_tokens=6)])
    assert all(len(c.token_ids) == 6 for c in out)
    assert all(-30 < s.logprob <= 0 for c in out for s in c.steps)


def test_progress_is_reported():
    seen = []
    load_model(ModelSpec(device="cpu"), lambda stage, fraction: seen.append((stage, fraction)))
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(seen) >= 4


def test_load_failures_are_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    cases = [
        (ModelSpec(path=str(tmp_path / "nope")), "no such model folder"),
        (ModelSpec(path="someorg/not-cached-model"), "never downloads"),
        (ModelSpec(path=str(tmp_path)), "no config.json"),
    ]
    (tmp_path / "file.bin").write_bytes(b"x")
    cases.append((ModelSpec(path=str(tmp_path / "file.bin")), "is a file"))
    for spec, needle in cases:
        with pytest.raises(ModelLoadError, match=needle):
            load_model(spec)


def test_not_a_causal_lm(tmp_path):
    from transformers import ViTConfig

    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="not a causal language model"):
        load_model(ModelSpec(path=str(tmp_path)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu():
    with pytest.raises(ModelLoadError, match="no CUDA GPU"):
        load_model(ModelSpec(device="cuda"))


@pytest.mark.parametrize("kwargs", [{"dtype": "float64"}, {"device": "tpu"}, {"quantization": "3bit"},
                                    {"path": ""}, {"chat": "yes"}, {"quant_type": "int4"}])
def test_bad_spec_values(kwargs):
    with pytest.raises(ConfigError):
        ModelSpec(**kwargs)


def test_model_profile_round_trip_and_no_clobber(tmp_path):
    spec = ModelSpec(path="/models/x", dtype="bfloat16", quantization="4bit", quant_type="fp4", chat=True)
    path = save_model_profile(spec, tmp_path / "m.toml")
    assert load_model_profile(path) == spec
    with pytest.raises(ConfigError, match="already exists"):
        save_model_profile(ModelSpec(), path)
    with pytest.raises(ConfigError, match="Did you mean 'dtype'"):
        loads_model_profile("schema = 1\nkind = 'model'\ndtyp = 'auto'\n")


def test_threads_auto_leaves_the_busy_cores_alone():
    from decodelab.engine.backends.loading import threads_for
    from decodelab.engine.config import ConfigError

    assert threads_for("auto", cores=2, load=0.3, default=2) == 1  # one core stays free for the UI
    assert threads_for("auto", cores=8, load=0.3, default=8) == 7
    assert threads_for("auto", cores=8, load=3.4, default=8) == 4  # three cores busy elsewhere
    assert threads_for("auto", cores=2, load=7.5, default=2) == 1  # never fewer than one
    assert threads_for("auto", cores=64, load=0.0, default=32) == 32  # torch's default (physical cores) caps it
    assert threads_for("3") == 3
    for bad in ("0", "many", -1):
        with pytest.raises(ConfigError, match="threads"):
            threads_for(bad)


def test_run_threads_option_sets_torch_threads():
    import torch
    from click.testing import CliRunner

    from decodelab.cli.main import main

    result = CliRunner().invoke(main, ["run", "--model", "demo", "--prompt", "x", "--set", "max_new_tokens=2",
                                       "--threads", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == 1  # (conftest restores it after this test)
    bad = CliRunner().invoke(main, ["run", "--model", "demo", "--prompt", "x", "--threads", "none"])
    assert bad.exit_code != 0 and "threads='none' is invalid" in bad.output and "Traceback" not in bad.output


def test_a_spec_that_is_no_path_and_no_hub_id_is_said_in_decodelab_s_words():
    """The walk-through's `[bold]x`: HF's own "Repo id must use alphanumeric chars", after "could not load" twice."""
    from decodelab.engine.backends.loading import ModelLoadError, ModelSpec, load_model
    from decodelab.tui.models import load_failure

    with pytest.raises(ModelLoadError) as caught:
        load_model(ModelSpec(path="[bold]x"))
    said = str(caught.value)
    assert said.startswith("'[bold]x' is not a local folder") and "Repo id" not in said
    assert load_failure("[bold]x", said) == f"Could not load [bold]x: {said}"
    assert load_failure("y", "could not load y: broken").count("ould not load") == 1
