"""GGUF files on llama.cpp itself, in this process: llama.cpp runs the forward pass, decodelab does the rest.

    prefill   the prompt once, on sequence 0 (llama_decode, n_batch tokens at a time)
    rows      llama_memory_seq_cp gives sequences 1..N-1 the prompt's cache (one KV buffer for every
              sequence, so the prompt's cells are shared, not copied)
    step      one llama_decode per step: N tokens, one per sequence, each at its row's position -> logits [N, V]
    scoring   teacher-forced forwards (a branch's forced tokens, the agreement figures) run on a second
              context, so they never touch the running rows' cache

The runtime answers the two calls decoding/ makes of a model, in transformers' words:
model(input_ids=[1, T], logits_to_keep=k, use_cache=...) and model(input_ids=[N, 1], past_key_values=rows). So
the decode loop, the sampler chain, the statistics, stops and branching are decodelab's own, unchanged; only
the logits come from llama.cpp. The weights stay quantized (SmolLM2's Q4_1 file is 98 MB in memory here,
513 MB as the transformers engine's float32 copy).

llama.cpp's CPU "extra buffer types" (weights repacked for AMX kernels) are turned off: with them
llama-cpp-python 0.3.36 crashes on Q4_1 files in multi-token batches on some CPUs (experiments/peers.py).
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path
from types import SimpleNamespace

import torch

from ..results import GenerationError
from .base import ModelLoadError

KV_BYTES = 2
"""The KV cache's element size: llama.cpp's default F16 cache (what llama-server uses)."""

_LOG_CALLBACK = None
"""llama.cpp's log callback (kept alive here: ctypes would free it and llama.cpp would call freed memory)."""


def _library():
    try:
        import llama_cpp
    except ImportError as exc:
        raise ModelLoadError("the llama.cpp engine needs llama-cpp-python: `pip install 'decodelab[llamacpp]'` (it "
                             f"builds llama.cpp from source, 5-9 minutes on 2 cores; `make test` does it): {exc}") \
            from None
    global _LOG_CALLBACK
    if _LOG_CALLBACK is None:  # llama.cpp writes its load log to stderr, over a TUI: keep it quiet
        _LOG_CALLBACK = llama_cpp.llama_log_callback(lambda level, text, data: None)
        llama_cpp.llama_backend_init()
        llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))
    return llama_cpp


