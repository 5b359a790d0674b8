"""llguidance (what decodelab uses) beside xgrammar (vLLM's and SGLang's default) on this project's tokenizer:
schema coverage, compile time and mask time per row along valid outputs. xgrammar is not a dependency (it
pulls in triton, about 1 GB); install it to run this: pip install xgrammar.

    python benchmarks/grammar_engines.py [--model smollm2]
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from decodelab.engine import DecodingConfig  # noqa: E402
from decodelab.engine.backends.loading import ModelSpec, load_model  # noqa: E402
from decodelab.engine.grammars import closed  # noqa: E402
from test_structured import SCHEMAS  # noqa: E402 - the 20 schemas of the SmolLM2 test

EXAMPLE = {"title": "a list", "tags": [{"name": f"t{i}", "weight": i / 3} for i in range(30)]}
SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}, "tags": {"type": "array", "items": {
    "type": "object", "properties": {"name": {"type": "string"}, "weight": {"type": "number"}},
    "required": ["name", "weight"]}}}, "required": ["title", "tags"]}


def llguidance_engine(tokenizer, vocab, eos):
    from llguidance import LLMatcher
    from llguidance.hf import from_tokenizer

    tok = from_tokenizer(tokenizer, n_vocab=vocab, eos_token=eos)
    style = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}

    def compile_(schema):
        g = LLMatcher.grammar_from_json_schema(closed(schema), defaults=style)
        failed, messages = LLMatcher.validate_grammar_with_warnings(g)
        if failed:
            raise ValueError(messages[0])
        return g

    return compile_, lambda g: LLMatcher(tok, g), lambda m: m.compute_bitmask(), lambda m, t: m.consume_token(t)


def xgrammar_engine(tokenizer, vocab, eos):
    import xgrammar as xgr

    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab, stop_token_ids=[eos])
    compiler = xgr.GrammarCompiler(info)
    mask = xgr.allocate_token_bitmask(1, vocab)

    def fill(m):
        m.fill_next_token_bitmask(mask, 0)

    return (lambda s: compiler.compile_json_schema(json.dumps(s), any_whitespace=False),
            lambda g: xgr.GrammarMatcher(g), fill, lambda m, t: m.accept_token(t))


def measure(name, engine, tokenizer) -> None:
    compile_, make, mask, take = engine
    ok, times = 0, []
    for schema in SCHEMAS:
        start = time.perf_counter()
        try:
            compile_(schema)
            ok += 1
        except Exception as exc:  # noqa: BLE001 - a schema this engine does not take
            print(f"  {name}: refuses {json.dumps(schema)[:60]}: {str(exc)[:80]}")
        times.append(time.perf_counter() - start)
    g = compile_(SCHEMA)
    ids = tokenizer(json.dumps(EXAMPLE), add_special_tokens=False)["input_ids"]
    m, masks = make(g), []
    for token in ids:
        start = time.perf_counter()
        mask(m)
        masks.append(time.perf_counter() - start)
        assert take(m, token), (name, token)
    print(f"{name:<11} schemas compiled {ok}/{len(SCHEMAS)}; compile median {statistics.median(times) * 1e3:.1f} ms, "
          f"max {max(times) * 1e3:.1f} ms; mask per row median {statistics.median(masks) * 1e6:.0f} µs, "
          f"p90 {sorted(masks)[int(len(masks) * 0.9)] * 1e6:.0f} µs over {len(ids)} tokens")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2")
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()}")
    loaded = load_model(ModelSpec(path=args.model))
    tok, vocab = loaded.tokenizer, loaded.model.get_input_embeddings().num_embeddings
    eos = tok.eos_token_id
    assert DecodingConfig(json_schema=SCHEMA)
    measure("llguidance", llguidance_engine(tok, vocab, eos), tok)
    try:
        engine = xgrammar_engine(tok, vocab, eos)
    except ImportError:
        print("xgrammar is not installed: pip install xgrammar to compare")
        return
    measure("xgrammar", engine, tok)
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
