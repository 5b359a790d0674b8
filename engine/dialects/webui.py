"""text-generation-webui presets (YAML): import and export, in its own names and units.

The table's webui column gives the names, the cutoffs' units of 1e-4, mirostat_mode and a seed of -1;
this file adds what has a shape of its own there: dynamic temperature as low/high, DRY's breakers as one
text, token bans, grammars, and sampler_priority. The webui sorts its samplers by their place in
sampler_priority and puts every sampler the list lacks first, so the export lists every stage it has.
Where llama.cpp and the webui differ (XTC, DRY, Mirostat), decodelab follows llama.cpp.
"""

from __future__ import annotations

import difflib
import json
import re

from ..config import STAGE_TABLE, ConfigError, DecodingConfig
from ..grammars import choice_gbnf
from .base import Dialect
from .common import CONSTRAINTS, Converted

WEBUI = Dialect("webui", "text-generation-webui", greedy_temperature=None, inert_order=("encoder_repetition_penalty",))

NEUTRAL = {"encoder_repetition_penalty": 1, "penalty_alpha": 0, "temperature_last": False, "dynamic_temperature": False,
           "dynatemp_low": 1, "dynatemp_high": 1, "custom_token_bans": "", "sampler_priority": None}
"""The webui's own settings decodelab has no row for, at the values that change nothing."""
WEBUI_MAX_NEW = 512
"""The webui's default max_new_tokens (a UI setting, not in its presets)."""
SHAPED = {"dynamic_temperature", "dynatemp_low", "dynatemp_high", "dry_sequence_breakers", "custom_token_bans",
          "sampler_priority", "temperature_last", "grammar_string"}
"""The webui's keys read here by hand, not through the table."""


def preset_name(stem: str) -> str:
    """A valid decodelab preset name from a preset's file name: "Verbose (Beam Search)" -> "Verbose-Beam-Search"
    (letters, digits, '-', '_', '.'; 64 at most; starting with a letter or digit)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")[:64].rstrip("-._")
    return name or "imported"


def from_webui_yaml(text: str, name: str = "imported") -> Converted:
    """A DecodingConfig from a text-generation-webui preset (YAML)."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:  # one line: the problem and where (PyYAML's own text is five, with a caret)
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"not valid YAML: {problem}{where}") from None
    if not isinstance(data, dict):
        raise ConfigError("a text-generation-webui preset must be a YAML mapping of setting: value")
    fields: dict = {"name": name, "do_sample": True}
    notes: list[str] = []
    ours = WEBUI.aliases()
    for key, value in data.items():
        if key in ours and key not in SHAPED:
            fields[ours[key]] = WEBUI.read(ours[key], value)
        elif key in SHAPED:
            continue
        elif NEUTRAL.get(key, object()) != value:
            close = difflib.get_close_matches(str(key), list(ours) + list(SHAPED), n=1, cutoff=0.75)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            notes.append(f"{key}={value!r} has no decodelab equivalent and was NOT imported{hint}")
    _import_shaped(data, fields, notes)
    if fields.get("num_beams", 1) > 1:
        fields["do_sample"] = False
    if "max_new_tokens" not in fields and fields.get("min_new_tokens", 0) > DecodingConfig().max_new_tokens:
        fields["max_new_tokens"] = max(WEBUI_MAX_NEW, fields["min_new_tokens"])  # set outside the webui's presets
        notes.append(f"min_length={fields['min_new_tokens']} is above decodelab's default max_new_tokens, so "
                     f"max_new_tokens is {fields['max_new_tokens']} (the webui's own default; it sets it outside "
                     "its presets)")
    if fields.get("top_n_sigma", 0) < 0:
        fields["top_n_sigma"] = 0.0
    return Converted(DecodingConfig.from_dict(fields, where="text-generation-webui preset"), notes)


def _import_shaped(data: dict, fields: dict, notes: list[str]) -> None:
    if data.get("dynamic_temperature"):
        low, high = float(data.get("dynatemp_low", 1)), float(data.get("dynatemp_high", 1))
        fields.update(temperature=(low + high) / 2, dynatemp_range=(high - low) / 2)
        if "temperature" in data and data["temperature"] not in (1, fields["temperature"]):
            notes.append(f"dynamic temperature {low:g}..{high:g} is temperature {fields['temperature']:g} ± "
                         f"{fields['dynatemp_range']:g} here; the preset's temperature={data['temperature']!r} is "
                         "replaced (the webui divides by it before its dynamic temperature; decodelab does not)")
    if data.get("dry_sequence_breakers"):
        fields["dry_sequence_breakers"] = _breakers(data["dry_sequence_breakers"])
    if data.get("custom_token_bans"):
        bans = [int(t) for t in str(data["custom_token_bans"]).split(",") if t.strip()]
        fields["logit_bias"] = [(t, float("-inf")) for t in bans]
    if data.get("grammar_string"):
        fields["grammar"] = data["grammar_string"]
    order = data.get("sampler_priority")
    if isinstance(order, str):
        order = order.split()
    if order:
        fields["sampler_order"], dropped = WEBUI.read_order(order)
        if dropped:
            notes.append(f"sampler_priority entries {dropped} have no decodelab stage and are ignored")
    if data.get("temperature_last"):  # the webui moves temperature, dynamic temperature and quadratic sampling last
        base = fields.get("sampler_order") or [row.name for row in STAGE_TABLE if row.place == "chain"
                                               and WEBUI._stage_names(row.name)]
        last = [WEBUI.stage_of()[n] for n in ("temperature", "quadratic_sampling")]
        fields["sampler_order"] = [s for s in base if s not in last] + last


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

    data = WEBUI.fields(config, skip={"dry_sequence_breakers"})
    dynamic = config.dynatemp_range > 0
    if dynamic:  # the webui's Transformers loader divides by temperature, then applies its dynamic temperature
        data["temperature"] = 1.0
    data.update(dynamic_temperature=dynamic, dynatemp_low=round(max(0.0, config.temperature - config.dynatemp_range), 9),
                dynatemp_high=round(config.temperature + config.dynatemp_range, 9),
                dry_sequence_breakers=", ".join(json.dumps(b) for b in config.dry_sequence_breakers),
                temperature_last=False,
                grammar_string=config.grammar or (choice_gbnf(config.choice) if config.choice else ""),
                sampler_priority=WEBUI.order(config))
    notes = WEBUI.notes(config, handled=CONSTRAINTS | {"logit_bias", "sampler_order", "dynatemp_range"})
    if config.json_schema:
        notes.append("the webui takes grammars only: turn the schema into GBNF with llama.cpp's "
                     "json_schema_to_grammar.py and put it in grammar_string")
    if config.regex:
        notes.append(f"the webui has no regex constraint: this preset's regex={config.regex!r} is NOT carried over")
    bans = [k for k, b in config.logit_bias if isinstance(k, int) and b == float("-inf")]
    if bans:
        data["custom_token_bans"] = ",".join(str(t) for t in bans)
    if len(bans) < len(config.logit_bias):
        notes.append("the webui's presets only ban token ids (custom_token_bans): other logit_bias entries are "
                     "NOT carried over")
    if dynamic:
        notes.append("dynamic temperature is written as dynatemp_low/high with temperature 1 (the webui divides by "
                     "the temperature before its dynamic temperature)")
        if config.dynatemp_range > config.temperature:
            notes.append("dynatemp_low is clamped at 0 as llama.cpp does, so the range is no longer symmetric")
    return Converted(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), notes)
