"""llama-cpp-python in-process on a GGUF file: the peer that tests and the benchmark compare against.

llama.cpp's CPU "extra buffer types" (weights repacked for AMX / AVX-512 kernels) crash in
llama_decode on Q4_1 files with multi-token batches on some CPUs (seen with llama-cpp-python 0.3.36 on
an AMX machine: SmolLM2's Q4_1 segfaults, an F32 file does not), and gave wrong tokens one token at a
time. open_gguf turns them off; the plain CPU kernels are what every CPU runs.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Container

if TYPE_CHECKING:
    import llama_cpp
    import numpy as np
    from numpy.typing import NDArray

    from ..config import DecodingConfig


def open_gguf(path: Path | str, n_ctx: int = 1024, logits_all: bool = False, n_threads: int | None = None,
              f32_kv: bool = True, flash_attn: bool = False) -> llama_cpp.Llama:
    """A llama_cpp.Llama on `path` with the extra buffer types off (and an F32 KV cache by default). flash_attn:
    as llama-server and decodelab's llama.cpp engine run on a CPU (llama.cpp's "auto" turns it on there)."""
    import llama_cpp
    import llama_cpp.llama as llama_module

    original = llama_cpp.llama_model_default_params

    def plain_buffers() -> llama_cpp.llama_model_params:
        params = original()
        with contextlib.suppress(AttributeError):
            params.use_extra_bufts = False
        return params

    kwargs: dict[str, Any]
    kwargs = dict(model_path=str(path), n_ctx=n_ctx, logits_all=logits_all, verbose=False, seed=0,
                  flash_attn=flash_attn)
    if n_threads:
        kwargs.update(n_threads=n_threads, n_threads_batch=n_threads)
    if f32_kv:
        kwargs.update(type_k=0, type_v=0)  # GGML_TYPE_F32
    llama_module.llama_cpp.llama_model_default_params = plain_buffers
    try:
        return llama_cpp.Llama(**kwargs)
    finally:
        llama_module.llama_cpp.llama_model_default_params = original


def last_logits(llm: llama_cpp.Llama) -> NDArray[np.float64]:
    """The logits [V] (numpy float64) after the last evaluated token."""
    import numpy as np

    pointer = llm._ctx.get_logits_ith(-1)
    return np.ctypeslib.as_array(pointer, shape=(llm.n_vocab(),)).astype(np.float64)


def greedy(llm: llama_cpp.Llama, prompt_ids: list[int], n: int,
           stop: Container[int] = frozenset()) -> tuple[list[int], list[float]]:
    """Greedy continuation of prompt_ids: the token ids and each chosen token's logprob."""
    import numpy as np

    llm.reset()
    llm.eval(list(prompt_ids))
    ids, logprobs = [], []
    for _ in range(n):
        logits = last_logits(llm)
        token = int(logits.argmax())
        top = logits.max()
        logprobs.append(float(logits[token] - top - np.log(np.exp(logits - top).sum())))
        ids.append(token)
        if token in stop:
            break
        llm.eval([token])
    return ids, logprobs


def completion_kwargs(config: DecodingConfig, eos: int | None) -> dict[str, Any]:
    """create_completion arguments for a DecodingConfig, with llama.cpp's non-neutral defaults overridden
    (top-k 40, top-p 0.95, min-p 0.05, repeat penalty 1.1). No-repeat-ngram has no llama.cpp equivalent.
    When config.min_new_tokens is set, EOS is banned for the whole completion (the benchmark's fixed length)."""
    kwargs: dict[str, Any]
    kwargs = dict(max_tokens=config.max_new_tokens, temperature=config.temperature if config.samples else 0.0,
                  top_k=config.top_k if config.samples else 1, top_p=config.top_p if config.samples else 1.0,
                  min_p=config.min_p if config.samples else 0.0, typical_p=config.typical_p if config.samples else 1.0,
                  repeat_penalty=config.repetition_penalty, frequency_penalty=config.frequency_penalty,
                  presence_penalty=config.presence_penalty, seed=config.seed if config.seed is not None else 0)
    if config.min_new_tokens and eos is not None:
        kwargs["logit_bias"] = {eos: -1e9}
    return kwargs
