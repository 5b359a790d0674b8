"""What structured output costs: a constraint on 1 and on 8 of 8 sampling rows, as a share of a whole step.

    python benchmarks/constraint_cost.py [--model smollm2] [--iters 40] [--threads N]

One batched forward [8, 1] per iteration on real logits, then each variant's sampler step (chain, draw,
statistics, host transfer, and for constrained rows llguidance's mask and its matcher taking the token),
interleaved so every variant sees the same machine load. Also: compiling each kind of constraint (first
time, then from the cache) and llguidance's mask alone per row.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from decodelab.engine import DecodingConfig  # noqa: E402
from decodelab.engine.backends.loading import ModelSpec, load_model  # noqa: E402
from decodelab.engine.grammars import grammar, matcher  # noqa: E402
from sampler_share import interleaved, sampler_step  # noqa: E402 - benchmarks/, beside this file

SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}, "tags": {"type": "array", "items": {
    "type": "object", "properties": {"name": {"type": "string"}, "weight": {"type": "number"}},
    "required": ["name", "weight"]}}}, "required": ["title", "tags"]}
KINDS = {"json_schema": dict(json_schema=SCHEMA), "regex": dict(regex="[a-z ]+([0-9]+ [a-z]+)*"),
         "grammar": dict(grammar='root ::= item+\nitem ::= [a-z]+ " " | "(" [0-9]+ ") "'),
         "choice": dict(choice=["alpha", "beta", "gamma delta epsilon"])}
BASE = dict(do_sample=True, temperature=0.8)


def configs(fields: dict, on: int) -> list[DecodingConfig]:
    return [DecodingConfig(name=f"r{i}", seed=i, max_new_tokens=512, **BASE, **(fields if i < on else {}))
            for i in range(8)]


def compile_times(loaded) -> dict[str, tuple[float, float]]:
    out = {}
    for name, fields in KINDS.items():
        value = DecodingConfig(**fields).__getattribute__(name)
        grammar.cache_clear()
        start = time.perf_counter()
        grammar(name, value)
        first = time.perf_counter() - start
        start = time.perf_counter()
        grammar(name, value)
        out[name] = (first * 1000, (time.perf_counter() - start) * 1000)
    return out


def mask_alone(loaded, steps: int = 200) -> float:
    """Microseconds for llguidance's mask of one row along a valid JSON document."""
    size = loaded.model.get_input_embeddings().num_embeddings
    m = matcher("json_schema", DecodingConfig(json_schema=SCHEMA).json_schema, loaded.tokenizer, size,
                (loaded.tokenizer.eos_token_id,))
    text = json.dumps({"title": "a list", "tags": [{"name": f"t{i}", "weight": i / 3} for i in range(40)]})
    times = []
    for token in loaded.tokenizer(text, add_special_tokens=False)["input_ids"][:steps]:
        start = time.perf_counter()
        m.compute_bitmask()
        times.append(time.perf_counter() - start)
        m.consume_token(token)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load before: {os.getloadavg()}; torch threads {torch.get_num_threads()}")
    loaded = load_model(ModelSpec(path=args.model))
    vocab, tok = loaded.model.get_input_embeddings().num_embeddings, loaded.tokenizer
    runners = {"base": sampler_step(configs({}, 0), vocab, tok, args.iters)}
    for name, fields in KINDS.items():
        runners[f"{name} 1/8"] = sampler_step(configs(fields, 1), vocab, tok, args.iters)
        runners[f"{name} 8/8"] = sampler_step(configs(fields, 8), vocab, tok, args.iters)
    times = {name: statistics.median(values) for name, values in interleaved(loaded, runners, args.iters,
                                                                           skip=3).items()}
    step = times["forward"] + times["base"]
    print(f"model {loaded.describe()}; medians of {args.iters - 3} steps")
    print(f"a whole step, 8 sampling rows: forward {times['forward']:.2f} ms + sampler {times['base']:.2f} ms "
          f"= {step:.2f} ms")
    print(f"{'constraint':<12} {'rows':>5} {'sampler ms':>11} {'added ms':>9} {'of a step':>10}")
    for name in KINDS:
        for rows in ("1/8", "8/8"):
            t = times[f"{name} {rows}"]
            print(f"{name:<12} {rows:>5} {t:>11.2f} {t - times['base']:>9.2f} {(t - times['base']) / step:>10.1%}")
    for name, (first, cached) in compile_times(loaded).items():
        print(f"compile {name}: {first:.1f} ms first, {cached:.3f} ms cached")
    print(f"llguidance mask alone, one row along a JSON document: {mask_alone(loaded):.0f} µs (median)")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
