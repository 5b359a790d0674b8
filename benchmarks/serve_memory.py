"""`decodelab serve`'s resident memory under a long mixed load, and after a provoked failure, in one run.

Each phase starts its own `decodelab serve` process on 127.0.0.1 and reads its memory from /proc
(VmRSS now, VmHWM the peak since it started):

  1. mixed: N requests (default 500) from 24 client threads: short, 300-token and 1,500-token prompts,
     completions and chat, n up to 3, streaming or not, logprobs, a spread of sampler settings, clients
     that hang up early and bad requests. Start (after a warm-up), peak, and end (after 10 s idle).
  2. failure: the key/value-cache budget off and the process's address space capped at what it holds
     plus --cap-gb: one 3,000-token prompt sent beside 24 short ones, then 32 short requests at once
     (the server's full capacity after the failure).
  3. the same as 2 with --kv-budget-gb set below the cap: the long prompt waits for room instead.

    python benchmarks/serve_memory.py [--model smollm2] [--requests 500] [--cap-gb 1.5] [--budget-gb 0.6]
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures as futures
import json
import os
import random
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

SENTENCE = "The quick brown fox jumps over the lazy dog while the cat watches from the warm windowsill. "
SHORT = ["The for statement", "Write a haiku about rain.", "List three prime numbers.", "Once upon a time",
         "Explain recursion in one sentence.", "The capital of France is"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory(pid: int) -> dict[str, float]:
    """VmRSS, VmHWM (peak resident) and VmSize of a process, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "VmSize"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


