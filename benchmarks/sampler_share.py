"""The sampler's share of a batched decode step: sampler + statistics vs the whole step, in one run.

    python benchmarks/sampler_share.py [--model smollm2] [--steps 32] [--all-samplers]

Times (1) 8 configs decoding together through generate_many (per-step wall time) and (2) the sampler
chain + pick + statistics + host transfer alone on [8, vocab] logits with the same configs,
alternating the two so both see the same machine load. --all-samplers uses configs that switch on
every stage (DRY, XTC, top-n-sigma, Mirostat, dynamic temperature, epsilon/eta, logit bias, ...).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from engine import DecodingConfig, generate_many
from engine.benchmark import BENCH_CONFIGS
from engine.loading import ModelSpec, load_model
from engine.sampling import RowSettings, RowState, pick, process, step_statistics

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


def sampler_ms(configs, vocab, tokenizer, prompt_len=48, steps=20) -> float:
    settings = RowSettings.build(configs, [c.seed or 0 for c in configs], vocab, torch.device("cpu"), tokenizer)
    state = RowState(settings, torch.randint(0, vocab, (prompt_len,)), vocab, steps + 2, torch.tensor([0]))
    logits = torch.randn(len(configs), vocab) * 3
    times = []
    for step in range(steps):
        start = time.perf_counter()
        processed = process(logits, settings, state, step)
        tokens = pick(processed, settings, step)
        step_statistics(logits, processed, tokens, 10).cpu()
        state.update(tokens, processed)
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:]) * 1000


def step_ms(loaded, configs, steps) -> float:
    configs = [c.replace(max_new_tokens=steps, min_new_tokens=steps) for c in configs]
    start = time.perf_counter()
    out = generate_many(loaded, "The for statement is used to iterate over", configs)
    total = time.perf_counter() - start
    return out[0].timings.decode_s / steps * 1000, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--all-samplers", action="store_true")
    args = parser.parse_args()
    loaded = load_model(ModelSpec(args.model))
    vocab = loaded.model.config.vocab_size
    configs = ALL_ON if args.all_samplers else BENCH_CONFIGS
    steps, samplers = [], []
    for _ in range(args.rounds):
        steps.append(step_ms(loaded, configs, args.steps)[0])
        samplers.append(sampler_ms(configs, vocab, loaded.tokenizer))
    step, sampler = statistics.median(steps), statistics.median(samplers)
    print(f"model {loaded.describe()}; vocab {vocab}; threads {torch.get_num_threads()}; "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"configs: {'all new samplers on' if args.all_samplers else 'the benchmark presets'} ({len(configs)} rows)")
    print(f"batched step {step:.1f} ms (rounds {', '.join(f'{s:.1f}' for s in steps)})")
    print(f"sampler + statistics {sampler:.1f} ms (rounds {', '.join(f'{s:.1f}' for s in samplers)})")
    print(f"share {sampler / step:.1%}")


if __name__ == "__main__":
    main()
