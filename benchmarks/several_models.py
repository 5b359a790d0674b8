"""What several models in one run cost against one: the same 6 greedy panes on one model, then each on its own.

    python benchmarks/several_models.py [--tokens 32] [--threads 1]

(a) 6 panes on SmolLM2 float32: one batch on one model.
(b) 6 panes, one per model: SmolLM2 at float32, bfloat16, bitsandbytes 8-bit and 4-bit, SmolLM2's Q4_1 GGUF on the
    llama.cpp engine, and the demo model; each model's batch on a thread of its own (what `run` and the TUI do).
(c) the same 6 one model after another.
Also each load's time and the process's resident memory once every model is in. Prints times and ratios
measured in one run; the machine's load at the start and the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import statistics
import time

import torch

MODELS = ["smollm2", "smollm2,dtype=bfloat16", "smollm2,quantization=8bit", "smollm2,quantization=4bit",
          "smollm2,engine=llama.cpp", "demo"]
PROMPT = "The for statement is used to iterate over the elements of a sequence"


def rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from decodelab.engine import DecodingConfig, generate_many
    from decodelab.engine.backends.pool import ModelPool, spec_from_text, spec_label
    from decodelab.engine.session import Job, Session

    torch.set_num_threads(args.threads)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start; "
          f"{args.threads} torch thread(s); 6 greedy panes x {args.tokens} tokens; median of {args.repeats}")
    config = DecodingConfig(max_new_tokens=args.tokens, min_new_tokens=args.tokens)
    pool = ModelPool()
    before = rss_mb()
    backends = []
    for text in MODELS:
        spec = spec_from_text(text)
        spec = dataclasses.replace(spec, chat=False)
        start = time.perf_counter()
        backends.append(pool.get(spec))
        print(f"  loaded {spec_label(spec):<22} in {time.perf_counter() - start:5.1f} s, "
              f"{backends[-1].memory_bytes / 2**20:6.0f} MiB of weights", flush=True)
    print(f"resident memory: {before:.0f} MB before loading, {rss_mb():.0f} MB with all six in")

    def timed(fn):
        fn()  # warm-up
        runs = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - start)
        return statistics.median(runs)

    one = timed(lambda: generate_many(backends[0], PROMPT, [config.replace(name=f"p{i}") for i in range(6)]))
    print(f"(a) 6 panes on one model (float32)      {one:6.2f} s", flush=True)
    apart = {}
    for backend in backends:
        apart[spec_label(backend.spec)] = timed(lambda b=backend: generate_many(b, PROMPT, [config]))
        print(f"    1 pane on {spec_label(backend.spec):<22}  {apart[spec_label(backend.spec)]:6.2f} s", flush=True)
    session = Session(pool)
    together = timed(lambda: session.run([Job(b, PROMPT, [config]) for b in backends]))
    sequential = sum(apart.values())
    print(f"(b) 6 panes on 6 models, side by side   {together:6.2f} s")
    print(f"(c) the same one model after another    {sequential:6.2f} s (sum of the single-pane times)")
    print(f"\nratios: (b)/(a) = {together / one:.2f}; (c)/(b) = {sequential / together:.2f}; "
          f"slowest model alone / (b) = {max(apart.values()) / together:.2f}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
