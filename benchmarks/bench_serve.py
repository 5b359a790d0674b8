"""`decodelab serve` under load, in one run, on 127.0.0.1 only:

  1. 8 different prompts sent at once vs the same 8 one after another (non-streaming, fixed lengths);
  2. a short request's latency while a 300-token request streams, vs the short one alone;
  3. the engine alone: engine.decoding.run.generate_prompts over the 8 prompts vs 8 generate_many calls.

    python benchmarks/bench_serve.py [--model demo | --shape cpu-40m] [--tokens 64] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

PROMPTS = ["The for statement", "A function definition defines", "Return the number of items in a container.",
           "The while statement is used for", "Exceptions are raised when", "A class definition creates",
           "The import statement", "Strings are immutable sequences of"]


def torch_inference(fn):
    """torch.inference_mode, imported when called (the module loads before torch threads are set)."""
    def wrapped(*args, **kwargs):
        import torch

        with torch.inference_mode():
            return fn(*args, **kwargs)
    return wrapped


def post(url: str, prompt: str, tokens: int) -> float:
    start = time.perf_counter()
    r = httpx.post(f"{url}/completions", json={"prompt": prompt, "max_tokens": tokens, "min_tokens": tokens,
                                              "temperature": 0}, timeout=600)
    r.raise_for_status()
    return time.perf_counter() - start


def sequential(url: str, tokens: int) -> float:
    start = time.perf_counter()
    for p in PROMPTS:
        post(url, p, tokens)
    return time.perf_counter() - start


def concurrent(url: str, tokens: int) -> float:
    start = time.perf_counter()
    threads = [threading.Thread(target=post, args=(url, p, tokens)) for p in PROMPTS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def short_during_long(url: str, long_tokens: int = 300, short_tokens: int = 8) -> tuple[float, float]:
    """(the short request's latency, the long request's total time)."""
    started, result = threading.Event(), {}

    def long() -> None:
        begin = time.perf_counter()
        body = {"prompt": PROMPTS[0], "max_tokens": long_tokens, "min_tokens": long_tokens, "stream": True}
        with httpx.stream("POST", f"{url}/completions", json=body, timeout=600) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    started.set()
        result["long"] = time.perf_counter() - begin

    thread = threading.Thread(target=long)
    thread.start()
    started.wait(60)
    short = post(url, PROMPTS[1], short_tokens)
    thread.join()
    return short, result["long"]


def engine_only(loaded, tokens: int) -> tuple[float, float]:
    from decodelab.engine import DecodingConfig, generate_many
    from decodelab.engine.decoding.run import generate_prompts

    config = DecodingConfig(max_new_tokens=tokens, min_new_tokens=tokens)
    start = time.perf_counter()
    generate_prompts(loaded, [(p, [config]) for p in PROMPTS])
    together = time.perf_counter() - start
    start = time.perf_counter()
    for p in PROMPTS:
        generate_many(loaded, p, [config])
    return together, time.perf_counter() - start


@torch_inference
def forward_ceiling(loaded, repeats: int = 20) -> tuple[float, float]:
    """Milliseconds of one decode step (a forward with a 40-token cache) for 1 row and for 8 rows: 8 sequential
    requests can be at most 8 x t1 / t8 times slower than 8 together, whatever the server does."""
    import torch

    ids = loaded.tokenizer(" ".join(PROMPTS), return_tensors="pt")["input_ids"][:, :40]
    out = {}
    for rows in (1, 8):
        cache = loaded.model(input_ids=ids, use_cache=True).past_key_values
        if rows > 1:
            cache.batch_repeat_interleave(rows)
        tokens = torch.full((rows, 1), 5, dtype=torch.long)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            loaded.model(input_ids=tokens, past_key_values=cache, use_cache=True)
            times.append(time.perf_counter() - start)
        out[rows] = statistics.median(times[3:]) * 1000
    return out[1], out[8]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--shape", default=None, help="a random-weight shape from engine/benchmark.py instead")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--no-batch-invariant", action="store_true",
                        help="serve without bucket padding (decodelab serve --no-batch-invariant)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from decodelab.engine.backends.loading import ModelSpec, load_model
    from decodelab.server import Server

    print(f"load before: {os.getloadavg()}")
    if args.shape:
        from decodelab.engine.experiments.benchmark import random_model

        loaded = random_model(args.shape, device="cpu")
        PROMPTS[:] = [" ".join(f"w{5 + 7 * i + j}" for j in range(8 + 4 * i)) for i in range(len(PROMPTS))]
    else:
        loaded = load_model(ModelSpec(path=args.model))
    from decodelab.server import Limits

    server = Server(loaded, port=0, limits=Limits(batch_invariant=not args.no_batch_invariant)).start()
    try:
        post(server.url, "warm up", 4)
        seq = [sequential(server.url, args.tokens) for _ in range(args.repeats)]
        conc = [concurrent(server.url, args.tokens) for _ in range(args.repeats)]
        alone = [post(server.url, PROMPTS[1], 8) for _ in range(args.repeats)]
        during = [short_during_long(server.url) for _ in range(args.repeats)]
        eng = [engine_only(loaded, args.tokens) for _ in range(args.repeats)]
    finally:
        server.stop()
    one, eight = forward_ceiling(loaded)
    med = statistics.median
    import torch

    print(f"model {loaded.describe()}; {len(PROMPTS)} prompts x {args.tokens} tokens; medians of {args.repeats}; "
          f"torch threads {torch.get_num_threads()}")
    print(f"decodelab.server: sequential {med(seq):.2f}s  concurrent {med(conc):.2f}s  ratio {med(seq) / med(conc):.2f}x"
          f"  (runs: seq {[round(x, 2) for x in seq]}, conc {[round(x, 2) for x in conc]})")
    print(f"decodelab.server: 8-token request alone {med(alone):.3f}s; while a 300-token request streams "
          f"{med(s for s, _ in during):.3f}s (the long one took {med(l for _, l in during):.2f}s)")
    print(f"decodelab.engine: generate_prompts {med(t for t, _ in eng):.2f}s  8 x generate_many {med(s for _, s in eng):.2f}s"
          f"  ratio {med(s for _, s in eng) / med(t for t, _ in eng):.2f}x")
    print(f"one decode step: 1 row {one:.1f} ms, 8 rows {eight:.1f} ms: 8 rows together can be at most "
          f"{8 * one / eight:.2f}x faster than one after another")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
