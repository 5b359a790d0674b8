"""Several models at once: each distinct (model, load settings) loaded once and shared by its panes.

    spec_from_text   "smollm2,dtype=bfloat16" / "model.gguf,engine=llama.cpp" -> a ModelSpec (a pane's model)
    estimate         what a model will take before it is loaded: its weights at the dtype or quantization asked
                     for, plus the key/value cache of its rows
    ModelPool        get(spec) loads or shares; a load that will not fit is refused with the numbers;
                     keep(specs) unloads what no pane uses any more
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Container, Iterable

from ..config import ConfigError
from .base import Backend, ModelLoadError
from ..runners.hf_calls import kv_elements_per_token
from .loading import ModelSpec, Progress, load_model, resolve_dtype

PANE_MODEL_KEYS = ("dtype", "device", "quantization", "quant_type", "engine", "chat")


def spec_from_text(text: str, base: ModelSpec | None = None) -> ModelSpec:
    """A pane's model: a path (anything --model takes), then optional key=value load settings after commas
    (dtype, device, quantization, quant_type, engine, chat). Settings not given come from `base` when the path
    is base's, else their defaults."""
    parts = [p.strip() for p in text.split(",")]
    path = parts[0]
    if not path or "=" in path:
        raise ConfigError(f"model {text!r}: start with the model (a folder, a cached hub id, a .gguf file, "
                          "smollm2 or demo), then settings, e.g. smollm2,dtype=bfloat16")
    if base is not None and base.path == path:
        start = base
    else:  # chat mode as --model sets it: on for smollm2; a remote server's follows its model
        start = ModelSpec(path=path, chat=None if path.startswith(("http://", "https://")) else path == "smollm2")
    changes: dict = {}
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in PANE_MODEL_KEYS:
            raise ConfigError(f"model {text!r}: {part!r} is not a load setting; use key=value with key one of "
                              f"{', '.join(PANE_MODEL_KEYS)}")
        value = value.strip()
        changes[key] = {"true": True, "false": False}.get(value.lower(), value) if key == "chat" else value
    try:
        spec = dataclasses.replace(start, path=path, **changes)
    except ConfigError as exc:
        raise ConfigError(f"model {text!r}: {exc}") from None
    if spec.engine == "llama.cpp" and not spec.is_remote and _gguf(spec) is None:
        raise ConfigError(f"model {text!r}: engine=llama.cpp runs GGUF files, and {path} is not one: give a .gguf "
                          "file (or smollm2), or leave engine out")
    return spec


def load_key(spec: ModelSpec) -> ModelSpec:
    """What makes two specs one load: everything but chat mode (a prompt-formatting choice, not a load setting)."""
    if spec.quantization != "4bit" and (spec.quant_type, spec.compute_dtype) != ("nf4", "auto"):
        spec = dataclasses.replace(spec, quant_type="nf4", compute_dtype="auto")  # 4-bit only: no other load
    if spec.is_remote or spec.chat is False:
        return spec
    return dataclasses.replace(spec, chat=False)


def spec_text(spec: ModelSpec) -> str:
    """The inverse of spec_from_text: the path and the load settings that differ from the defaults."""
    default = ModelSpec(path=spec.path, chat=spec.chat)
    extra = [f"{k}={getattr(spec, k)}" for k in PANE_MODEL_KEYS if getattr(spec, k) != getattr(default, k)]
    return ",".join([spec.path, *extra])


def spec_label(spec: ModelSpec) -> str:
    """A short name for pane titles: the model, then what sets this load apart ("smollm2 bfloat16", "smollm2 4bit")."""
    bits = [spec.display_name]
    if spec.engine != "transformers":
        bits.append(spec.engine)
    if spec.quantization != "none":
        bits.append(spec.quantization)
    if spec.dtype != "auto":
        bits.append(spec.dtype)
    if spec.device != "auto":
        bits.append(spec.device)
    return " ".join(bits)


def served_name_of(spec: ModelSpec, taken: Container[str]) -> str:
    """The name a served model answers to: its label with dashes ("smollm2-bfloat16"), made unique among taken."""
    name = spec_label(spec).replace(" ", "-")
    unique, n = name, 2
    while unique in taken:
        unique, n = f"{name}-{n}", n + 1
    return unique


