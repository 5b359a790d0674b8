"""The batched-decoding benchmark: one config alone vs 8 configs batched vs 8 sequential HF generate calls.

All figures come from one run on one machine, so only their ratios are meant to travel:
    b/a  batched 8 configs vs one config alone   (goal: <= 1.3 on GPU, <= 2.0 on CPU)
    c/b  8 sequential `generate` calls vs batched (goal: >= 5 on GPU, >= 3 on CPU)
plus the sampler-and-statistics time per step and its share of a batched step.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch

from ..config import DecodingConfig

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

    from ..backends.loading import LoadedModel

# Model shapes with random weights (nothing is downloaded). "cpu-40m" is the CPU goal's ~30-50M model.
SHAPES: dict[str, dict[str, Any]] = {
    "cpu-40m": dict(hidden_size=512, intermediate_size=1408, num_hidden_layers=6, num_attention_heads=8,
                    num_key_value_heads=8, vocab_size=32000, tie_word_embeddings=True),
    "llama-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                     num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True),
    "qwen-1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                      num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "llama-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False),
}

BENCH_CONFIGS = [
    DecodingConfig(name="greedy"),
    DecodingConfig(name="balanced", do_sample=True, temperature=0.7, top_p=0.9, seed=1),
    DecodingConfig(name="creative", do_sample=True, temperature=1.1, top_p=0.98, top_k=100, seed=2),
    DecodingConfig(name="precise", do_sample=True, temperature=0.5, min_p=0.1, seed=3),
    DecodingConfig(name="penalties", do_sample=True, temperature=0.8, repetition_penalty=1.15,
                   frequency_penalty=0.3, presence_penalty=0.3, seed=4),
    DecodingConfig(name="typical", do_sample=True, typical_p=0.9, seed=5),
    DecodingConfig(name="top-k", do_sample=True, top_k=40, seed=6),
    DecodingConfig(name="no-repeat", do_sample=True, temperature=0.9, no_repeat_ngram_size=3, seed=7),
]


def synthetic_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """A word-level tokenizer with exactly vocab_size tokens ("w0", "w1", ...), for random-weight models."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(vocab_size)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="w1"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="w0", pad_token="w0", bos_token="w0")


