"""Presets to and from other stacks: HF generation_config.json, vLLM, OpenAI, llama.cpp, text-generation-webui.

Every export and import returns its notes: settings the other side lacks, defaults made explicit,
semantics that differ. Nothing is dropped silently. Field names and ranges follow PARAMETERS.md.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field

from engine.config import ConfigError, DecodingConfig

FORMATS = ("hf", "vllm", "openai", "llamacpp")


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
    return {"hf": to_hf, "vllm": to_vllm, "openai": to_openai, "llamacpp": to_llamacpp}[fmt](config)


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
    if config.stop_strings:
        data["stop_strings"] = list(config.stop_strings)
    notes = _unsupported(config, "HF generate", {"frequency_penalty": 0.0, "presence_penalty": 0.0})
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
                         {"typical_p": 1.0, "no_repeat_ngram_size": 0, "num_beams": 1, "length_penalty": 1.0})
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
        "num_beams": 1, "length_penalty": 1.0, "min_new_tokens": 0})
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
        "--repeat-last-n", "-1",
        "--frequency-penalty", f"{config.frequency_penalty:g}",
        "--presence-penalty", f"{config.presence_penalty:g}",
        "--samplers", "penalties;temperature;top_k;top_p;min_p;typ_p",
        "-n", str(config.max_new_tokens),
    ]
    if config.seed is not None:
        flags += ["--seed", str(config.seed)]
    for stop in config.stop_strings:
        flags += ["--reverse-prompt", stop]
    notes = _unsupported(config, "llama.cpp", {"no_repeat_ngram_size": 0, "num_beams": 1, "length_penalty": 1.0,
                                                "min_new_tokens": 0})
    notes.append("llama.cpp's defaults (top-k 40, top-p 0.95, min-p 0.05, a 64-token penalty window) are "
                 "overridden explicitly; --samplers puts them in decodelab's (HF's) order")
    if config.frequency_penalty or config.presence_penalty:
        notes.append("llama.cpp's frequency/presence penalties count tokens in the penalty window (prompt "
                     "included), not only generated ones as decodelab and OpenAI do")
    return Converted(" ".join(shlex.quote(f) for f in flags), notes)


# -- imports --------------------------------------------------------------------------------------------

HF_METADATA = {"bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id", "transformers_version",
               "_from_model_config", "use_cache", "forced_bos_token_id", "forced_eos_token_id", "max_length",
               "cache_implementation", "return_dict_in_generate", "output_scores", "output_logits"}
HF_FIELDS = {"do_sample", "temperature", "top_k", "top_p", "min_p", "typical_p", "repetition_penalty",
             "no_repeat_ngram_size", "num_beams", "length_penalty", "max_new_tokens", "min_new_tokens",
             "stop_strings"}


def from_hf(data: dict, name: str = "imported") -> Converted:
    """A DecodingConfig from a transformers generation_config.json dict."""
    if not isinstance(data, dict):
        raise ConfigError("a generation_config.json must hold a JSON object")
    fields: dict = {"name": name}
    notes: list[str] = []
    for key, value in data.items():
        if key in HF_FIELDS and value is not None:
            fields[key] = value
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


WEBUI_MAP = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p",
             "typical_p": "typical_p", "repetition_penalty": "repetition_penalty",
             "frequency_penalty": "frequency_penalty", "presence_penalty": "presence_penalty",
             "no_repeat_ngram_size": "no_repeat_ngram_size", "do_sample": "do_sample", "seed": "seed",
             "num_beams": "num_beams", "length_penalty": "length_penalty", "min_length": "min_new_tokens",
             "max_new_tokens": "max_new_tokens"}
WEBUI_NEUTRAL = {"tfs": 1, "top_a": 0, "epsilon_cutoff": 0, "eta_cutoff": 0, "mirostat_mode": 0,
                 "repetition_penalty_range": 0, "encoder_repetition_penalty": 1, "penalty_alpha": 0,
                 "guidance_scale": 1, "smoothing_factor": 0, "dry_multiplier": 0, "xtc_probability": 0,
                 "dynamic_temperature": False, "temperature_last": False, "top_n_sigma": 0}


def from_webui_yaml(text: str, name: str = "imported") -> Converted:
    """A DecodingConfig from a text-generation-webui preset (YAML)."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError("a text-generation-webui preset must be a YAML mapping of setting: value")
    fields: dict = {"name": name, "do_sample": True}
    notes = []
    for key, value in data.items():
        if key in WEBUI_MAP:
            fields[WEBUI_MAP[key]] = value
        elif key == "repetition_penalty_range" and value not in (0, None):
            notes.append(f"repetition_penalty_range={value} limits the penalty to recent tokens; decodelab "
                         "penalises the whole context")
        elif key == "temperature_last" and value:
            notes.append("temperature_last=true applies temperature after the filters; decodelab applies it first")
        elif WEBUI_NEUTRAL.get(key, object()) != value:
            notes.append(f"{key}={value!r} has no decodelab equivalent and was NOT imported")
    if fields.get("seed") == -1:
        fields["seed"] = None
    if fields.get("num_beams", 1) > 1:
        fields["do_sample"] = False
    return Converted(DecodingConfig.from_dict(fields, where="text-generation-webui preset"), notes)


def import_preset_text(text: str, filename: str, name: str) -> Converted:
    """Pick the importer by file name: .json is HF generation_config, .yaml/.yml is text-generation-webui."""
    if filename.endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{filename} is not valid JSON: {exc}") from None
        return from_hf(data, name)
    if filename.endswith((".yaml", ".yml")):
        return from_webui_yaml(text, name)
    raise ConfigError(f"cannot tell the format of {filename}: use a .json generation_config or a .yaml webui preset")