class LlamaRuntime:
    """One GGUF file loaded by llama.cpp, called like a transformers model by decoding/ (see the module docstring)."""

    def __init__(self, path: Path, threads: int, gpu_layers: int = 0):
        self.L = L = _library()
        self.path, self.threads = path, threads
        params = L.llama_model_default_params()
        params.n_gpu_layers = gpu_layers
        params.use_extra_bufts = False
        self.handle = L.llama_model_load_from_file(str(path).encode(), params)
        if not self.handle:
            raise ModelLoadError(f"llama.cpp could not load {path.name}: is it a GGUF model file llama.cpp knows?")
        self.vocab = L.llama_model_get_vocab(self.handle)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train = L.llama_model_n_ctx_train(self.handle)
        self.kv_per_token = (L.llama_model_n_layer(self.handle) * 2 * L.llama_model_n_head_kv(self.handle)
                             * (L.llama_model_n_embd(self.handle) // max(1, L.llama_model_n_head(self.handle)))
                             * KV_BYTES)
        eog = [t for t in range(self.n_vocab) if L.llama_vocab_is_eog(self.vocab, t)]
        self.config = SimpleNamespace(model_type="llama.cpp", vocab_size=self.n_vocab, eos_token_id=eog,
                                      max_position_embeddings=self.n_ctx_train)
        self.generation_config = SimpleNamespace(eos_token_id=eog)
        self.device, self.dtype = torch.device("cpu"), torch.float32
        self.lock = threading.RLock()
        self.main = self.scratch = None  # (context, cells, sequences)
        self.batch, self.batch_size = None, 0

    # -- what decoding/ calls ------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, logits_to_keep: int = 0, use_cache: bool = True,
                past_key_values=None, **_ignored):
        """The next-token logits, transformers-style: a prompt (batch 1), or one step of the rows."""
        with self.lock:
            if isinstance(past_key_values, LlamaRows):
                logits = past_key_values.step(input_ids[:, -1].tolist())
                return SimpleNamespace(logits=logits[:, None, :], past_key_values=past_key_values)
            if input_ids.shape[0] != 1:
                raise GenerationError("the llama.cpp engine prefills one prompt at a time")
            ids = input_ids[0].tolist()
            keep = logits_to_keep or len(ids)
            if not use_cache:  # scoring: its own context, the rows' cache untouched
                self.scratch = self._fit(self.scratch, len(ids), 1)
                logits = self._decode_prompt(self.scratch[0], ids, keep)
                self.L.llama_memory_clear(self.L.llama_get_memory(self.scratch[0]), True)
                return SimpleNamespace(logits=logits[None], past_key_values=None)
            if self.main is None or self.main[1] < len(ids) + 1:
                self.reserve(len(ids), 1, 1)
            memory = self.L.llama_get_memory(self.main[0])
            self.L.llama_memory_clear(memory, True)
            logits = self._decode_prompt(self.main[0], ids, keep)
            return SimpleNamespace(logits=logits[None], past_key_values=LlamaRows(self, len(ids)))

    __call__ = forward

    def reserve(self, prompt_tokens: int, rows: int, max_new: int) -> None:
        """Make room before a prefill: `rows` sequences of up to prompt + max_new tokens (the prompt's cells are
        shared). A context too small is made again (the batch is empty then: one request at a time)."""
        with self.lock:
            self.main = self._fit(self.main, prompt_tokens + rows * max_new + 1, rows)

    # -- llama.cpp ------------------------------------------------------------------------------------
    def _fit(self, held, cells: int, sequences: int):
        if held is not None and held[1] >= cells and held[2] >= sequences:
            return held
        if held is not None:
            self.L.llama_free(held[0])
        cells = max(-(-cells // 256) * 256, 512)
        sequences = max(sequences, 8 if held is None else held[2])
        params = self.L.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch = cells, 512, 512
        params.n_seq_max, params.kv_unified = sequences, True
        params.n_threads = params.n_threads_batch = self.threads
        context = self.L.llama_init_from_model(self.handle, params)
        if not context:
            raise GenerationError(
                f"llama.cpp could not make a context of {cells} tokens for {sequences} rows "
                f"({cells * self.kv_per_token / 2**20:.0f} MiB of cache): run fewer configs or lower max_new_tokens")
        return context, cells, sequences

    def _batch(self, size: int):
        if size > self.batch_size:
            if self.batch is not None:
                self.L.llama_batch_free(self.batch)
            self.batch, self.batch_size = self.L.llama_batch_init(max(size, 512), 0, 1), max(size, 512)
        return self.batch

    def decode(self, context, tokens, positions, sequences, outputs) -> None:
        batch = self._batch(len(tokens))
        batch.n_tokens = len(tokens)
        for i, (token, position, sequence, output) in enumerate(zip(tokens, positions, sequences, outputs)):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, position, 1
            batch.seq_id[i][0], batch.logits[i] = sequence, output
        code = self.L.llama_decode(context, batch)
        if code != 0:
            why = {1: "its cache is full", 2: "it was aborted", -1: "the batch was invalid"}.get(code, f"code {code}")
            raise GenerationError(f"llama.cpp could not decode ({why})")

    def _decode_prompt(self, context, ids: list[int], keep: int) -> torch.Tensor:
        """Decode ids on sequence 0 (512 at a time); the logits of the last `keep` positions [keep, V]."""
        rows = []
        for start in range(0, len(ids), 512):
            piece = ids[start: start + 512]
            outputs = [int(start + i >= len(ids) - keep) for i in range(len(piece))]
            self.decode(context, piece, range(start, start + len(piece)), [0] * len(piece), outputs)
            if any(outputs):
                rows.append(self._logits(context, sum(outputs)))
        return torch.cat(rows)

    def _logits(self, context, n: int) -> torch.Tensor:
        import numpy as np

        pointer = self.L.llama_get_logits(context)
        return torch.from_numpy(np.ctypeslib.as_array(pointer, shape=(n, self.n_vocab)).copy())

    def file_type(self) -> str:
        """The weights' type as llama.cpp names it ("Q4_1"), from its model description ("llama ?B Q4_1")."""
        buffer = ctypes.create_string_buffer(256)
        self.L.llama_model_desc(self.handle, buffer, 256)
        return buffer.value.decode(errors="replace").split(" ")[-1]

    def describe_memory(self) -> int:
        return int(self.L.llama_model_size(self.handle))

    def parameters(self) -> int:
        return int(self.L.llama_model_n_params(self.handle))

    def close(self) -> None:
        with self.lock:
            for held in (self.main, self.scratch):
                if held is not None:
                    self.L.llama_free(held[0])
            self.main = self.scratch = None
            if self.batch is not None:
                self.L.llama_batch_free(self.batch)
                self.batch = None
            if self.handle:
                self.L.llama_model_free(self.handle)
                self.handle = None


class LlamaRows:
    """The decoding rows' state in llama.cpp: sequence i is row i; every row's next position."""

    def __init__(self, runtime: LlamaRuntime, length: int):
        self.runtime, self.rows, self.positions = runtime, 1, [length]

    def copy_rows(self, rows: int) -> LlamaRows:
        """Sequences 1..rows-1 get the prompt's cache (caches.py's replicate asks for this)."""
        runtime = self.runtime
        if runtime.main is None or rows > runtime.main[2]:
            raise GenerationError(f"llama.cpp's context holds {runtime.main[2] if runtime.main else 0} rows, not "
                                  f"{rows}: report this")
        memory = runtime.L.llama_get_memory(runtime.main[0])
        for sequence in range(1, rows):
            runtime.L.llama_memory_seq_cp(memory, 0, sequence, -1, -1)
        self.rows, self.positions = rows, self.positions[:1] * rows
        return self

    def step(self, tokens: list[int]) -> torch.Tensor:
        """Each row's token at its position, in one llama_decode; the next-token logits [N, V]."""
        runtime = self.runtime
        runtime.decode(runtime.main[0], tokens, self.positions, range(len(tokens)), [1] * len(tokens))
        self.positions = [p + 1 for p in self.positions]
        return runtime._logits(runtime.main[0], len(tokens))


def open_gguf_engine(spec, file: Path, progress=None) -> tuple[LlamaRuntime, object]:
    """The runtime and tokenizer for the GGUF file (spec.engine == "llama.cpp"); ModelLoadError says what went
    wrong. loading.py wraps them in a LlamaCppModel."""
    from .gguf import GGUFError, tokenizer_folder

    report = progress or (lambda stage, fraction: None)  # ModelSpec refuses quantization and dtype here
    try:
        folder = tokenizer_folder(file, report)
    except GGUFError as exc:
        raise ModelLoadError(str(exc)) from None
    except OSError as exc:
        raise ModelLoadError(f"could not write the tokenizer of {file.name} to the cache: {exc}") from None
    from transformers import AutoTokenizer

    report("loading the tokenizer", 0.4)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    report(f"loading {file.name} into llama.cpp", 0.6)
    offload = _library().llama_supports_gpu_offload()
    if spec.device == "cuda" and not offload:
        raise ModelLoadError("this llama-cpp-python was built for the CPU only, so the llama.cpp engine cannot use "
                             "the GPU: pass --device cpu, reinstall llama-cpp-python with CUDA, or use the "
                             "transformers engine")
    runtime = LlamaRuntime(file, torch.get_num_threads(), -1 if offload and spec.device != "cpu" else 0)
    report("ready", 1.0)
    return runtime, tokenizer