def random_model(shape: str, device: str = "auto", dtype: str = "auto") -> LoadedModel:
    """A LoadedModel of the given shape with seeded random weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from ..backends.loading import LoadedModel, ModelSpec, resolve_device, resolve_dtype

    spec = ModelSpec(path=f"random:{shape}", device=device, dtype=dtype)
    dev = resolve_device(spec)
    torch_dtype = resolve_dtype(dtype, dev)
    config = LlamaConfig(max_position_embeddings=4096, bos_token_id=0, eos_token_id=0, pad_token_id=0, **SHAPES[shape])
    torch.manual_seed(0)
    with torch.device(dev):
        # transformers wraps Module.to with functools.wraps, whose stub mypy binds to the wrong self
        model = LlamaForCausalLM(config).to(torch_dtype).eval()  # type: ignore[arg-type]
    return LoadedModel(model=model, tokenizer=synthetic_tokenizer(config.vocab_size), spec=spec, device=dev,
                       dtype=torch_dtype, num_parameters=sum(p.numel() for p in model.parameters()),
                       memory_bytes=int(model.get_memory_footprint()), source=shape)


@dataclass
class BenchResult:
    alone_s: float
    alone_unpadded_s: float
    batched_s: float
    sequential_s: float
    sampler_ms: float
    step_ms: float
    sampler_by_vocab: dict[int, float]
    machine: str
    model: str
    new_tokens: int
    peer: dict | None = None
    """llama-cpp-python in-process on the same GGUF: 8 sequential completions, seconds, with/without logprobs."""

    @property
    def b_over_a(self) -> float:
        return self.batched_s / self.alone_s

    @property
    def c_over_b(self) -> float:
        return self.sequential_s / self.batched_s

    def report(self) -> str:
        lines = [
            f"machine: {self.machine}",
            f"model:   {self.model}, {self.new_tokens} new tokens per config",
            f"(a)  one config alone          {self.alone_s * 1000:9.1f} ms"
            f"   (unpadded batch of 1: {self.alone_unpadded_s * 1000:.1f} ms)",
            f"(b)  8 configs batched         {self.batched_s * 1000:9.1f} ms",
            f"(c)  8 sequential HF generate  {self.sequential_s * 1000:9.1f} ms",
            f"b/a = {self.b_over_a:.2f}   (b vs unpadded a: {self.batched_s / self.alone_unpadded_s:.2f})",
            f"c/b = {self.c_over_b:.2f}",
            f"sampler + statistics: {self.sampler_ms:.3f} ms/step = {100 * self.sampler_ms / self.step_ms:.1f}% "
            f"of a batched step ({self.step_ms:.2f} ms)",
            "sampler + statistics for 8 rows by vocabulary: "
            + ", ".join(f"{v:,}: {ms:.3f} ms" for v, ms in self.sampler_by_vocab.items()),
        ]
        if self.peer:
            plain, top10 = self.peer["plain_s"], self.peer["logprobs_s"]
            lines += [
                f"(p)  llama-cpp-python in-process, same GGUF, 8 sequential completions ({self.peer['file']}):",
                f"       without logprobs        {plain * 1000:9.1f} ms   p/b = {plain / self.batched_s:.2f}",
                f"       with logprobs=10        {top10 * 1000:9.1f} ms   p10/b = {top10 / self.batched_s:.2f}",
            ]
        return "\n".join(lines)


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _median_time(fn, repeats: int, device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_sampler(vocab: int, device: str | torch.device, rows: int = 8, repeats: int = 50) -> float:
    """Milliseconds per step for process + pick + statistics (+ the host transfer) on [rows, vocab]."""
    from ..sampling import Sampler, step_statistics

    device = torch.device(device)
    configs = BENCH_CONFIGS[:rows]
    prompt = torch.randint(0, vocab, (64,), device=device)
    sampler = Sampler(configs, [c.seed or 0 for c in configs], vocab, device, prompts=prompt, max_new=repeats + 2,
                      eos_ids=torch.tensor([0], device=device))
    logits = torch.randn(rows, vocab, device=device) * 3

    def one(step: list[int] = [0]) -> None:  # noqa: B006 - a step counter
        processed = sampler.process(logits, step[0])
        tokens = sampler.pick(processed, step[0])
        step_statistics(logits, processed, tokens, 10).cpu()
        sampler.accept(tokens, processed)
        step[0] += 1

    one()
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        one()
    _sync(device)
    return (time.perf_counter() - start) / repeats * 1000


def run_benchmark(loaded: LoadedModel, new_tokens: int = 64, repeats: int = 3, prompt_tokens: int = 32,
                  progress: Callable[[str], object] = print) -> BenchResult:
    from ..session import default_session

    generate_many = default_session().generate
    from ..decoding.hf_generate import hf_generate_kwargs

    if loaded.spec.chat:  # every contender gets the same plain prompt (HF generate and llama.cpp take raw text)
        loaded = dataclasses.replace(loaded, spec=dataclasses.replace(loaded.spec, chat=False))

    prompt = " ".join(f"w{i}" for i in range(5, 5 + prompt_tokens)) if loaded.source in SHAPES else \
        "The for statement is used to iterate over the elements of a sequence"
    configs = [c.replace(max_new_tokens=new_tokens, min_new_tokens=new_tokens) for c in BENCH_CONFIGS]
    alone = configs[1]
    device = loaded.device
    ids = loaded.tokenizer(prompt, return_tensors="pt").to(device)

    progress("timing (a) one config alone ...")
    a = _median_time(lambda: generate_many(loaded, prompt, [alone]), repeats, device)
    a1 = _median_time(lambda: generate_many(loaded, prompt, [alone], batch_invariant=False), repeats, device)
    progress(f"  (a) {a:.2f} s (unpadded {a1:.2f} s); timing (b) 8 configs batched ...")
    b = _median_time(lambda: generate_many(loaded, prompt, configs), repeats, device)
    progress(f"  (b) {b:.2f} s; timing (c) 8 sequential HF generate calls ...")

    def sequential() -> None:
        for config in configs:
            if config.seed is not None:
                torch.manual_seed(config.seed)
            loaded.runner.beam_search(**ids, **hf_generate_kwargs(config, ids["input_ids"].shape[1]),
                                      pad_token_id=loaded.tokenizer.pad_token_id)

    c = _median_time(sequential, repeats, device)
    progress(f"  (c) {c:.2f} s; timing the sampler ...")
    vocab = loaded.runner.vocab_size
    sampler_ms = time_sampler(vocab, device)
    by_vocab = {v: time_sampler(v, device) for v in sorted({32000, vocab, 151936})}
    step_ms = b / new_tokens * 1000
    peer = None
    if loaded.extra.get("gguf"):
        progress("timing (p) llama-cpp-python on the same GGUF, without and with logprobs=10 ...")
        peer = time_llamacpp(loaded.extra["gguf"], prompt, configs, repeats)
    return BenchResult(alone_s=a, alone_unpadded_s=a1, batched_s=b, sequential_s=c, sampler_ms=sampler_ms,
                       step_ms=step_ms, sampler_by_vocab=by_vocab, machine=describe_machine(device),
                       model=loaded.describe(), new_tokens=new_tokens, peer=peer)


def time_llamacpp(path: str, prompt: str, configs: Sequence[DecodingConfig], repeats: int) -> dict | None:
    """Seconds for 8 sequential llama-cpp-python completions of the configs, without and with top-10 logprobs."""
    try:
        from .peers import completion_kwargs, open_gguf
    except ImportError:
        return None
    llm = open_gguf(path, n_ctx=1024, logits_all=True, n_threads=os.cpu_count())
    eos = llm.token_eos()

    tokens = []

    def sequential(logprobs: int | None) -> None:
        for config in configs:
            out = llm.create_completion(prompt, logprobs=logprobs, **completion_kwargs(config, eos))
            assert isinstance(out, dict)  # not streamed: one response
            tokens.append(out["usage"]["completion_tokens"])

    llm.create_completion(prompt, max_tokens=4)  # warm-up
    timings = {}
    for name, logprobs in (("plain_s", None), ("logprobs_s", 10)):
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            sequential(logprobs)
            runs.append(time.perf_counter() - start)
        timings[name] = statistics.median(runs)
    return {**timings, "file": Path(path).name, "tokens_per_completion": sorted(set(tokens))}


def describe_machine(device: str | torch.device) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"

    return (f"CPU {platform.machine()} x{os.cpu_count()} ({platform.processor() or 'unknown'}), torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads (--threads), load average {os.getloadavg()[0]:.2f}")
