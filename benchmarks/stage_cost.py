"""What each sampler stage costs per row, what tracing the chain costs, and DRY on 1 of 8 rows in a whole run.

    python benchmarks/stage_cost.py [--model smollm2] [--iters 20] [--threads N] [--tokens 64]

1. Per stage, on real logits (one batched forward [8, 1] per iteration, interleaved so every variant sees
   the same machine load): one sampler step (chain, draw, statistics, host transfer) for 8 sampling rows
   without the stage, with it on 1 row of 8, and with it on all 8. A stage that costs its row's share
   adds about 1/8 of the all-rows cost when one row uses it ("1-of-8 share" near 12.5%); one that runs
   for the whole batch adds about as much as the all-rows case (share near 100%).
2. Tracing (run --stages, the inspector's chain): the benchmark presets' sampler step with and without
   the StageTrace, as a share of a whole step (forward + sampler).
3. The issue's case: 8 sampling rows x 64 tokens through generate_many, with dry_multiplier=0.8 on one
   row and on none, and DRY on one row run over the whole batch (as before issue 20).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from decodelab.engine import DecodingConfig, generate_many  # noqa: E402
from decodelab.engine.backends.loading import ModelSpec, load_model  # noqa: E402
from decodelab.engine.experiments.benchmark import BENCH_CONFIGS  # noqa: E402
from sampler_share import interleaved, sampler_step  # noqa: E402 - benchmarks/, beside this file

BASE = dict(do_sample=True, temperature=0.8)
STAGES = {
    "penalties": dict(repetition_penalty=1.2, frequency_penalty=0.3),
    "dry": dict(dry_multiplier=0.8),
    "no_repeat_ngram": dict(no_repeat_ngram_size=3),
    "dynatemp": dict(dynatemp_range=0.5),
    "smoothing": dict(smoothing_factor=0.3),
    "top_h": dict(top_h=0.5),
    "top_n_sigma": dict(top_n_sigma=1.0),
    "top_k": dict(top_k=40),
    "top_p": dict(top_p=0.9),
    "min_p": dict(min_p=0.05),
    "typical_p": dict(typical_p=0.9),
    "epsilon_cutoff": dict(epsilon_cutoff=3e-4),
    "eta_cutoff": dict(eta_cutoff=1e-3),
    "tfs": dict(tfs=0.95),
    "top_a": dict(top_a=0.2),
    "xtc": dict(xtc_probability=0.5, xtc_threshold=0.1),
    "mirostat": dict(mirostat=2),
    "adaptive_p": dict(adaptive_target=0.3),
    "logit_bias": dict(logit_bias={"50": -2.0}),
    "banned_strings": dict(banned_strings=(" the man",)),
    "logprob_tokens": dict(logprob_tokens=(" the", " a")),
}


def configs_for(fields: dict, on: int) -> list[DecodingConfig]:
    return [DecodingConfig(name=f"r{i}", seed=i, **BASE, **(fields if i < on else {})) for i in range(8)]


def measure(loaded, iters: int, prompt_len: int) -> dict[str, list[float]]:
    vocab, tok = loaded.model.config.vocab_size, loaded.tokenizer
    runners = {"base": sampler_step(configs_for({}, 0), vocab, tok, iters, prompt_len),
               "presets": sampler_step(BENCH_CONFIGS, vocab, tok, iters, prompt_len),
               "presets traced": sampler_step(BENCH_CONFIGS, vocab, tok, iters, prompt_len, trace=True)}
    for name, fields in STAGES.items():
        runners[f"{name} 1/8"] = sampler_step(configs_for(fields, 1), vocab, tok, iters, prompt_len)
        runners[f"{name} 8/8"] = sampler_step(configs_for(fields, 8), vocab, tok, iters, prompt_len)
    return interleaved(loaded, runners, iters, skip=2)


def whole_run(loaded, tokens: int) -> tuple[float, float]:
    """8 rows x tokens: no DRY, then DRY on one row (each stage runs on the rows that use it only)."""
    prompt = "Write a short story about a robot who learns to paint."
    out = []
    for configs in (configs_for({}, 0), configs_for({"dry_multiplier": 0.8}, 1)):
        configs = [c.replace(max_new_tokens=tokens, min_new_tokens=tokens) for c in configs]
        start = time.perf_counter()
        generate_many(loaded, prompt, configs)
        out.append(time.perf_counter() - start)
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--prompt-len", type=int, default=256, help="history length the stateful stages scan")
    parser.add_argument("--tokens", type=int, default=64, help="tokens per row in the whole-run DRY case")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model(ModelSpec(args.model))
    print(f"model {loaded.describe()}; vocab {loaded.model.config.vocab_size}; torch threads "
          f"{torch.get_num_threads()}; load average at start {os.getloadavg()[0]:.2f}")
    times = measure(loaded, args.iters, args.prompt_len)
    med = {name: statistics.median(v) for name, v in times.items()}
    forward, base = med["forward"], med["base"]
    print(f"median ms: forward [8,1] {forward:.1f} · sampler step, 8 plain sampling rows {base:.1f}")
    print(f"{'stage':<16}{'+1 of 8 (ms)':>14}{'+8 of 8 (ms)':>14}{'1-of-8 share':>14}")
    for name in STAGES:
        one, all_ = med[f"{name} 1/8"] - base, med[f"{name} 8/8"] - base
        share = f"{one / all_:.0%}" if all_ > 0.05 else "-"
        print(f"{name:<16}{one:>14.2f}{all_:>14.2f}{share:>14}")
    plain, traced = med["presets"], med["presets traced"]
    print(f"tracing the chain (benchmark presets): sampler {plain:.1f} -> {traced:.1f} ms; "
          f"+{(traced - plain) / (forward + plain):.1%} of a whole step")
    no_dry, one_dry = whole_run(loaded, args.tokens)
    print(f"whole run, 8 rows x {args.tokens} tokens: no DRY {no_dry:.2f} s · DRY on 1 row {one_dry:.2f} s "
          f"({one_dry / no_dry:.2f}x); load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
