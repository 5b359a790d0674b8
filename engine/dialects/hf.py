"""HF transformers: a generation_config.json out, and one in (generate's own names and defaults)."""

from __future__ import annotations

from ..config import ConfigError, DecodingConfig
from ..grammars import constraint_of
from .base import Dialect
from .common import CONSTRAINTS, Converted, id_biases

HF = Dialect("hf", "HF generate", greedy_temperature=1.0, greedy_warpers=False)

HF_METADATA = {"bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id", "transformers_version",
               "_from_model_config", "use_cache", "forced_bos_token_id", "forced_eos_token_id", "max_length",
               "cache_implementation", "return_dict_in_generate", "output_scores", "output_logits"}


def to_hf(config: DecodingConfig) -> Converted:
    """A transformers generation_config.json. Neutral values are explicit (HF's hidden top_k is 50)."""
    data = HF.fields(config, skip={"stop_strings"})
    if config.stop_strings:
        data["stop_strings"] = list(config.stop_strings)
    notes = HF.notes(config, handled=CONSTRAINTS | {"logit_bias", "negative_prompt", "logprob_tokens", "ignore_eos"})
    if config.ignore_eos:  # HF forbids EOS the same way: min_new_tokens as long as the run
        data["min_new_tokens"] = config.max_new_tokens
        notes.append("ignore_eos is written as min_new_tokens = max_new_tokens, HF's way to forbid the end")
    if constraint_of(config):
        notes.append("HF generate has no built-in structured output: pass a LogitsProcessor from a grammar library "
                     "(llguidance, outlines, transformers-cfg) to generate()")
    if config.guidance_scale != 1:
        notes.append("HF takes the negative prompt as generate(negative_prompt_ids=tokenizer(" +
                     repr(config.negative_prompt) + ")['input_ids'])" if config.negative_prompt else
                     "HF guides away from the prompt's last token when no negative_prompt_ids are given, as here")
    if config.logprob_tokens:
        notes.append("HF generate has no named-token logprobs: take them from output_scores (return_dict_in_generate"
                     "=True) for the ids of " + ", ".join(repr(t) for t in config.logprob_tokens))
    biases = id_biases(config, "HF sequence_bias", notes)
    if biases:
        data["sequence_bias"] = [[[token], bias] for token, bias in biases.items()]
    if config.samples and not config.top_k:
        notes.append("top_k is written as 0 (off) on purpose: HF's default is 50")
    return Converted(data, notes)


def from_hf(data: dict, name: str = "imported") -> Converted:
    """A DecodingConfig from a transformers generation_config.json dict."""
    if not isinstance(data, dict):
        raise ConfigError("a generation_config.json must hold a JSON object")
    fields: dict = {"name": name}
    notes: list[str] = []
    ours = HF.aliases()
    for key, value in data.items():
        if key in ours and value is not None:
            fields[ours[key]] = HF.read(ours[key], value)
        elif key in ("sequence_bias", "bad_words_ids") and value:
            _hf_biases(key, value, fields, notes)
        elif key not in HF_METADATA and value not in (None, False, 0, 1, 1.0, [], {}):
            notes.append(f"{key}={value!r} has no decodelab equivalent and was NOT imported")
    if isinstance(fields.get("stop_strings"), str):
        fields["stop_strings"] = [fields["stop_strings"]]
    if fields.get("do_sample") and "top_k" not in fields:
        fields["top_k"] = 50
        notes.append("top_k was not set, so HF's default top_k=50 is made explicit")
    if "max_new_tokens" not in fields and isinstance(data.get("max_length"), int):
        notes.append(f"max_length={data['max_length']} counts the prompt too; max_new_tokens left at its default")
    if fields.get("num_beams", 1) > 1 and fields.get("do_sample"):
        fields["do_sample"] = False
        notes.append("beam sampling is not supported: imported as plain beam search (do_sample=false)")
    return Converted(DecodingConfig.from_dict(fields, where="generation_config.json"), notes)


def _hf_biases(key: str, value, fields: dict, notes: list[str]) -> None:
    """HF sequence_bias / bad_words_ids: one-token entries become logit_bias (bad words: -inf)."""
    items = value.items() if isinstance(value, dict) else value
    if key == "bad_words_ids":
        items = [(ids, float("-inf")) for ids in value]
    pairs = list(fields.get("logit_bias", ()))
    for ids, bias in items:
        ids = list(ids) if isinstance(ids, (list, tuple)) else ids
        if isinstance(ids, list) and len(ids) == 1 and isinstance(ids[0], int):
            pairs.append((ids[0], bias))
        else:
            notes.append(f"{key} entry {ids!r} spans several tokens: decodelab needs it as text "
                         "(banned_strings); NOT imported")
    fields["logit_bias"] = pairs
