"""Four panes, each on its own three-turn conversation (the TUI after ctrl+n twice): one batch through
generate_parts vs one call per pane, and whether the tokens agree. On SmolLM2 (chat template).

    python benchmarks/bench_conversations.py [--threads 1] [--tokens 32] [--repeats 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def conversation(i: int) -> list[dict]:
    """Each pane's earlier replies differ a little, so every pane has a prompt of its own."""
    return [{"role": "system", "content": "You answer in one short sentence."},
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": f"The capital of France is Paris{'.' * (i + 1)}"},
            {"role": "user", "content": "And of Italy?"}, {"role": "assistant", "content": "Rome" + "!" * i},
            {"role": "user", "content": "And of Spain?"}]


def main() -> None:
    import torch

    from decodelab.engine import DecodingConfig
    from decodelab.engine.backends.base import Part, generate_parts
    from decodelab.engine.backends.loading import ModelSpec, load_model

    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(ModelSpec(path="smollm2", chat=True, device="cpu"))
    configs = [DecodingConfig(name=f"c{i}", do_sample=i > 0, temperature=0.7, seed=i, max_new_tokens=args.tokens,
                              min_new_tokens=args.tokens) for i in range(4)]
    parts = [Part(conversation(i), [configs[i]]) for i in range(4)]
    generate_parts(model, parts[:1])  # warm-up
    for _ in range(args.repeats):
        start = time.perf_counter()
        together = generate_parts(model, parts)
        batch = time.perf_counter() - start
        start = time.perf_counter()
        alone = [generate_parts(model, [part])[0] for part in parts]
        apart = time.perf_counter() - start
        same = all(a[0].token_ids == b[0].token_ids for a, b in zip(together, alone))
        print(f"threads={torch.get_num_threads()} · one batch {batch:.2f} s · one call per pane {apart:.2f} s · "
              f"{apart / batch:.2f}x · same tokens: {same}")


if __name__ == "__main__":
    main()