@dataclass
class Estimate:
    weights: int
    """Bytes of weights once loaded."""
    cache: int
    """Bytes of key/value cache for the rows asked about."""
    where: str
    """"cuda" or "cpu"."""
    how: str
    """How the weights figure was reached, for the message."""

    @property
    def total(self) -> int:
        return self.weights + self.cache


def estimate(spec: ModelSpec, rows: int = 8, tokens: int = 1024) -> Estimate | None:
    """What loading `spec` will take (None when it cannot be told before loading: remote, unknown layouts)."""
    if spec.is_remote:
        return None
    import torch

    if spec.device == "cuda" and not torch.cuda.is_available():
        return None  # the load itself says there is no CUDA GPU here
    where = "cuda" if spec.device != "cpu" and torch.cuda.is_available() else "cpu"
    gguf = _gguf(spec)
    if gguf is not None:
        params, kept, layout, context = _gguf_layout(gguf)
        if spec.engine == "llama.cpp":
            weights, how = gguf.stat().st_size, f"the {gguf.name} file as it is"
        else:
            weights, how = _weights(spec, where, params, kept, "de-quantized to")
    else:
        folder = _folder(spec)
        if folder is None:
            return None
        params, kept, layout, context = _folder_layout(folder)
        if not params:
            return None
        weights, how = _weights(spec, where, params, kept, "at")
    if context:  # no row holds more than the context (a huge max_new_tokens is the preflight's to refuse)
        tokens = min(tokens, context)
    kv = layout * rows * tokens * (2 if spec.engine == "llama.cpp" else _dtype_bytes(spec, where)) if layout else 0
    return Estimate(weights, kv, where, how)


def available(where: str) -> int | None:
    """Bytes free for a new model: on CUDA what the device has free, on CPU MemAvailable from /proc/meminfo."""
    if where == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info()
        return int(free)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_fits(spec: ModelSpec, rows: int = 8, tokens: int = 1024, free: int | None = None) -> Estimate | None:
    """ModelLoadError, with the numbers, when `spec` will not fit where it is going; the estimate otherwise."""
    guess = estimate(spec, rows, tokens)
    if guess is None:
        return None
    free = available(guess.where) if free is None else free
    if free is not None and guess.total > 0.9 * free:
        place = "on the GPU" if guess.where == "cuda" else "in RAM"
        raise ModelLoadError(
            f"{spec_label(spec)} will not fit: it needs about {_gb(guess.total)} ({_gb(guess.weights)} of weights: "
            f"{guess.how}; {_gb(guess.cache)} of cache for {rows} rows of {tokens} tokens) and {_gb(free)} is free "
            f"{place}. Close panes on other models (models no pane uses are unloaded), pick a smaller dtype or "
            "quantization=4bit, a GGUF file on engine=llama.cpp, or a smaller model")
    return guess


class ModelPool:
    """The loaded models, by load_key (chat mode aside); thread-safe (the TUI loads from workers)."""

    def __init__(self, loader: Callable[..., Backend] = load_model):
        self.loader = loader
        self.models: dict[ModelSpec, Backend] = {}
        self.lock = threading.RLock()

    def get(self, spec: ModelSpec, progress: Progress | None = None, api_key: str | None = None, rows: int = 8,
            tokens: int = 1024) -> Backend:
        """The model for spec (with spec's chat mode), loaded now unless it is in the pool; ModelLoadError, with the
        numbers, when it will not fit."""
        key = load_key(spec)
        with self.lock:
            backend = self.models.get(key)
        if backend is None:  # loaded without the lock held, so the pool answers the UI meanwhile (loading.py
            check_fits(spec, rows, tokens)  # runs one load at a time)
            loaded = self.loader(spec, progress, api_key=api_key) if api_key else self.loader(spec, progress)
            with self.lock:
                backend = self.models.setdefault(key, loaded)
        if getattr(backend, "spec", spec) != spec and dataclasses.is_dataclass(backend):
            return dataclasses.replace(backend, spec=spec)  # the same weights, another chat mode
        return backend

    def keep(self, keys: Iterable[ModelSpec]) -> list[ModelSpec]:
        """Unload every model whose load_key is not in keys; returns the keys unloaded."""
        keys = {load_key(k) for k in keys}
        with self.lock:
            gone = [k for k in self.models if k not in keys]
            for key in gone:
                backend = self.models.pop(key)
                runner = backend.runner  # a remote backend has none
                if runner is not None:
                    runner.close()
                del backend
        if gone:
            from ..memory import release_free_memory

            gc.collect()
            release_free_memory()
        return gone


