"""Every decodelab setting over HTTP, under its own name and its llama.cpp, vLLM, HF and text-generation-webui
names (from the settings table), with the few values those stacks spell differently.

take_settings() pulls these fields out of a request body before the pydantic model sees it (so the model's
"unknown field" 400 still catches typos), and returns them as decodelab fields; Sampling.config() applies
them with the same validation as everywhere else, and a 400 names the field as the client sent it.
"""

from __future__ import annotations

from decodelab.engine.config import SAMPLER_STAGES, SETTING, SETTINGS

from .errors import ApiError

HANDLED_ELSEWHERE = frozenset({"name", "description", "max_new_tokens", "stop_strings", "seed", "temperature",
                               "top_p", "top_k", "min_p", "typical_p", "repetition_penalty", "frequency_penalty",
                               "presence_penalty", "no_repeat_ngram_size", "num_beams", "length_penalty",
                               "min_new_tokens", "logprob_tokens"})
"""Settings the request models declare themselves (OpenAI's and vLLM's own fields), or that need an answer
format of their own (logprob_tokens)."""


def _aliases() -> dict[str, str]:
    out: dict[str, str] = {}
    for s in SETTINGS:
        if s.name in HANDLED_ELSEWHERE:
            continue
        for name in (s.name, s.hf, s.vllm, s.llamacpp, s.webui):
            if name:
                out.setdefault(name, s.name)
    out["repeat_penalty"] = "repetition_penalty"  # llama.cpp's name for a field Sampling declares as vLLM's
    return out


ALIASES = _aliases()
"""Request field -> decodelab setting, e.g. repeat_last_n -> repetition_penalty_last_n, mirostat_mode -> mirostat."""

# llama.cpp's --samplers / "samplers" names and text-generation-webui's sampler_priority names
LLAMACPP_STAGES = {"penalties": "penalties", "dry": "dry", "temperature": "temperature", "top_n_sigma": "top_n_sigma",
                   "top_k": "top_k", "top_p": "top_p", "min_p": "min_p", "typ_p": "typical_p",
                   "typical_p": "typical_p", "xtc": "xtc"}
LLAMACPP_LAST = frozenset({"adaptive_p", "dist", "mirostat", "mirostat_v2", "infill"})
"""llama.cpp samplers that always end the chain (decodelab's selection stages): accepted, nothing to order."""
WEBUI_STAGES = {"repetition_penalty": "penalties", "presence_penalty": "penalties", "frequency_penalty": "penalties",
                "dry": "dry", "no_repeat_ngram": "no_repeat_ngram", "temperature": "temperature",
                "dynamic_temperature": "temperature", "quadratic_sampling": "smoothing", "top_n_sigma": "top_n_sigma",
                "top_k": "top_k", "top_p": "top_p", "min_p": "min_p", "typical_p": "typical_p",
                "epsilon_cutoff": "epsilon_cutoff", "eta_cutoff": "eta_cutoff", "tfs": "tfs", "top_a": "top_a",
                "xtc": "xtc"}
WEBUI_NOT_HERE = frozenset({"encoder_repetition_penalty", "mirostat"})
"""text-generation-webui stages decodelab does not order (Mirostat always ends the chain here)."""


STRUCTURED_OUTPUTS = {"json": "json_schema", "regex": "regex", "choice": "choice", "grammar": "grammar"}
"""vLLM's structured_outputs keys -> decodelab settings."""


def take_settings(data: dict) -> tuple[dict, dict[str, str]]:
    """Remove the settings fields from the body: (decodelab field -> value, decodelab field -> the name sent)."""
    fields: dict = {}
    sent: dict[str, str] = {}
    _take_structured(data, fields, sent)
    for key in [k for k in data if k in ALIASES]:
        field, value = ALIASES[key], data.pop(key)
        if value is None:
            continue  # null means the default, as OpenAI's SDKs send it
        if field in sent:
            raise ApiError(400, f"{key} and {sent[field]} are the same setting ({field}): send one of them", param=key)
        fields[field], sent[field] = _translate(key, value), key
    return fields, sent


def _take_structured(data: dict, fields: dict, sent: dict[str, str]) -> None:
    """OpenAI's response_format and vLLM's structured_outputs, as decodelab's constraint settings."""
    form = data.pop("response_format", None)
    if form is not None:
        kind = form.get("type") if isinstance(form, dict) else None
        if kind == "json_object":
            fields["json_schema"], sent["json_schema"] = {"type": "object"}, "response_format"
        elif kind == "json_schema":
            spec = form.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("schema"), (dict, bool)):
                raise ApiError(400, "response_format.json_schema.schema must be a JSON Schema object",
                               param="response_format")
            fields["json_schema"], sent["json_schema"] = spec["schema"], "response_format"
        elif kind not in (None, "text") or not isinstance(form, dict):
            raise ApiError(400, "response_format.type must be text, json_object or json_schema",
                           param="response_format")
    outputs = data.pop("structured_outputs", None)
    if outputs is None:
        return
    if not isinstance(outputs, dict):
        raise ApiError(400, "structured_outputs must be an object such as {\"json\": {...}}",
                       param="structured_outputs")
    if outputs.get("json_object"):
        outputs = {**outputs, "json": {"type": "object"}}
    unknown = set(outputs) - set(STRUCTURED_OUTPUTS) - {"json_object"}
    if unknown:
        raise ApiError(400, f"structured_outputs.{sorted(unknown)[0]} is not supported; decodelab takes "
                       f"{', '.join(STRUCTURED_OUTPUTS)}", param="structured_outputs")
    for key, field in STRUCTURED_OUTPUTS.items():
        if outputs.get(key) is not None:
            if field in sent:
                raise ApiError(400, f"structured_outputs.{key} and {sent[field]} are the same setting ({field}): "
                               "send one of them", param="structured_outputs")
            fields[field], sent[field] = outputs[key], "structured_outputs"


def _translate(key: str, value):
    """The few values another stack spells differently from decodelab."""
    if key == "top_n_sigma" and isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        return 0.0  # llama.cpp's -1 is off
    if key in ("repeat_last_n", "dry_penalty_last_n") and value == -1:
        return 0  # llama.cpp's -1 is the whole context, decodelab's 0
    if key == "repeat_last_n" and value == 0:
        raise ApiError(400, "repeat_last_n=0 switches llama.cpp's penalties off, while decodelab's 0 means the whole "
                       "context: send -1 for the whole context, or leave repeat_penalty out", param=key)
    if key == "samplers":
        return _order(key, value, LLAMACPP_STAGES, LLAMACPP_LAST)
    if key == "sampler_priority":
        return _order(key, value, WEBUI_STAGES, WEBUI_NOT_HERE)
    return value


def _order(key: str, value, names: dict[str, str], skipped: frozenset[str]) -> list[str]:
    if isinstance(value, str):
        value = [v for v in value.replace(";", " ").replace(",", " ").replace("\n", " ").split() if v]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(400, f"{key} must be a list of sampler names (or one text of names separated by ';')",
                       param=key)
    unknown = [v for v in value if v not in names and v not in skipped and v not in SAMPLER_STAGES]
    if unknown:
        raise ApiError(400, f"{key}: {unknown[0]!r} is not a sampler decodelab knows; known: "
                       f"{', '.join(sorted(set(names) | set(SAMPLER_STAGES)))}", param=key)
    return list(dict.fromkeys(names.get(v, v) for v in value if v not in skipped))


def sent_name(field: str, sent: dict[str, str]) -> str:
    """The name the client used for a decodelab setting (its vLLM or own name when it came another way)."""
    return sent.get(field) or SETTING[field].vllm or field
