"""GGUF files on llama.cpp itself, in this process: llama.cpp runs the forward pass, decodelab does the rest.

    prefill   the prompt once, on sequence 0 (llama_decode, n_batch tokens at a time)
    rows      llama_memory_seq_cp gives sequences 1..N-1 the prompt's cache (one KV buffer for every
              sequence, so the prompt's cells are shared, not copied)
    step      one llama_decode per step: N tokens, one per sequence, each at its row's position -> logits [N, V]
    scoring   teacher-forced forwards (a branch's forced tokens, the agreement figures) run on a second
              context, so they never touch the running rows' cache

    select    a row that leaves gives its sequence back (llama_memory_seq_rm): the others go on, each at its
              own length, so a finished row costs nothing

LlamaCppRunner is the ModelRunner (base.py) over it: the decode loop, the sampler chain, the statistics, stops
and branching are decodelab's own, unchanged; only the logits come from llama.cpp. The weights stay quantized (SmolLM2's Q4_1 file is 98 MB in memory here,
513 MB as the transformers engine's float32 copy).

llama.cpp's CPU "extra buffer types" (weights repacked for AMX kernels) are turned off: with them
llama-cpp-python 0.3.36 crashes on Q4_1 files in multi-token batches on some CPUs (experiments/peers.py).
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

import torch

from ..results import GenerationError, ModelLoadError
from .base import PromptChunks, RowBatch, RunnerBase

KV_BYTES = 2
"""The KV cache's element size: llama.cpp's default F16 cache (what llama-server uses)."""

_LOG_CALLBACK = None
"""llama.cpp's log callback (kept alive here: ctypes would free it and llama.cpp would call freed memory)."""


def library() -> ModuleType:
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
    """One GGUF file loaded by llama.cpp: its model, a main context for the rows and a scratch one for scoring."""

    main: tuple[Any, int, int] | None
    """The rows' context: (llama_context pointer, cells, sequences); None until reserve() makes it."""
    scratch: tuple[Any, int, int] | None
    """The scoring context, the same way; None until the first score()."""
    batch: Any
    """The llama_batch decode() fills (None until the first decode)."""

    def __init__(self, path: Path, threads: int, gpu_layers: int = 0) -> None:
        self.L = L = library()
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
        self.eog = [t for t in range(self.n_vocab) if L.llama_vocab_is_eog(self.vocab, t)]
        self.lock = threading.RLock()
        self.main = self.scratch = None  # (context, cells, sequences)
        self.batch, self.batch_size = None, 0

    def reserve(self, cells: int, rows: int) -> None:
        """Make room before a prefill: `cells` tokens of cache for `rows` sequences. A context too small is made
        again (the batch is empty then: one request at a time)."""
        with self.lock:
            self.main = self._fit(self.main, cells, rows)

    def prefill(self, ids: list[int], keep: int) -> torch.Tensor:
        """The prompt on sequence 0 of a cleared main context; the logits of its last `keep` positions."""
        with self.lock:
            assert self.main is not None  # reserve() made it before the prefill
            self.L.llama_memory_clear(self.L.llama_get_memory(self.main[0]), True)
            return self._decode_prompt(self.main[0], ids, keep)

    def score(self, ids: list[int], keep: int) -> torch.Tensor:
        """Teacher-forced logits on the scratch context: the rows' cache is untouched."""
        with self.lock:
            self.scratch = self._fit(self.scratch, len(ids) + 1, 1)
            logits = self._decode_prompt(self.scratch[0], ids, keep)
            self.L.llama_memory_clear(self.L.llama_get_memory(self.scratch[0]), True)
            return logits

    # -- llama.cpp ------------------------------------------------------------------------------------
    def _fit(self, held: tuple[Any, int, int] | None, cells: int, sequences: int) -> tuple[Any, int, int]:
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

    def _batch(self, size: int) -> Any:
        if size > self.batch_size:
            if self.batch is not None:
                self.L.llama_batch_free(self.batch)
            self.batch, self.batch_size = self.L.llama_batch_init(max(size, 512), 0, 1), max(size, 512)
        return self.batch

    def decode(self, context: Any, tokens: Sequence[int], positions: Sequence[int], sequences: Sequence[int],
               outputs: Sequence[int]) -> None:
        batch = self._batch(len(tokens))
        batch.n_tokens = len(tokens)
        for i, (token, position, sequence, output) in enumerate(zip(tokens, positions, sequences, outputs)):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, position, 1
            batch.seq_id[i][0], batch.logits[i] = sequence, output
        code = self.L.llama_decode(context, batch)
        if code != 0:
            why = {1: "its cache is full", 2: "it was aborted", -1: "the batch was invalid"}.get(code, f"code {code}")
            raise GenerationError(f"llama.cpp could not decode ({why})")

    def _decode_prompt(self, context: Any, ids: list[int], keep: int) -> torch.Tensor:
        """Decode ids on sequence 0 (512 at a time); the logits of the last `keep` positions [keep, V]."""
        rows = []
        for start in range(0, len(ids), 512):
            piece = ids[start: start + 512]
            outputs = [int(start + i >= len(ids) - keep) for i in range(len(piece))]
            self.decode(context, piece, range(start, start + len(piece)), [0] * len(piece), outputs)
            if any(outputs):
                rows.append(self._logits(context, sum(outputs)))
        return torch.cat(rows)

    def _logits(self, context: Any, n: int) -> torch.Tensor:
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


