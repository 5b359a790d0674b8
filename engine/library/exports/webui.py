"""text-generation-webui presets (YAML): import and export, in its own names and units.

Differences a user must know are returned as notes: epsilon/eta in units of 1e-4, dynamic
temperature as low/high, temperature_last and sampler_priority as orders, mirostat_mode, token bans.
Where llama.cpp and the webui differ (XTC, DRY, Mirostat), decodelab follows llama.cpp.
"""

from __future__ import annotations

import difflib
import json

from ...config import SAMPLER_STAGES, STAGE, ConfigError, DecodingConfig
from ...grammars import choice_gbnf
from .common import Converted, unsupported

WEBUI_MAP = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p",
             "typical_p": "typical_p", "repetition_penalty": "repetition_penalty",
             "frequency_penalty": "frequency_penalty", "presence_penalty": "presence_penalty",
             "no_repeat_ngram_size": "no_repeat_ngram_size", "do_sample": "do_sample", "seed": "seed",
             "num_beams": "num_beams", "length_penalty": "length_penalty", "min_length": "min_new_tokens",
             "max_new_tokens": "max_new_tokens", "early_stopping": "early_stopping", "top_n_sigma": "top_n_sigma",
             "xtc_probability": "xtc_probability", "xtc_threshold": "xtc_threshold",
             "dry_multiplier": "dry_multiplier", "dry_base": "dry_base", "dry_allowed_length": "dry_allowed_length",
             "mirostat_mode": "mirostat", "mirostat_tau": "mirostat_tau", "mirostat_eta": "mirostat_eta",
             "dynatemp_exponent": "dynatemp_exponent", "repetition_penalty_range": "repetition_penalty_last_n",
             "smoothing_factor": "smoothing_factor", "smoothing_curve": "smoothing_curve", "tfs": "tfs",
             "top_a": "top_a", "adaptive_target": "adaptive_target", "adaptive_decay": "adaptive_decay",
             "guidance_scale": "guidance_scale", "negative_prompt": "negative_prompt", "grammar_string": "grammar"}
WEBUI_NEUTRAL = {"encoder_repetition_penalty": 1, "penalty_alpha": 0,
                 "temperature_last": False, "dynamic_temperature": False,
                 "dynatemp_low": 1, "dynatemp_high": 1, "custom_token_bans": "", "sampler_priority": None}
HANDLED = {"epsilon_cutoff", "eta_cutoff", "dynamic_temperature", "dynatemp_low", "dynatemp_high",
           "dry_sequence_breakers", "custom_token_bans", "sampler_priority", "temperature_last"}
CUTOFF_UNIT = 1e-4  # the webui writes epsilon_cutoff and eta_cutoff in units of 1e-4

# decodelab stage -> the webui's sampler_priority names
PRIORITY = {name: list(STAGE[name].webui) for name in SAMPLER_STAGES}
FROM_PRIORITY = {name: stage for stage, names in PRIORITY.items() for name in names}


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
    notes: list[str] = []
    for key, value in data.items():
        if key in WEBUI_MAP:
            fields[WEBUI_MAP[key]] = value
        elif key in HANDLED:
            continue
        elif WEBUI_NEUTRAL.get(key, object()) != value:
            close = difflib.get_close_matches(str(key), list(WEBUI_MAP) + list(HANDLED), n=1, cutoff=0.75)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            notes.append(f"{key}={value!r} has no decodelab equivalent and was NOT imported{hint}")
    _import_special(data, fields, notes)
    if fields.get("seed") == -1:
        fields["seed"] = None
    if fields.get("num_beams", 1) > 1:
        fields["do_sample"] = False
    if fields.get("top_n_sigma", 0) < 0:
        fields["top_n_sigma"] = 0.0
    return Converted(DecodingConfig.from_dict(fields, where="text-generation-webui preset"), notes)


def _import_special(data: dict, fields: dict, notes: list[str]) -> None:
    for key in ("epsilon_cutoff", "eta_cutoff"):
        if data.get(key):
            fields[key] = round(data[key] * CUTOFF_UNIT, 12)  # 3 x 1e-4 is 0.00030000000000000003 in floats
    if data.get("dynamic_temperature"):
        low, high = float(data.get("dynatemp_low", 1)), float(data.get("dynatemp_high", 1))
        fields.update(temperature=(low + high) / 2, dynatemp_range=(high - low) / 2)
        if "temperature" in data and data["temperature"] != fields["temperature"]:
            notes.append(f"dynamic temperature {low:g}..{high:g} is temperature {fields['temperature']:g} ± "
                         f"{fields['dynatemp_range']:g} here; the preset's temperature={data['temperature']!r} is "
                         "replaced (the webui ignores it when dynamic temperature is on)")
    if data.get("dry_sequence_breakers"):
        fields["dry_sequence_breakers"] = _breakers(data["dry_sequence_breakers"])
    if data.get("custom_token_bans"):
        bans = [int(t) for t in str(data["custom_token_bans"]).split(",") if t.strip()]
        fields["logit_bias"] = [(t, float("-inf")) for t in bans]
    order = data.get("sampler_priority")
    if isinstance(order, str):
        order = order.split()
    if order:
        stages = list(dict.fromkeys(FROM_PRIORITY[n] for n in order if n in FROM_PRIORITY))
        for index, stage in enumerate(SAMPLER_STAGES):  # a stage the webui has no name for follows its default
            if not PRIORITY[stage] and stage not in stages:  # predecessor, as the export wrote it
                before = SAMPLER_STAGES[index - 1] if index else None
                stages.insert(stages.index(before) + 1 if before in stages else 0, stage)
        fields["sampler_order"] = stages
        dropped = [n for n in order if n not in FROM_PRIORITY]
        if dropped:
            notes.append(f"sampler_priority entries {dropped} have no decodelab stage and are ignored")
    if data.get("temperature_last"):  # the webui moves temperature, dynamic temperature and quadratic sampling last
        base = fields.get("sampler_order") or list(PRIORITY)
        last = ("temperature", "smoothing")
        fields["sampler_order"] = [s for s in base if s not in last] + list(last)


