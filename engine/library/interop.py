"""Presets to and from other stacks: HF generation_config.json, vLLM, OpenAI, llama.cpp, text-generation-webui.

Every export and import returns its notes: settings the other side lacks, defaults made explicit,
semantics that differ. Nothing is dropped silently. Field names and ranges follow PARAMETERS.md.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field

from ..config import ConfigError, DecodingConfig

FORMATS = ("hf", "vllm", "openai", "llamacpp", "webui")

# The modern samplers most stacks lack, with their neutral values (for "NOT carried over" notes).
MODERN = {"top_n_sigma": 0.0, "xtc_probability": 0.0, "dry_multiplier": 0.0, "mirostat": 0, "dynatemp_range": 0.0,
          "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "repetition_penalty_last_n": 0, "banned_strings": (),
          "sampler_order": ()}


def _without(fields: dict, *names: str) -> dict:
    return {k: v for k, v in fields.items() if k not in names}


def _id_biases(config: DecodingConfig, target: str, notes: list[str], low=None, high=None) -> dict[int, float]:
    """logit_bias entries keyed by token id; text keys and out-of-range biases noted."""
    out = {}
    for key, bias in config.logit_bias:
        if not isinstance(key, int):
            notes.append(f"{target} takes token ids in logit_bias: the text key {key!r} is NOT carried over "
                         "(bias its token ids instead)")
            continue
        if low is not None and not low <= bias <= high:
            notes.append(f"{target} accepts logit_bias in [{low}, {high}]: {bias} for token {key} is clamped")
            bias = min(max(bias, low), high)
        out[key] = out.get(key, 0.0) + bias
    return out


@dataclass
class Converted:
    """The converted preset (a dict, or command-line text for llama.cpp) and the notes a user must read."""

    data: object
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        return self.data if isinstance(self.data, str) else json.dumps(self.data, indent=2) + "\n"


def _unsupported(config: DecodingConfig, target: str, fields: dict[str, object]) -> list[str]:
    """Notes for fields set away from neutral that the target cannot express."""
    return [f"{target} has no {name}: this preset's {name}={getattr(config, name)!r} is NOT carried over"
            for name, neutral in fields.items() if getattr(config, name) != neutral]


def export_preset(config: DecodingConfig, fmt: str) -> Converted:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    from .webui import to_webui

    return {"hf": to_hf, "vllm": to_vllm, "openai": to_openai, "llamacpp": to_llamacpp, "webui": to_webui}[fmt](config)


def to_hf(config: DecodingConfig) -> Converted:
    """A transformers generation_config.json. Neutral values are explicit (HF's hidden top_k is 50)."""
    data = {
        "do_sample": config.samples,
        "temperature": config.temperature if config.samples else 1.0,
        "top_k": config.top_k,
        "top_p": config.top_p,
        "min_p": config.min_p if config.min_p else None,
        "typical_p": config.typical_p,
        "repetition_penalty": config.repetition_penalty,
        "no_repeat_ngram_size": config.no_repeat_ngram_size,
        "num_beams": config.num_beams,
        "length_penalty": config.length_penalty,
        "max_new_tokens": config.max_new_tokens,
        "min_new_tokens": config.min_new_tokens,
    }
    data["epsilon_cutoff"] = config.epsilon_cutoff if config.samples else 0.0
    data["eta_cutoff"] = config.eta_cutoff if config.samples else 0.0
    data["early_stopping"] = config.early_stopping
    if config.stop_strings:
        data["stop_strings"] = list(config.stop_strings)
    notes = _unsupported(config, "HF generate", {"frequency_penalty": 0.0, "presence_penalty": 0.0,
                                                 **_without(MODERN, "epsilon_cutoff", "eta_cutoff")})
    biases = _id_biases(config, "HF sequence_bias", notes)
    if biases:
        data["sequence_bias"] = [[[token], bias] for token, bias in biases.items()]
    if config.seed is not None:
        notes.append(f"HF generation_config has no seed: call torch.manual_seed({config.seed}) before generate "
                     "(HF's sampling stream differs from decodelab's, so the text will differ anyway)")
    if config.stop_strings:
        notes.append("HF needs the tokenizer for stop_strings: pass tokenizer=... to generate()")
    if not config.top_k:
        notes.append("top_k is written as 0 (off) on purpose: HF's default is 50")
    return Converted(data, notes)


def to_vllm(config: DecodingConfig) -> Converted:
    """vLLM SamplingParams keyword arguments."""
    data = {
        "temperature": config.temperature if config.samples else 0.0,
        "top_p": config.top_p,
        "top_k": config.top_k if config.top_k else -1,
        "min_p": config.min_p,
        "repetition_penalty": config.repetition_penalty,
        "frequency_penalty": config.frequency_penalty,
        "presence_penalty": config.presence_penalty,
        "max_tokens": config.max_new_tokens,
        "min_tokens": config.min_new_tokens,
        "stop": list(config.stop_strings),
        "seed": config.seed,
    }
    notes = _unsupported(config, "vLLM SamplingParams",
                         {"typical_p": 1.0, "no_repeat_ngram_size": 0, "num_beams": 1, "length_penalty": 1.0,
                          **_without(MODERN, "banned_strings")})
    biases = _id_biases(config, "vLLM", notes)
    if biases:
        data["logit_bias"] = {str(t): b for t, b in biases.items()}
    if config.banned_strings:
        data["bad_words"] = list(config.banned_strings)
        notes.append("vLLM's bad_words also bans each word with a leading space; decodelab bans exactly the "
                     "tokens of the text given")
    notes.append("vLLM applies penalties -> temperature -> min-p -> top-k/top-p; decodelab (like HF) applies "
                 "top-k -> top-p -> min-p, so combined filters can keep slightly different tokens")
    return Converted(data, notes)


def to_openai(config: DecodingConfig) -> Converted:
    """OpenAI-compatible request parameters (chat or completions)."""
    data = {
        "temperature": config.temperature if config.samples else 0.0,
        "top_p": config.top_p,
        "frequency_penalty": config.frequency_penalty,
        "presence_penalty": config.presence_penalty,
        "max_tokens": config.max_new_tokens,
    }
    if config.stop_strings:
        data["stop"] = list(config.stop_strings)
    if config.seed is not None:
        data["seed"] = config.seed
    notes = _unsupported(config, "the OpenAI API", {
        "top_k": 0, "min_p": 0.0, "typical_p": 1.0, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
        "num_beams": 1, "length_penalty": 1.0, "min_new_tokens": 0, **MODERN})
    biases = _id_biases(config, "the OpenAI API", notes, -100.0, 100.0)
    if biases:
        data["logit_bias"] = {str(t): b for t, b in biases.items()}
    if data["temperature"] > 2:
        notes.append(f"OpenAI accepts temperature 0-2; {data['temperature']} will be rejected")
    if len(config.stop_strings) > 4:
        notes.append(f"OpenAI accepts at most 4 stop strings; this preset has {len(config.stop_strings)}")
    if config.seed is not None:
        notes.append("OpenAI treats seed as best effort: outputs may still vary")
    return Converted(data, notes)


def to_llamacpp(config: DecodingConfig) -> Converted:
    """llama.cpp command-line flags (llama-cli / llama-server), with llama.cpp's own defaults neutralised."""
    flags = [
        "--temp", f"{config.temperature if config.samples else 0.0:g}",
        "--top-k", str(config.top_k),
        "--top-p", f"{config.top_p:g}",
        "--min-p", f"{config.min_p:g}",
        "--typical", f"{config.typical_p:g}",
        "--repeat-penalty", f"{config.repetition_penalty:g}",
        "--repeat-last-n", str(config.repetition_penalty_last_n or -1),
        "--frequency-penalty", f"{config.frequency_penalty:g}",
        "--presence-penalty", f"{config.presence_penalty:g}",
        *_llamacpp_modern(config),
        "--samplers", llamacpp_samplers(config),
        "-n", str(config.max_new_tokens),
    ]
    if config.seed is not None:
        flags += ["--seed", str(config.seed)]
    for stop in config.stop_strings:
        flags += ["--reverse-prompt", stop]
    notes = _unsupported(config, "llama.cpp", {"no_repeat_ngram_size": 0, "num_beams": 1, "length_penalty": 1.0,
                                                "min_new_tokens": 0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0,
                                                "banned_strings": ()})
    for token, bias in _id_biases(config, "llama.cpp's --logit-bias", notes).items():
        flags += ["--logit-bias", f"{token}{'+' if bias >= 0 else '-'}{abs(bias):g}"]
    notes.append("llama.cpp's defaults (top-k 40, top-p 0.95, min-p 0.05, a 64-token penalty window, DRY and "
                 "XTC settings) are overridden explicitly; --samplers puts them in decodelab's order")
    if config.mirostat and config.samples:
        notes.append("llama.cpp ignores --samplers (top-k, top-p, typical, ...) when Mirostat is on; decodelab "
                     "applies them before Mirostat, so set them neutral to match")
    if config.frequency_penalty or config.presence_penalty:
        notes.append("llama.cpp's frequency/presence penalties count tokens in the penalty window (prompt "
                     "included), not only generated ones as decodelab and OpenAI do")
    return Converted(" ".join(shlex.quote(f) for f in flags), notes)


# llama.cpp's --samplers names for decodelab's reorderable stages (None: llama.cpp has no such stage).
LLAMACPP_SAMPLERS = {"penalties": "penalties", "dry": "dry", "no_repeat_ngram": None, "temperature": "temperature",
                     "top_n_sigma": "top_n_sigma", "top_k": "top_k", "top_p": "top_p", "min_p": "min_p",
                     "typical_p": "typ_p", "epsilon_cutoff": None, "eta_cutoff": None, "xtc": "xtc"}


def llamacpp_samplers(config: DecodingConfig) -> str:
    from ..sampling.settings import effective_order

    return ";".join(LLAMACPP_SAMPLERS[s] for s in effective_order(config) if LLAMACPP_SAMPLERS[s])


def _llamacpp_modern(config: DecodingConfig) -> list[str]:
    """Flags for the llama.cpp-family samplers, always written (llama.cpp's defaults are not all neutral)."""
    flags = ["--top-nsigma", f"{config.top_n_sigma or -1:g}",
             "--xtc-probability", f"{config.xtc_probability:g}", "--xtc-threshold", f"{config.xtc_threshold:g}",
             "--dry-multiplier", f"{config.dry_multiplier:g}", "--dry-base", f"{config.dry_base:g}",
             "--dry-allowed-length", str(config.dry_allowed_length),
             "--dry-penalty-last-n", str(config.dry_penalty_last_n or -1),
             "--mirostat", str(config.mirostat), "--mirostat-ent", f"{config.mirostat_tau:g}",
             "--mirostat-lr", f"{config.mirostat_eta:g}",
             "--dynatemp-range", f"{config.dynatemp_range:g}", "--dynatemp-exp", f"{config.dynatemp_exponent:g}"]
    for breaker in config.dry_sequence_breakers or ("none",):
        flags += ["--dry-sequence-breaker", breaker]
    return flags


# -- imports --------------------------------------------------------------------------------------------

HF_METADATA = {"bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id", "transformers_version",
               "_from_model_config", "use_cache", "forced_bos_token_id", "forced_eos_token_id", "max_length",
               "cache_implementation", "return_dict_in_generate", "output_scores", "output_logits"}
HF_FIELDS = {"do_sample", "temperature", "top_k", "top_p", "min_p", "typical_p", "repetition_penalty",
             "no_repeat_ngram_size", "num_beams", "length_penalty", "max_new_tokens", "min_new_tokens",
             "stop_strings", "epsilon_cutoff", "eta_cutoff", "early_stopping"}


def from_hf(data: dict, name: str = "imported") -> Converted:
    """A DecodingConfig from a transformers generation_config.json dict."""
    if not isinstance(data, dict):
        raise ConfigError("a generation_config.json must hold a JSON object")
    fields: dict = {"name": name}
    notes: list[str] = []
    for key, value in data.items():
        if key in HF_FIELDS and value is not None:
            fields[key] = value
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


def import_preset_text(text: str, filename: str, name: str) -> Converted:
    """Pick the importer by file name: .json is HF generation_config, .yaml/.yml is text-generation-webui."""
    if filename.endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{filename} is not valid JSON: {exc}") from None
        return from_hf(data, name)
    if filename.endswith((".yaml", ".yml")):
        from .webui import from_webui_yaml

        return from_webui_yaml(text, name)
    raise ConfigError(f"cannot tell the format of {filename}: use a .json generation_config or a .yaml webui preset")


def __getattr__(name: str):  # the text-generation-webui converters live in engine/webui.py
    if name in ("from_webui_yaml", "to_webui"):
        from . import webui

        return getattr(webui, name)
    raise AttributeError(name)
