"""Every cache kind transformers 5 has is copied to every decode row (or the rows are prefilled together).

Tiny random models of each architecture are built from configs in code (no network). Each run checks
greedy tokens against HF generate, every row's logprobs (a row whose copied state were wrong would
drift) against batch-1 cached decoding (HF's own path, 1e-4) and a fresh no-cache forward (5e-3: SSM
chunked scans and recurrent steps round apart), and that a seeded config gives the same tokens alone
and among others.
"""

from __future__ import annotations

import pytest
import torch

from decodelab.engine import DecodingConfig, generate_many
from decodelab.engine.runners.hf_caches import batch_sizes, prefill
from decodelab.engine.backends.loading import LoadedModel, ModelSpec
from decodelab.engine.results import GenerationError

ATTN = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
            max_position_embeddings=256)
MAMBA_HYBRID = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2,
                    mamba_d_state=8, mamba_d_conv=4, mamba_expand=2, mamba_n_groups=1)
# model_type -> (config fields, how the rows get their state)
KINDS = {
    "gemma2": (dict(num_hidden_layers=2, sliding_window=4, **ATTN), "copied"),  # sliding + full layers
    "gemma3_text": (dict(num_hidden_layers=2, sliding_window=4, **ATTN), "copied"),
    "gpt_oss": (dict(num_hidden_layers=2, num_local_experts=2, num_experts_per_tok=1, sliding_window=4,
                     layer_types=["sliding_attention", "full_attention"], **ATTN), "copied"),
    "lfm2": (dict(num_hidden_layers=3, layer_types=["conv", "full_attention", "conv"], conv_L_cache=3,
                  **{k: v for k, v in ATTN.items() if k != "head_dim"}), "copied"),  # linear attention (conv)
    "qwen3_next": (dict(num_hidden_layers=4, linear_num_key_heads=2, linear_num_value_heads=2,
                        linear_key_head_dim=8, linear_value_head_dim=8, num_experts=4, num_experts_per_tok=2,
                        moe_intermediate_size=16, shared_expert_intermediate_size=16, full_attention_interval=2,
                        **ATTN), "copied"),  # gated delta-net + attention
    "falcon_h1": (dict(num_hidden_layers=2, head_dim=8, mamba_d_ssm=32, mamba_n_heads=4, mamba_d_head=8,
                       mamba_d_state=8, mamba_n_groups=1, mamba_d_conv=4, max_position_embeddings=256,
                       hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2),
                  "copied"),  # SSM/conv + attention in every layer
    "mamba": (dict(num_hidden_layers=2, hidden_size=32, state_size=8, intermediate_size=64, conv_kernel=4,
                   time_step_rank=4), "copied"),  # cache_params instead of past_key_values
    "mamba2": (dict(num_hidden_layers=2, hidden_size=32, state_size=8, num_heads=4, head_dim=16, expand=2,
                    n_groups=1, conv_kernel=4), "copied"),
    "jamba": (dict(num_hidden_layers=2, num_experts=2, num_experts_per_tok=1, attn_layer_period=2,
                   attn_layer_offset=1, expert_layer_period=2, expert_layer_offset=1, mamba_dt_rank=4,
                   **{k: v for k, v in MAMBA_HYBRID.items() if k != "mamba_n_groups"}), "copied"),
    "bamba": (dict(num_hidden_layers=2, attn_layer_indices=[1], mamba_n_heads=4, mamba_d_head=16, **MAMBA_HYBRID),
              "copied"),
    "zamba2": (dict(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                    num_key_value_heads=2, mamba_d_state=8, mamba_headdim=8, mamba_ngroups=1, n_mamba_heads=8,
                    layers_block_type=["mamba", "hybrid"], hybrid_layer_ids=[1], max_position_embeddings=256),
               "copied"),
    "minimax": (dict(num_hidden_layers=2, layer_types=["linear_attention", "full_attention"], num_local_experts=2,
                     num_experts_per_tok=1, **ATTN), "prefilled"),  # its own cache class: rows prefilled together
    "recurrent_gemma": (dict(num_hidden_layers=3, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                             num_key_value_heads=1, lru_width=32, attention_window_size=8, conv1d_width=4),
                        "recomputed"),  # keeps its state inside the model and returns no cache
}
PROMPT = "The for statement is used to iterate"
CONFIGS = [
    DecodingConfig(max_new_tokens=10),
    DecodingConfig(do_sample=True, temperature=1.5, seed=11, max_new_tokens=10),
    DecodingConfig(do_sample=True, temperature=1.5, top_k=50, seed=12, max_new_tokens=10),
]