def _breakers(value) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    try:
        return json.loads(f"[{value}]")
    except json.JSONDecodeError:
        raise ConfigError(f"dry_sequence_breakers={value!r}: write quoted strings separated by commas") from None


def to_webui(config: DecodingConfig) -> Converted:
    """A text-generation-webui preset (YAML text), neutral values explicit."""
    import yaml

    from ...config import effective_order

    data = {"do_sample": config.samples, "temperature": config.temperature, "top_p": config.top_p,
            "top_k": config.top_k, "min_p": config.min_p, "typical_p": config.typical_p,
            "repetition_penalty": config.repetition_penalty,
            "repetition_penalty_range": config.repetition_penalty_last_n,
            "frequency_penalty": config.frequency_penalty, "presence_penalty": config.presence_penalty,
            "no_repeat_ngram_size": config.no_repeat_ngram_size, "num_beams": config.num_beams,
            "length_penalty": config.length_penalty, "early_stopping": config.early_stopping,
            "min_length": config.min_new_tokens, "max_new_tokens": config.max_new_tokens,
            "seed": -1 if config.seed is None else config.seed,
            "top_n_sigma": config.top_n_sigma, "xtc_probability": config.xtc_probability,
            "xtc_threshold": config.xtc_threshold, "dry_multiplier": config.dry_multiplier, "dry_base": config.dry_base,
            "dry_allowed_length": config.dry_allowed_length,
            "dry_sequence_breakers": ", ".join(json.dumps(b) for b in config.dry_sequence_breakers),
            "mirostat_mode": config.mirostat, "mirostat_tau": config.mirostat_tau, "mirostat_eta": config.mirostat_eta,
            "dynamic_temperature": bool(config.dynatemp_range),
            "dynatemp_low": max(0.0, config.temperature - config.dynatemp_range),
            "dynatemp_high": config.temperature + config.dynatemp_range, "dynatemp_exponent": config.dynatemp_exponent,
            "epsilon_cutoff": round(config.epsilon_cutoff / CUTOFF_UNIT, 9),
            "eta_cutoff": round(config.eta_cutoff / CUTOFF_UNIT, 9),
            "smoothing_factor": config.smoothing_factor, "smoothing_curve": config.smoothing_curve,
            "tfs": config.tfs, "top_a": config.top_a, "adaptive_target": config.adaptive_target,
            "adaptive_decay": config.adaptive_decay, "guidance_scale": config.guidance_scale,
            "negative_prompt": config.negative_prompt,
            "smoothing_factor": config.smoothing_factor, "smoothing_curve": config.smoothing_curve,
            "tfs": config.tfs, "top_a": config.top_a, "adaptive_target": config.adaptive_target,
            "adaptive_decay": config.adaptive_decay,
            "temperature_last": False,
            "grammar_string": config.grammar or (choice_gbnf(config.choice) if config.choice else ""),
            "sampler_priority": [n for s in effective_order(config) for n in PRIORITY[s]]}
    notes = unsupported(config, "text-generation-webui", {"banned_strings": (), "stop_strings": (), "top_h": 0.0,
                                                          "logprob_tokens": (), "json_schema": "", "regex": ""})
    if config.json_schema:
        notes.append("the webui takes grammars only: turn the schema into GBNF with llama.cpp's "
                     "json_schema_to_grammar.py and put it in grammar_string")
    notes += _webui_notes(config, data)
    return Converted(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), notes)


def _webui_notes(config: DecodingConfig, data: dict) -> list[str]:
    notes = ["epsilon_cutoff and eta_cutoff are written in the webui's units of 1e-4"]
    bans = [k for k, b in config.logit_bias if isinstance(k, int) and b == float("-inf")]
    if bans:
        data["custom_token_bans"] = ",".join(str(t) for t in bans)
    if len(bans) < len(config.logit_bias):
        notes.append("the webui's presets only ban token ids (custom_token_bans): other logit_bias entries are "
                     "NOT carried over")
    if config.dry_multiplier and config.dry_penalty_last_n > 0:
        notes.append(f"the webui's DRY scans the repetition_penalty_range window, not dry_penalty_last_n="
                     f"{config.dry_penalty_last_n}")
    if config.dynatemp_range > config.temperature:
        notes.append("dynatemp_low is clamped at 0 as llama.cpp does, so the range is no longer symmetric")
    return notes
