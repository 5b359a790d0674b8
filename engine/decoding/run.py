"""generate_many: one prompt under many decoding configs, in one batch, with per-step statistics.

    prefill the prompt once (batch 1) -> replicate its KV cache to every row -> loop:
        forward [N, 1] -> sampling.process (per-row tensors) -> pick tokens -> statistics (one
        host transfer) -> stop checks -> one StepEvent for all rows
Beam configs go through HF generate over the same prompt and are rescored token by token.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Callable, Container, Sequence

import torch

from .caches import prefill
from ..config import DecodingConfig
from .modelcalls import eos_token_ids
from ..results import Completion, GenerationError, PromptError, StepEvent, Timings
from .rows import build_steps, new_tracker
from .stops import finish_stopped
from ..sampling import RowSettings, RowState, pick, process, step_statistics

OnStep = Callable[[StepEvent], None]


def bucket_rows(n: int) -> int:
    """The padded batch size for n rows: 8, 16, 32, 64, then multiples of 64.

    Matrix kernels may round a batch of 1 differently from a batch of 8; decoding at fixed bucket
    sizes makes a seeded config give the same tokens alone and among others.
    """
    size = 8
    while size < n and size < 64:
        size *= 2
    return size if n <= size else -(-n // 64) * 64


def encode_prompt(loaded, prompt: str) -> torch.Tensor:
    """Token ids [T] of the prompt, through the chat template when the model spec asks for it."""
    if not isinstance(prompt, str):
        raise PromptError(f"the prompt must be text, not {type(prompt).__name__}")
    tok = loaded.tokenizer
    if loaded.spec.chat:
        if not getattr(tok, "chat_template", None):
            raise PromptError("this model's tokenizer has no chat template; turn chat mode off")
        text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                       add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False)["input_ids"]
    else:
        ids = tok(prompt)["input_ids"] if prompt else []
    if not ids:
        if tok.bos_token_id is None:
            raise PromptError("the prompt is empty and this model has no BOS token to start from; type a prompt")
        ids = [tok.bos_token_id]
    return torch.tensor(ids, dtype=torch.long, device=loaded.device)


def generate_many(loaded, prompt: str, configs: Sequence[DecodingConfig], *, on_step: OnStep | None = None,
                  cancel: threading.Event | None = None, top_alternatives: int = 10,
                  batch_invariant: bool = True, prefix_ids: Sequence[int] = (),
                  stop_rows: Container[int] = ()) -> list[Completion]:
    """Run prompt under every config on loaded's backend (local or remote); completions in the order of configs.

    stop_rows (local backend): indices into configs that the caller may add to while the run goes on (a set);
    each such row ends as "cancelled" at the next step while the others go on. Beam rows stop with cancel only.

    prefix_ids forces the first generated tokens (a branch: "continue from this token"). They are
    recorded as steps with their real statistics, then decoding goes on from there.
    """
    from ..backends.base import Backend

    if isinstance(loaded, Backend):
        options = {} if loaded.remote else {"batch_invariant": batch_invariant, "stop_rows": stop_rows}
        return loaded.generate(prompt, configs, on_step=on_step, cancel=cancel, top_alternatives=top_alternatives,
                               prefix_ids=prefix_ids, **options)
    return generate_local(loaded, prompt, configs, on_step=on_step, cancel=cancel, top_alternatives=top_alternatives,
                          batch_invariant=batch_invariant, prefix_ids=prefix_ids, stop_rows=stop_rows)


def generate_local(loaded, prompt: str, configs: Sequence[DecodingConfig], *, on_step: OnStep | None = None,
                   cancel: threading.Event | None = None, top_alternatives: int = 10,
                   batch_invariant: bool = True, prefix_ids: Sequence[int] = (),
                   stop_rows: Container[int] = ()) -> list[Completion]:
    """The local engine: prefill once, replicate the cache to every row, one batched decode loop."""
    configs = list(configs)
    if not configs:
        raise PromptError("no decoding configs to run: add at least one")
    if not all(isinstance(c, DecodingConfig) for c in configs):
        raise PromptError("every config must be a DecodingConfig")
    prompt_ids = encode_prompt(loaded, prompt)
    prefix = [int(t) for t in prefix_ids]
    check_context(loaded, prompt_ids.numel(), max(c.max_new_tokens for c in configs))
    if prefix and any(c.num_beams > 1 for c in configs):
        raise PromptError("beam configs cannot be branched from a token; branch a sampling or greedy pane")
    if prefix and len(prefix) >= min(c.max_new_tokens for c in configs):
        raise PromptError(f"the branch point is at token {len(prefix)}, past max_new_tokens: raise max_new_tokens")
    seeds = [c.seed if c.seed is not None else secrets.randbelow(2**32) for c in configs]
    cancel = cancel or threading.Event()
    emit = on_step or (lambda event: None)
    batch_rows = [i for i, c in enumerate(configs) if c.num_beams == 1]
    beam_rows = [i for i, c in enumerate(configs) if c.num_beams > 1]
    results: dict[int, Completion] = {}
    try:
        if batch_rows:
            done = _decode_batch(loaded, prompt_ids, [configs[i] for i in batch_rows], [seeds[i] for i in batch_rows],
                                 batch_rows, emit, cancel, top_alternatives, batch_invariant, prefix, stop_rows)
            results.update(zip(batch_rows, done))
        from .beams import run_beam

        for i in beam_rows:
            results[i] = run_beam(loaded, prompt_ids, configs[i], seeds[i], i, emit, cancel, top_alternatives)
    except torch.OutOfMemoryError:
        _free_memory()
        raise GenerationError(
            f"out of memory running {len(configs)} configs (batch of {bucket_rows(len(batch_rows) or 1)} rows): "
            "run fewer configs, or lower max_new_tokens"
        ) from None
    return [results[i] for i in range(len(configs))]


def check_context(loaded, prompt_len: int, max_new: int) -> None:
    limit = loaded.context_length
    if limit is None:
        return
    if prompt_len >= limit:
        raise PromptError(f"the prompt is {prompt_len} tokens but the model's context is {limit}: shorten it")
    if prompt_len + max_new > limit:
        raise PromptError(
            f"the prompt is {prompt_len} tokens and max_new_tokens is {max_new}, but the model's context is "
            f"{limit}: lower max_new_tokens to {limit - prompt_len} or shorten the prompt"
        )


def _free_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@torch.inference_mode()
def _decode_batch(loaded, prompt_ids, configs, seeds, row_ids, emit, cancel, k, batch_invariant,
                  prefix: list[int], stops: Container[int] = ()) -> list[Completion]:
    model, tokenizer = loaded.model, loaded.tokenizer
    n = len(configs)
    rows = bucket_rows(n) if batch_invariant else n
    eos = eos_token_ids(loaded)
    trackers = [new_tracker(tokenizer, c, s, eos) for c, s in zip(configs, seeds)]
    max_new = max(c.max_new_tokens for c in configs)

    if prefix:  # a branch: the forced tokens are recorded with their statistics under each row's config
        from .beams import replay

        for tracker in trackers:
            replay(loaded, prompt_ids, prefix, tracker, k, eos, 0.0)

    # Prefill once, then give every row its own copy of the cache.
    start = time.perf_counter()
    context = torch.cat([prompt_ids, prompt_ids.new_tensor(prefix)]) if prefix else prompt_ids
    out, cache = prefill(model, context, rows)  # engine/cache.py: every cache kind gets copied to every row
    logits = out.logits[:, -1, :].float().expand(rows, -1)
    vocab = logits.shape[-1]
    k = min(max(k, 0), vocab)
    _sync(loaded.device)
    prefill_s = time.perf_counter() - start

    settings = RowSettings.build(list(configs) + [None] * (rows - n), seeds + [0] * (rows - n), vocab, loaded.device,
                                 tokenizer)
    eos_t = torch.tensor(eos, dtype=torch.long, device=loaded.device) if eos else None
    state = RowState(settings, prompt_ids, vocab, max_new, eos_t)
    for token in prefix:  # the forced tokens count as generated for the penalties
        state.update(torch.full((rows,), token, dtype=torch.long, device=loaded.device))
    decode_start = time.perf_counter()
    for step in range(len(prefix), max_new):
        stopped = finish_stopped(trackers, row_ids, stops, step, time.perf_counter() - decode_start)  # "stop this pane"
        if stopped is not None:
            emit(stopped)
        if cancel.is_set() or all(t.finished for t in trackers):
            break
        processed = process(logits, settings, state, step)  # the sampler chain (engine/sampling/chain.py)
        tokens = pick(processed, settings, step)  # argmax, or the row's own seeded draw
        stats = step_statistics(logits, processed, tokens, k).cpu()  # the step's one host transfer
        state.update(tokens, processed)  # history, penalty counts, Mirostat's mu
        now = time.perf_counter() - decode_start
        event = build_steps(trackers, stats.tolist()[:n], k, tokenizer, step, now, row_ids)
        emit(event)
        if all(t.finished for t in trackers):
            break
        logits = cache.step(tokens)  # one forward, all rows
    decode_s = time.perf_counter() - decode_start
    unfinished = {row_ids[i]: t.finish("cancelled" if cancel.is_set() else "max_new_tokens", decode_s)
                  for i, t in enumerate(trackers) if not t.finished}
    if unfinished:
        emit(StepEvent(step=-1, tokens={}, finished=unfinished))
    return [t.completion(prefill_s, decode_s, prompt_ids.numel()) for t in trackers]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


__all__ = ["Completion", "GenerationError", "StepEvent", "Timings", "bucket_rows", "encode_prompt", "generate_local", "generate_many"]