def build(model_type: str, tokenizer) -> LoadedModel:
    from transformers import AutoConfig, AutoModelForCausalLM

    fields, _ = KINDS[model_type]
    eos = tokenizer.eos_token_id
    config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), bos_token_id=eos, eos_token_id=eos,
                                  pad_token_id=eos, **fields)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(4.0)
    # no EOS, so every row runs its full length
    model.generation_config.eos_token_id = []
    return LoadedModel(model=model, tokenizer=tokenizer, spec=ModelSpec(path=model_type, device="cpu"),
                       device=torch.device("cpu"), dtype=torch.float32, num_parameters=model.num_parameters(),
                       memory_bytes=0, source=model_type)


@pytest.fixture(scope="module", params=sorted(KINDS))
def kind(request, tiny_tokenizer):
    return request.param, build(request.param, tiny_tokenizer)


def fresh_logprobs(loaded, prompt_ids, generated):
    """Logprobs of `generated` from a no-cache forward over prompt + generated ids."""
    ids = torch.tensor([prompt_ids + generated])
    with torch.inference_mode():
        logits = loaded.model(input_ids=ids, use_cache=False).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    start = len(prompt_ids) - 1
    return [logprobs[start + i, token].item() for i, token in enumerate(generated)]


def cached_logprobs(loaded, prompt_ids, generated):
    """Logprobs of `generated` from batch-1 cached decoding, one forced token at a time (HF's own path)."""
    model = loaded.model
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([prompt_ids]), use_cache=True)
        field = next((f for f in ("cache", "past_key_values", "cache_params") if getattr(out, f, None) is not None),
                     None)
        if field is None:
            return fresh_logprobs(loaded, prompt_ids, generated)
        result = []
        for token in generated:
            result.append(torch.log_softmax(out.logits[0, -1].float(), -1)[token].item())
            out = model(input_ids=torch.tensor([[token]]), use_cache=True, **{field: getattr(out, field)})
    return result


def test_rows_get_the_prompt_state(kind):
    name, loaded = kind
    context = loaded.tokenizer(PROMPT, return_tensors="pt")["input_ids"][0]
    with torch.inference_mode():
        _, cache = prefill(loaded.model, context, 8)
    assert cache.how == KINDS[name][1]
    if cache.field is not None:
        sizes = batch_sizes(cache.cache)
        assert sizes and set(sizes.values()) == {8}, sizes


def test_batched_decoding_matches_hf_and_a_fresh_forward(kind):
    name, loaded = kind
    prompt_ids = loaded.tokenizer(PROMPT)["input_ids"]
    completions = generate_many(loaded, PROMPT, CONFIGS)
    greedy = [s.token_id for s in completions[0].steps]
    with torch.inference_mode():
        out = loaded.model.generate(torch.tensor([prompt_ids]), max_new_tokens=10, do_sample=False,
                                    pad_token_id=0, eos_token_id=None)
    assert greedy == out[0, len(prompt_ids):].tolist()
    for c in completions:
        ids = [s.token_id for s in c.steps]
        assert len(ids) == 10
        ours = [s.logprob for s in c.steps]
        assert ours == pytest.approx(cached_logprobs(loaded, prompt_ids, ids), abs=1e-4)
        # chunked scans and recurrent steps round differently (SSMs): a wrong state would be far off
        assert ours == pytest.approx(fresh_logprobs(loaded, prompt_ids, ids), abs=5e-3)
    alone = generate_many(loaded, PROMPT, [CONFIGS[2]])[0]
    assert [s.token_id for s in alone.steps] == [s.token_id for s in completions[2].steps]


class _Broken(torch.nn.Module):
    """A model whose batched decode step fails, as a model with an unsupported cache would."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.config = inner.config
        self.calls = 0

    def get_input_embeddings(self):
        return self.inner.get_input_embeddings()

    def forward(self, input_ids, **kwargs):
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("The size of tensor a (8) must match the size of tensor b (1) at dimension 0")
        return self.inner(input_ids=input_ids, **kwargs)


def test_a_model_that_cannot_decode_batched_raises_generation_error(llama):
    import dataclasses

    broken = _Broken(llama.model)
    broken.generation_config = llama.model.generation_config
    loaded = dataclasses.replace(llama, model=broken, runner=None)
    with pytest.raises(GenerationError, match="cannot decode 8 rows.*run one config at a time"):
        generate_many(loaded, PROMPT, [DecodingConfig(max_new_tokens=4)])
