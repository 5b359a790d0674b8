"""The sampler's share of a batched decode step: sampler + statistics against the model's forward, one run.

    python benchmarks/sampler_share.py [--model smollm2] [--iters 60] [--threads N]

Each iteration times one batched forward [8, 1] with the KV cache, then one sampler step (the chain,
the draw, the statistics and their host transfer) on those logits for (a) the benchmark presets and
(b) configs that switch on every new stage (DRY, XTC, top-n-sigma, Mirostat, dynamic temperature,
epsilon/eta, logit bias, banned strings, the penalty window, a custom order). Interleaving keeps both
under the same machine load; the minimum is reported beside the median because a shared machine adds
spikes. share = sampler / (forward + sampler).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from decodelab.engine import DecodingConfig
from decodelab.engine.experiments.benchmark import BENCH_CONFIGS
from decodelab.engine.backends.loading import ModelSpec, load_model
from decodelab.engine.sampling import Sampler, step_statistics
from decodelab.engine.sampling.trace import StageTrace

ALL_ON = [
    DecodingConfig(name="greedy-dry", dry_multiplier=0.8, logit_bias={"50": -2.0}, banned_strings=(" the man",)),
    DecodingConfig(name="nsigma", do_sample=True, temperature=1.2, top_n_sigma=1.0, seed=1),
    DecodingConfig(name="xtc", do_sample=True, xtc_probability=0.5, xtc_threshold=0.1, min_p=0.02, seed=2),
    DecodingConfig(name="miro2", do_sample=True, mirostat=2, seed=3),
    DecodingConfig(name="miro1", do_sample=True, mirostat=1, seed=4),
    DecodingConfig(name="dyn", do_sample=True, dynatemp_range=0.5, epsilon_cutoff=3e-4, eta_cutoff=1e-3, seed=5),
    DecodingConfig(name="window", do_sample=True, temperature=0.8, repetition_penalty=1.2,
                   repetition_penalty_last_n=64, top_p=0.9, seed=6),
    DecodingConfig(name="order", do_sample=True, sampler_order=("top_k", "temperature"), top_k=40,
                   temperature=1.3, dry_multiplier=0.5, seed=7),
]


def sampler_step(configs, vocab, tokenizer, steps: int, prompt_len: int = 48, trace: bool = False):
    """A function running one sampler step on given logits, with its own settings and state (trace: with the
    stage trace and its host transfer, as run --stages and the TUI's inspector record it)."""
    sampler = Sampler(configs, [c.seed or 0 for c in configs], vocab, "cpu", tokenizer=tokenizer,
                      prompts=torch.randint(0, vocab, (prompt_len,)), max_new=steps + 4, eos_ids=torch.tensor([0]))
    counter = [0]

    def run(logits):
        tracer = StageTrace(logits) if trace else None
        processed = sampler.process(logits, counter[0], tracer)
        tokens = sampler.pick(processed, counter[0])
        step_statistics(logits, processed, tokens, 10, sampler.named).cpu()
        if tracer is not None:
            tracer.pack(tokens, tracer.top_ids(10)).cpu()
        sampler.accept(tokens, processed)
        counter[0] += 1

    return run


@torch.inference_mode()
def interleaved(loaded, runners: dict, iters: int, skip: int) -> dict[str, list[float]]:
    """Milliseconds per iteration: one batched forward [8, 1] with the KV cache ("forward"), then each runner on
    its logits, so all see the same machine load; the first `skip` iterations (warm-up) are dropped."""
    ids = loaded.tokenizer("The for statement is used to iterate over", return_tensors="pt")["input_ids"]
    cache = loaded.model(input_ids=ids, use_cache=True).past_key_values
    cache.batch_repeat_interleave(8)
    tokens = torch.full((8, 1), 5, dtype=torch.long)
    times: dict[str, list[float]] = {"forward": [], **{name: [] for name in runners}}
    for _ in range(iters):
        start = time.perf_counter()
        logits = loaded.model(input_ids=tokens, past_key_values=cache, use_cache=True).logits[:, -1, :].float()
        times["forward"].append(time.perf_counter() - start)
        for name, run in runners.items():
            start = time.perf_counter()
            run(logits)
            times[name].append(time.perf_counter() - start)
    return {name: [t * 1000 for t in values[skip:]] for name, values in times.items()}


def measure(loaded, iters: int) -> dict[str, list[float]]:
    vocab = loaded.model.config.vocab_size
    runners = {"presets": sampler_step(BENCH_CONFIGS, vocab, loaded.tokenizer, iters),
               "all new samplers": sampler_step(ALL_ON, vocab, loaded.tokenizer, iters)}
    return interleaved(loaded, runners, iters, skip=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model(ModelSpec(args.model))
    times = measure(loaded, args.iters)
    print(f"model {loaded.describe()}; vocab {loaded.model.config.vocab_size}; torch threads "
          f"{torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f}")
    for stat in (min, statistics.median):
        forward = stat(times["forward"])
        parts = [f"{name} {stat(v):.1f} ms = {stat(v) / (forward + stat(v)):.1%}"
                 for name, v in times.items() if name != "forward"]
        print(f"{stat.__name__:>6}: forward [8,1] {forward:.1f} ms | " + " | ".join(parts))


if __name__ == "__main__":
    main()
