"""llama.cpp's own samplers, through llama-cpp-python's low-level API, on a row of logits (test helper)."""

from __future__ import annotations

import ctypes
import importlib.util
from pathlib import Path

import llama_cpp as L
import torch

ROOT = Path(__file__).resolve().parents[1]


class Chain:
    """A llama.cpp sampler chain; apply() runs it on one row of logits like llama_sampler_sample does."""

    def __init__(self, *samplers):
        params = L.llama_sampler_chain_default_params()
        self.chain = L.llama_sampler_chain_init(params)
        for sampler in samplers:
            L.llama_sampler_chain_add(self.chain, sampler)

    def accept(self, tokens) -> None:
        for token in tokens:
            L.llama_sampler_accept(self.chain, int(token))

    def apply(self, logits: torch.Tensor, truncated: bool = False) -> dict:
        """{"logits": [V] float32 with removed tokens at -inf, "p": the candidates' probabilities, "selected"}.

        truncated: pass only the finite logits, as llama.cpp's array looks after a truncating sampler.
        """
        row = logits.float().tolist()
        items = [L.llama_token_data(i, v, 0.0) for i, v in enumerate(row) if not truncated or v != float("-inf")]
        data = (L.llama_token_data * len(items))(*items)
        array = L.llama_token_data_array(data, len(items), -1, False)
        L.llama_sampler_apply(self.chain, ctypes.byref(array))
        out = torch.full((len(row),), float("-inf"))
        probs = torch.zeros(len(row))
        for i in range(array.size):
            item = array.data[i]
            out[item.id] = item.logit
            probs[item.id] = item.p
        selected = array.data[array.selected].id if array.selected >= 0 else None
        return {"logits": out, "p": probs, "selected": selected}

    def __del__(self):
        try:
            L.llama_sampler_free(self.chain)
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def demo_vocab(tmp_dir: Path):
    """(model, vocab) of the demo model written as GGUF, loaded vocabulary-only (DRY needs the vocab)."""
    spec = importlib.util.spec_from_file_location("demo_to_gguf", ROOT / "scripts" / "demo_to_gguf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from decodelab.engine.backends.loading import demo_model_path

    path = module.write_gguf(demo_model_path(), tmp_dir / "demo.gguf")
    params = L.llama_model_default_params()
    params.vocab_only = True
    model = L.llama_model_load_from_file(str(path).encode(), params)
    return model, L.llama_model_get_vocab(model)


def dry(vocab, multiplier, base, allowed, last_n, breakers):
    arr = (ctypes.c_char_p * len(breakers))(*[b.encode() for b in breakers])
    return L.llama_sampler_init_dry(vocab, multiplier, base, allowed, last_n, arr, len(breakers))


def logit_bias(n_vocab: int, pairs: list[tuple[int, float]]):
    arr = (L.llama_logit_bias * len(pairs))(*[L.llama_logit_bias(t, b) for t, b in pairs])
    return L.llama_sampler_init_logit_bias(n_vocab, len(pairs), arr)