class LlamaCppRunner(RunnerBase):
    """The ModelRunner over a LlamaRuntime: llama.cpp's rows come out the same alone or in a batch, so it never pads."""

    engine = "llama.cpp"
    capabilities = frozenset({"batch_invariant"})
    kv_bytes_per_token: int  # always known: set from the runtime

    def __init__(self, runtime: LlamaRuntime) -> None:
        self.runtime = runtime
        self.device = torch.device("cpu")
        self.vocab_size = runtime.n_vocab
        self.context_length = runtime.n_ctx_train
        self.kv_bytes_per_token = runtime.kv_per_token

    def eos_ids(self) -> list[int]:
        return list(self.runtime.eog)

    def kv_bytes(self, rows: int, context: int, new: int) -> int | None:
        """One KV buffer for every sequence: the prompt's cells are shared, each row adds its own tokens."""
        return (context + rows * new) * self.kv_bytes_per_token

    def prefill(self, context: torch.Tensor, rows: int, pad_to: int, max_new: int = 0,
                keep: int = 1) -> tuple[LlamaRows, torch.Tensor]:
        ids = context.tolist()
        runtime = self.runtime
        runtime.reserve(len(ids) + rows * max(max_new, 1) + 1, rows)
        logits = runtime.prefill(ids, keep)
        return LlamaRows(runtime, len(ids), rows, logits[-1:]), logits

    def chunks(self, context: torch.Tensor) -> PromptChunks:
        raise GenerationError("the llama.cpp engine prefills a prompt in one go")

    def score(self, ids: torch.Tensor, keep: int) -> torch.Tensor:
        return self.runtime.score(ids.tolist(), keep)

    def close(self) -> None:
        self.runtime.close()


class LlamaRows:
    """The decoding rows in llama.cpp: each live row is a sequence of the main context, at its own position."""

    def __init__(self, runtime: LlamaRuntime, length: int, rows: int, logits: torch.Tensor) -> None:
        assert runtime.main is not None  # reserve() made it before the prefill
        if rows > runtime.main[2]:
            raise GenerationError(f"llama.cpp's context holds {runtime.main[2]} rows, not {rows}: report this")
        memory = runtime.L.llama_get_memory(runtime.main[0])
        for sequence in range(1, rows):  # every row gets the prompt's cache (the cells are shared)
            runtime.L.llama_memory_seq_cp(memory, 0, sequence, -1, -1)
        self.runtime, self.sequences, self.positions = runtime, list(range(rows)), [length] * rows
        self._logits = logits.expand(rows, -1)

    @property
    def logits(self) -> torch.Tensor:
        return self._logits

    @property
    def rows(self) -> int:
        return len(self.sequences)

    @property
    def width(self) -> int:
        return max(self.positions, default=0)

    def join(self, other: RowBatch) -> None:
        raise RuntimeError("the llama.cpp engine decodes one request at a time: add it to an empty batch")

    def select(self, index: torch.Tensor, pad_to: int) -> None:
        """Keep these rows; a row that leaves gives its sequence's cells back. (No padding: llama.cpp's rows are
        batch-invariant.)"""
        keep = index.tolist()
        runtime = self.runtime
        gone = set(range(len(self.sequences))) - set(keep)
        with runtime.lock:
            assert runtime.main is not None  # the rows live in it
            memory = runtime.L.llama_get_memory(runtime.main[0])
            for row in gone:
                runtime.L.llama_memory_seq_rm(memory, self.sequences[row], -1, -1)
        self.sequences = [self.sequences[i] for i in keep]
        self.positions = [self.positions[i] for i in keep]
        self._logits = self._logits.index_select(0, index)

    def step(self, tokens: torch.Tensor) -> None:
        """Each row's token at its position, in one llama_decode; the next-token logits [n, V]."""
        runtime = self.runtime
        with runtime.lock:
            assert runtime.main is not None  # the rows live in it
            runtime.decode(runtime.main[0], tokens.tolist(), self.positions, self.sequences, [1] * len(self.sequences))
            self._logits = runtime._logits(runtime.main[0], len(self.sequences))
        self.positions = [p + 1 for p in self.positions]