def _weights(spec: ModelSpec, where: str, params: int, kept: int, verb: str) -> tuple[int, str]:
    """Bytes of weights and how they were reckoned. bitsandbytes quantizes the linear layers only: embeddings, the
    output layer and norms (`kept`) stay at the dtype."""
    size = _dtype_bytes(spec, where)
    per = {"8bit": 1.0, "4bit": 0.5}.get(spec.quantization)
    if per is None:
        return params * size, f"{params / 1e6:.0f}M parameters {verb} {size} bytes each"
    return (int((params - kept) * per) + kept * size,
            f"{(params - kept) / 1e6:.0f}M parameters at {per:g} bytes each and {kept / 1e6:.0f}M "
            f"(embeddings, output, norms) at {size}")


def _kept(name: str, shape) -> bool:
    """Whether bitsandbytes leaves this tensor unquantized: not a 2-D linear weight, or an embedding / output layer."""
    low = name.lower()
    return len(shape) != 2 or any(k in low for k in ("embed", "lm_head", "wte", "wpe", "token_embd", "output.weight"))


def _dtype_bytes(spec: ModelSpec, where: str) -> int:
    import torch

    return resolve_dtype(spec.dtype, torch.device(where)).itemsize  # "auto" as the load resolves it


def _gguf(spec: ModelSpec) -> Path | None:
    from .loading import _gguf_file

    try:
        return _gguf_file(spec)
    except ModelLoadError:
        return None


def _gguf_layout(file: Path) -> tuple[int, int, int, int]:
    """(parameters, of them kept unquantized by bitsandbytes, key/value elements per token, context length or 0) from
    a GGUF header."""
    try:
        from gguf import GGUFReader

        reader = GGUFReader(str(file))
        params = sum(int(t.n_elements) for t in reader.tensors)
        kept = sum(int(t.n_elements) for t in reader.tensors if _kept(t.name, [d for d in t.shape if d > 1]))
        arch = _field(reader, "general.architecture")
        layers = _field(reader, f"{arch}.block_count")
        heads = _field(reader, f"{arch}.attention.head_count")
        kv_heads = _field(reader, f"{arch}.attention.head_count_kv") or heads
        width = _field(reader, f"{arch}.embedding_length")
        layout = layers * 2 * kv_heads * (width // heads) if layers and heads and width else 0
        return params, kept, layout, _field(reader, f"{arch}.context_length") or 0
    except Exception:  # noqa: BLE001 - an unreadable header: the file size stands in for the parameters
        return file.stat().st_size, 0, 0, 0


def _field(reader, name: str):
    field = reader.fields.get(name)
    if field is None:
        return None
    value = field.parts[field.data[0]]
    return bytes(value).decode() if field.types and field.types[0].name == "STRING" else int(value[0])


def _folder(spec: ModelSpec) -> Path | None:
    from .catalog import demo_model_path

    if spec.path == "demo":
        return demo_model_path()
    expanded = Path(os.path.expanduser(spec.path))
    if expanded.is_dir():
        return expanded
    try:  # a hub id in the local cache
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(spec.path, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached, not a hub id: the load says why
        return None


def _folder_layout(folder: Path) -> tuple[int, int, int, int]:
    """(parameters, of them kept unquantized by bitsandbytes, key/value elements per token, context length or 0) of a
    transformers folder, from its weight files' headers and its config."""
    params = kept = 0
    for file in folder.glob("*.safetensors"):
        try:
            with open(file, "rb") as handle:
                header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
            for name, entry in header.items():
                if name != "__metadata__":
                    count = math.prod(entry["shape"])
                    params += count
                    kept += count if _kept(name, entry["shape"]) else 0
        except (OSError, ValueError, KeyError):
            continue
    if not params:
        params = sum(f.stat().st_size for f in folder.glob("*.bin")) // 4  # float32 .bin files, roughly
    try:
        config = json.loads((folder / "config.json").read_text())
        config = config.get("text_config", config)
        context = config.get("max_position_embeddings") or config.get("n_positions") or 0
        return params, kept, kv_elements_per_token(SimpleNamespace(**config)) or 0, int(context)
    except (OSError, ValueError, TypeError, AttributeError):
        return params, kept, 0, 0


def _gb(n: int) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"
