"""A running stream while a long prompt arrives: the longest pause between its tokens, with the long prompt
prefilled in one go and in chunks between decode steps (issue 21 item 8). One run, same model and prompts.

    python benchmarks/bench_chunked_prefill.py [--model smollm2] [--tokens 3000] [--chunk 256] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import torch

    from decodelab.engine import DecodingConfig
    from decodelab.engine.backends.loading import ModelSpec, load_model
    from decodelab.engine.decoding.loop import DecodeLoop
    from decodelab.engine.decoding.run import new_request

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--tokens", type=int, default=3000)
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model(ModelSpec(path=args.model, chat=False, device="cpu"))
    words = " ".join(f"item {i} is number {i * 7 % 13}." for i in range(args.tokens))
    ids = loaded.tokenizer(words)["input_ids"][: args.tokens]
    long_text = loaded.tokenizer.decode(ids)
    print(f"{loaded.describe()}; long prompt {len(loaded.tokenizer(long_text)['input_ids'])} tokens; threads "
          f"{torch.get_num_threads()}; load average {os.getloadavg()[0]:.2f}")
    for chunk in (0, args.chunk):
        loop = DecodeLoop(loaded, prefill_chunk=chunk)
        stamps = []
        running = new_request(loaded, "The for statement", [DecodingConfig(max_new_tokens=400, min_new_tokens=400)],
                              on_step=lambda event: stamps.append(time.perf_counter()))
        long = new_request(loaded, long_text, [DecodingConfig(max_new_tokens=4)])
        loop.admit([running])
        for _ in range(3):
            loop.step()
        arrived = time.perf_counter()
        loop.admit([long])
        while long.completions is None:
            loop.step()
        first_long = time.perf_counter() - arrived
        gaps = [b - a for a, b in zip(stamps, stamps[1:]) if b > arrived]
        print(f"prefill_chunk={chunk}: longest pause in the running stream {max(gaps):.2f} s; the long prompt's "
              f"4 tokens done {first_long:.2f} s after it arrived; {len(gaps)} tokens streamed meanwhile")


if __name__ == "__main__":
    main()
