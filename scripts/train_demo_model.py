"""Train the bundled demo model: a tiny Llama-style causal LM on English text that ships with CPython.

Reproducible: the corpus is built in a fixed order from the running CPython's own documentation
(`pydoc_data.topics` plus the docstrings of standard-library modules and their public members), the
tokenizer and the model are trained with fixed seeds, and the step count is fixed (not time-based).

    python scripts/train_demo_model.py            # writes engine/demo_model/
    python scripts/train_demo_model.py --steps 50 --out /tmp/demo   # a quick smoke run

It needs torch, transformers, tokenizers and safetensors (all project dependencies). About 15 minutes
on 2 CPU cores with the defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import io
import json
import math
import random
import sys
import time
import warnings
from pathlib import Path

SKIP_MODULES = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "lib2to3", "ensurepip"}
EOS = "<|endoftext|>"


def _clean(doc: str) -> str:
    return inspect.cleandoc(doc).strip()


def _public_members(owner) -> list:
    """Public functions and classes of a module or class that carry a docstring of some length."""
    found = []
    for attr in sorted(vars(owner)):
        if attr.startswith("_"):
            continue
        obj = getattr(owner, attr, None)
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        doc = getattr(obj, "__doc__", None)
        if isinstance(doc, str) and len(doc) > 60:
            found.append(obj)
    return found


def stdlib_documents() -> list[str]:
    """Every English document we can get from CPython itself, in a deterministic order."""
    import pydoc_data.topics as topics

    docs = [_clean(topics.topics[key]) for key in sorted(topics.topics)]
    warnings.simplefilter("ignore")
    for name in sorted(sys.stdlib_module_names):
        if name.startswith("_") or name in SKIP_MODULES:
            continue
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                module = importlib.import_module(name)
        except BaseException:  # noqa: BLE001 - some modules refuse to import on this platform
            continue
        if module.__doc__:
            docs.append(_clean(module.__doc__))
        for obj in _public_members(module):
            docs.append(_clean(obj.__doc__))
            if inspect.isclass(obj):
                docs.extend(_clean(m.__doc__) for m in _public_members(obj))
    seen: set[str] = set()
    unique = []
    for doc in docs:
        if doc and doc not in seen:
            seen.add(doc)
            unique.append(doc)
    return unique


def train_tokenizer(docs: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer=trainer)
    return tok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "engine" / "demo_model")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()

    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    start = time.time()

    docs = stdlib_documents()
    rng = random.Random(args.seed)
    order = list(range(len(docs)))
    rng.shuffle(order)
    n_val = max(1, len(docs) // 20)
    val_docs = [docs[i] for i in order[:n_val]]
    train_docs = [docs[i] for i in order[n_val:]]
    print(f"corpus: {len(docs)} documents, {sum(map(len, docs)):,} characters", flush=True)

    tok = train_tokenizer(train_docs, args.vocab)
    eos_id = tok.token_to_id(EOS)

    def encode(ds: list[str]) -> torch.Tensor:
        ids: list[int] = []
        for enc in tok.encode_batch(ds):
            ids.extend(enc.ids)
            ids.append(eos_id)
        return torch.tensor(ids, dtype=torch.long)

    train_ids, val_ids = encode(train_docs), encode(val_docs)
    print(f"tokens: train {train_ids.numel():,}, held-out {val_ids.numel():,}", flush=True)

    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=256,
        intermediate_size=704,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )
    model = LlamaForCausalLM(config)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params:,} parameters", flush=True)

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1, betas=(0.9, 0.95))
    warmup = max(1, args.steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return args.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, args.steps - warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    gen = torch.Generator().manual_seed(args.seed)

    def batch(ids: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        starts = torch.randint(0, ids.numel() - args.seq - 1, (args.batch,), generator=g)
        return torch.stack([ids[s : s + args.seq + 1] for s in starts.tolist()])

    @torch.no_grad()
    def held_out_loss() -> float:
        model.eval()
        losses = []
        for s in range(0, val_ids.numel() - args.seq - 1, args.seq):
            chunk = val_ids[s : s + args.seq + 1].unsqueeze(0)
            losses.append(model(input_ids=chunk[:, :-1], labels=chunk[:, :-1].clone()).loss.item())
        model.train()
        return sum(losses) / len(losses)

    model.train()
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        x = batch(train_ids, gen)
        loss = model(input_ids=x[:, :-1], labels=x[:, :-1].clone()).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {loss.item():.3f}  lr {lr_at(step):.2e}  {time.time() - start:.0f}s", flush=True)

    val = held_out_loss()
    elapsed = time.time() - start
    print(f"held-out loss {val:.3f} (perplexity {math.exp(val):.1f}), {elapsed / 60:.1f} min", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    model.config.dtype = "bfloat16"
    model.config.save_pretrained(args.out)
    state = {k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_file(state, str(args.out / "model.safetensors"), metadata={"format": "pt"})
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, pad_token=EOS, unk_token=None)
    fast.model_max_length = config.max_position_embeddings
    fast.save_pretrained(args.out)
    (args.out / "training.json").write_text(
        json.dumps(
            {
                "parameters": n_params,
                "steps": args.steps,
                "batch": args.batch,
                "seq": args.seq,
                "train_tokens": train_ids.numel(),
                "held_out_tokens": val_ids.numel(),
                "held_out_loss": round(val, 4),
                "held_out_perplexity": round(math.exp(val), 2),
                "training_minutes": round(elapsed / 60, 1),
                "python": sys.version.split()[0],
                "torch": torch.__version__,
                "seed": args.seed,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