class Served:
    """A `decodelab serve` process, started and waited for."""

    def __init__(self, model: str, *extra: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        exe = Path(sys.executable).with_name("decodelab")
        self.proc = subprocess.Popen([str(exe), "serve", "--model", model, "--port", str(self.port),
                                      "--max-queue", "256", *extra], stdout=subprocess.DEVNULL,
                                     stderr=open(f"/tmp/serve_memory_{self.port}.log", "w"))
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.5)
        raise SystemExit(f"the server did not start: see /tmp/serve_memory_{self.port}.log")

    def memory(self) -> dict[str, float]:
        return memory(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def ask(url: str, body: dict, chat: bool = False, give_up: float | None = None) -> str:
    """One request; the outcome as a short label (the status code, or 'gave up' / the error's type)."""
    path = "/chat/completions" if chat else "/completions"
    timeout = httpx.Timeout(600, read=give_up) if give_up else 600
    try:
        if body.get("stream"):
            with httpx.stream("POST", url + path, json=body, timeout=timeout) as r:
                for _ in r.iter_lines():
                    pass
                return str(r.status_code)
        return str(httpx.post(url + path, json=body, timeout=timeout).status_code)
    except httpx.ReadTimeout:
        return "gave up"
    except httpx.HTTPError as exc:
        return type(exc).__name__


def mixed_request(rng: random.Random) -> tuple[dict, bool, float | None]:
    roll = rng.random()
    prompt = (rng.choice(SHORT) if roll < 0.7 else SENTENCE * (15 if roll < 0.95 else 75))
    body = {"max_tokens": rng.randint(8, 48), "seed": rng.randint(0, 10**6),
            "temperature": rng.choice([0, 0.7, 1.0, 1.3])}
    extra = rng.choice([{}, {"top_p": 0.9}, {"top_k": 40, "min_p": 0.05}, {"repetition_penalty": 1.2},
                        {"dry_multiplier": 0.8}, {"xtc_probability": 0.5, "xtc_threshold": 0.1},
                        {"frequency_penalty": 0.5}, {"mirostat": 2}, {"typical_p": 0.9}])
    body |= extra
    if rng.random() < 0.3:
        body["n"] = rng.randint(2, 3)
    if rng.random() < 0.4:
        body["stream"] = True
    chat = rng.random() < 0.5
    if chat:
        body["messages"] = [{"role": "user", "content": prompt}]
        if rng.random() < 0.3:
            body |= {"logprobs": True, "top_logprobs": 5}
    else:
        body["prompt"] = prompt
        if rng.random() < 0.3:
            body["logprobs"] = 5
    if rng.random() < 0.05:
        body["temperature"] = -1  # a bad request: 400
    give_up = 0.3 if rng.random() < 0.05 else None
    return body, chat, give_up


def run_all(url: str, jobs: list[tuple[dict, bool, float | None]], threads: int, served=None) -> collections.Counter:
    """Every job from `threads` client threads; with `served`, a line every 50 answers (memory so far)."""
    outcomes = collections.Counter()
    with futures.ThreadPoolExecutor(threads) as pool:
        for i, outcome in enumerate(pool.map(lambda job: ask(url, *job), jobs), 1):
            outcomes[outcome] += 1
            if served is not None and i % 50 == 0:
                now = served.memory()
                print(f"   {i} answered: resident {now['VmRSS']:.0f} MB, peak so far {now['VmHWM']:.0f} MB",
                      flush=True)
    return outcomes


def sampled_peak(served: Served, stop: threading.Event, out: list) -> None:
    while not stop.is_set():
        out.append(served.memory()["VmRSS"])
        stop.wait(0.2)


def mixed(model: str, requests: int, budget: str) -> None:
    served = Served(model, "--kv-budget-gb", budget)
    try:
        run_all(served.url, [({"prompt": p, "max_tokens": 8}, False, None) for p in SHORT], 6)
        start = served.memory()
        print(f"   start (after a warm-up): resident {start['VmRSS']:.0f} MB", flush=True)
        rng = random.Random(0)
        jobs = [mixed_request(rng) for _ in range(requests)]
        stop, samples = threading.Event(), []
        sampler = threading.Thread(target=sampled_peak, args=(served, stop, samples))
        sampler.start()
        began = time.perf_counter()
        outcomes = run_all(served.url, jobs, 24, served)
        took = time.perf_counter() - began
        stop.set()
        sampler.join()
        time.sleep(10)
        end = served.memory()
        print(f"1. mixed (--kv-budget-gb {budget}): {requests} requests in {took:.0f} s, outcomes {dict(outcomes)}")
        print(f"   resident MB: start {start['VmRSS']:.0f}, peak {end['VmHWM']:.0f} (sampled {max(samples):.0f}), "
              f"end {end['VmRSS']:.0f} after 10 s idle")
    finally:
        served.stop()


def failure(model: str, cap_gb: float, *extra: str) -> None:
    served = Served(model, *extra)
    try:
        run_all(served.url, [({"prompt": p, "max_tokens": 8}, False, None) for p in SHORT], 6)
        start = served.memory()
        cap = int((start["VmSize"] + cap_gb * 1024) * 2**20)
        resource.prlimit(served.proc.pid, resource.RLIMIT_AS, (cap, cap))
        long_prompt = SENTENCE * 150  # about 3,000 tokens
        jobs = [({"prompt": long_prompt, "max_tokens": 16}, False, None)]
        jobs += [({"prompt": SHORT[i % len(SHORT)], "max_tokens": 32, "min_tokens": 32}, False, None)
                 for i in range(24)]
        began = time.perf_counter()
        with futures.ThreadPoolExecutor(25) as pool:
            outcomes = list(pool.map(lambda job: ask(served.url, *job), jobs))
        took = time.perf_counter() - began
        after = served.memory()
        again = run_all(served.url, [({"prompt": SHORT[i % 6], "max_tokens": 16}, False, None)
                                     for i in range(32)], 32)
        end = served.memory()
        print(f"   address space capped at {cap / 2**30:.2f} GB (start VmSize {start['VmSize']:.0f} MB); "
              f"the long prompt: {outcomes[0]}; the 24 short: {dict(collections.Counter(outcomes[1:]))} "
              f"in {took:.1f} s")
        print(f"   then 32 short at once: {dict(again)}")
        print(f"   resident MB: start {start['VmRSS']:.0f}, peak {end['VmHWM']:.0f}, after the burst "
              f"{after['VmRSS']:.0f}, end {end['VmRSS']:.0f}")
        log = Path(f"/tmp/serve_memory_{served.port}.log").read_text().strip().splitlines()
        print(f"   server log: {len(log)} lines" + (f"; last: {log[-1][:150]}" if log else ""))
    finally:
        served.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--cap-gb", type=float, default=1.5, help="address space allowed beyond the loaded server's")
    parser.add_argument("--budget-gb", type=float, default=0.6, help="--kv-budget-gb for phase 3")
    parser.add_argument("--mixed-budget", default="auto", help="--kv-budget-gb for phase 1")
    parser.add_argument("--phases", default="123")
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()}; model {args.model}")
    if "1" in args.phases:
        mixed(args.model, args.requests, args.mixed_budget)
    if "2" in args.phases:
        print("2. a provoked failure: --kv-budget-gb off")
        failure(args.model, args.cap_gb, "--kv-budget-gb", "off")
    if "3" in args.phases:
        print(f"3. the same with --kv-budget-gb {args.budget_gb}")
        failure(args.model, args.cap_gb, "--kv-budget-gb", str(args.budget_gb))
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
