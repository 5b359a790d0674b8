"""bitsandbytes 8-bit and 4-bit loading on CPU: the layers are really quantized and greedy decoding runs."""

from __future__ import annotations

import pytest
import torch

from decodelab.engine import DecodingConfig, generate_many
from decodelab.engine.backends.loading import ModelSpec, load_model

PROMPT = "The for statement is used"


@pytest.fixture(scope="module")
def llama_folder(tiny_tokenizer, tmp_path_factory):
    """A small Llama whose widths are multiples of bitsandbytes' 4-bit block size (64)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    eos = tiny_tokenizer.eos_token_id
    config = LlamaConfig(vocab_size=len(tiny_tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)
    folder = tmp_path_factory.mktemp("llama128")
    model.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("quantization, layer", [("8bit", "Linear8bitLt"), ("4bit", "Linear4bit")])
def test_bitsandbytes_on_cpu_decodes_greedy(llama_folder, quantization, layer):
    pytest.importorskip("bitsandbytes")
    full = load_model(ModelSpec(path=str(llama_folder), device="cpu"))
    loaded = load_model(ModelSpec(path=str(llama_folder), device="cpu", quantization=quantization))
    kinds = {type(m).__name__ for m in loaded.model.modules()}
    assert layer in kinds
    assert loaded.memory_bytes < full.memory_bytes
    configs = [DecodingConfig(max_new_tokens=12), DecodingConfig(do_sample=True, seed=3, max_new_tokens=12)]
    greedy, sampled = generate_many(loaded, PROMPT, configs)
    assert len(greedy.steps) == 12 and len(sampled.steps) == 12
    ids = loaded.tokenizer(PROMPT, return_tensors="pt")
    with torch.inference_mode():
        out = loaded.model.generate(**ids, max_new_tokens=12, do_sample=False, pad_token_id=0, eos_token_id=None)
    assert [s.token_id for s in greedy.steps] == out[0, ids["input_ids"].shape[1]:].tolist()
    assert all(s.logprob <= 0 and s.logprob == s.logprob for s in greedy.steps)
