"""Every decodelab setting over HTTP, under its own name and its llama.cpp, vLLM, HF and text-generation-webui
names (from the settings table), with the few values those stacks spell differently.

take_settings() pulls these fields out of a request body before the pydantic model sees it (so the model's
"unknown field" 400 still catches typos), and returns them as decodelab fields; Sampling.config() applies
them with the same validation as everywhere else, and a 400 names the field as the client sent it.
"""

from __future__ import annotations

import math

from decodelab.engine.config import CONSTRAINT_FIELDS, SETTING, ConfigError
from decodelab.engine.dialects import DIALECTS, Dialect
from decodelab.engine.dialects.vllm import VLLM

from .errors import ApiError

HANDLED_ELSEWHERE = frozenset({"name", "description", "max_new_tokens", "stop_strings", "seed", "temperature",
                               "top_p", "top_k", "min_p", "typical_p", "repetition_penalty", "frequency_penalty",
                               "presence_penalty", "no_repeat_ngram_size", "num_beams", "length_penalty",
                               "logprob_tokens"})
"""Settings the request models declare themselves (OpenAI's and vLLM's own fields), or that need an answer
format of their own (logprob_tokens)."""
READ_ORDER = ("llamacpp", "vllm", "hf", "webui", "openai")
"""Where two stacks use one field name, the first of them here says how its values are spelled."""


def _aliases() -> dict[str, tuple[str, Dialect | None]]:
    out: dict[str, tuple[str, Dialect | None]] = {}
    for stack in READ_ORDER:
        for theirs, ours in DIALECTS[stack].aliases().items():
            if ours not in HANDLED_ELSEWHERE or theirs == "repeat_penalty":
                out.setdefault(theirs, (ours, DIALECTS[stack]))  # a stack's spelling (llama.cpp's top_n_sigma -1)
    for name in SETTING:
        if name not in HANDLED_ELSEWHERE:
            out.setdefault(name, (name, None))  # decodelab's own names, as decodelab spells them
    return out


ALIASES = _aliases()
"""Request field -> (decodelab setting, the dialect that spells it), e.g. repeat_last_n -> repetition_penalty_last_n
as llama.cpp writes it, mirostat_mode -> mirostat (the webui's)."""
ORDERS = {DIALECTS["llamacpp"].name("sampler_order"): DIALECTS["llamacpp"],
          DIALECTS["webui"].name("sampler_order"): DIALECTS["webui"]}
"""The stage-order fields: llama.cpp's samplers, the webui's sampler_priority."""


STRUCTURED_OUTPUTS = {"json": "json_schema", "regex": "regex", "choice": "choice", "grammar": "grammar"}
"""vLLM's structured_outputs keys -> decodelab settings."""


def take_settings(data: dict) -> tuple[dict, dict[str, str]]:
    """Remove the settings fields from the body: (decodelab field -> value, decodelab field -> the name sent)."""
    fields: dict = {}
    sent: dict[str, str] = {}
    _take_structured(data, fields, sent)
    for key in [k for k in data if k in ALIASES]:
        (field, dialect), value = ALIASES[key], data.pop(key)
        if value is None:
            continue  # null means the default, as OpenAI's SDKs send it
        if field in sent:
            raise ApiError(400, f"{key} and {sent[field]} are the same setting ({field}): send one of them", param=key)
        fields[field], sent[field] = _translate(key, field, dialect, value), key
    if "logit_bias" in fields:
        check_bias(fields["logit_bias"], sent["logit_bias"])
    for field in CONSTRAINT_FIELDS:
        if field in fields and fields[field] in ("", [], ()):  # decodelab's "off", which nobody sends to mean it
            raise ApiError(400, f"{sent[field]} is empty, so nothing would constrain the output: give "
                           f"{EXAMPLES[field]}, or leave {sent[field]} out", param=sent[field])
    return fields, sent


EXAMPLES = {"choice": "at least one choice (e.g. [\"yes\", \"no\"])", "regex": "a pattern (e.g. \"[0-9]+\")",
            "grammar": "a grammar (e.g. root ::= \"yes\" | \"no\")", "json_schema": "a schema (e.g. {\"type\": \"object\"})"}


RESPONSE_FORMAT_KEYS = {"type", "json_schema", "schema"}
"""OpenAI's response_format keys, and llama.cpp's "schema" beside type (its shape without the json_schema wrapper)."""
JSON_SCHEMA_KEYS = {"name", "description", "schema", "strict"}


def unknown_parameter(path: str) -> ApiError:
    """OpenAI's 400 for a key it does not know inside an object."""
    return ApiError(400, f"Unknown parameter: '{path}'.", param=path, code="unknown_parameter")


def _take_structured(data: dict, fields: dict, sent: dict[str, str]) -> None:
    """OpenAI's response_format (and llama.cpp's shape of it) and vLLM's structured_outputs, as decodelab's
    constraint settings."""
    form = data.pop("response_format", None)
    if form is not None:
        if not isinstance(form, dict):
            raise ApiError(400, "response_format must be an object such as {\"type\": \"json_object\"}",
                           param="response_format")
        for key in form:
            if key not in RESPONSE_FORMAT_KEYS:
                raise unknown_parameter(f"response_format.{key}")
        kind = form.get("type")
        if kind not in ("text", "json_object", "json_schema"):
            raise ApiError(400, f"response_format.type must be text, json_object or json_schema (got {kind!r})",
                           param="response_format.type")
        spec = form.get("json_schema")
        if spec is not None:
            if kind != "json_schema" or not isinstance(spec, dict):
                raise ApiError(400, "response_format.json_schema goes with type json_schema and must be an object "
                               "holding the schema", param="response_format.json_schema")
            for key in spec:
                if key not in JSON_SCHEMA_KEYS:
                    raise unknown_parameter(f"response_format.json_schema.{key}")
            if "schema" in form:
                raise ApiError(400, "response_format has a schema both in json_schema (OpenAI's shape) and beside type "
                               "(llama.cpp's): send one of them", param="response_format.schema")
        schema = spec.get("schema") if spec is not None else form.get("schema")
        if kind == "text":
            if "schema" in form:
                raise ApiError(400, "response_format type text takes no schema: use type json_schema",
                               param="response_format.schema")
        elif kind == "json_object" and schema is None:
            fields["json_schema"], sent["json_schema"] = {"type": "object"}, "response_format"
        else:
            if not isinstance(schema, (dict, bool)):
                where = "response_format.json_schema.schema" if spec is not None else "response_format.schema"
                raise ApiError(400, f"{where} must be a JSON Schema object (OpenAI's shape is "
                               "{\"type\": \"json_schema\", \"json_schema\": {\"name\": ..., \"schema\": {...}}}; "
                               "llama.cpp's is {\"type\": \"json_schema\", \"schema\": {...}})", param="response_format")
            fields["json_schema"], sent["json_schema"] = schema, "response_format"
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
    if not any(outputs.get(key) is not None for key in STRUCTURED_OUTPUTS):  # {} or {"json": null}: no constraint
        raise ApiError(400, "structured_outputs names no constraint, so nothing would constrain the output: give one "
                       f"of {', '.join(STRUCTURED_OUTPUTS)} (e.g. {{\"choice\": [\"yes\", \"no\"]}}), or leave "
                       "structured_outputs out", param="structured_outputs")
    for key, field in STRUCTURED_OUTPUTS.items():
        if outputs.get(key) is not None:
            if field in sent:
                raise ApiError(400, f"structured_outputs.{key} and {sent[field]} are the same setting ({field}): "
                               "send one of them", param="structured_outputs")
            fields[field], sent[field] = outputs[key], "structured_outputs"


def _translate(key: str, field: str, dialect: Dialect | None, value):
    """The value as decodelab's, from the spelling of the stack whose field name the client used."""
    if key in ORDERS:
        return _order(key, value, ORDERS[key])
    if key == VLLM.name("banned_strings") and isinstance(value, list):
        return vllm_bad_words(value)
    if dialect is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    try:
        return dialect.read(field, value, refuse=key != field)  # decodelab's own field name: its own meaning of 0
    except ConfigError as exc:
        raise ApiError(400, str(exc), param=key) from None


def vllm_bad_words(words: list) -> list:
    """vLLM's bad_words as it means them: each word banned as given and with a leading space (vLLM tokenizes both),
    where decodelab's banned_strings bans exactly the text given."""
    out = []
    for word in words:
        out.append(word)
        if isinstance(word, str) and word and not word.startswith(" "):
            out.append(" " + word)
    return list(dict.fromkeys(out))


def _order(key: str, value, dialect: Dialect) -> list[str]:
    if isinstance(value, str):
        value = [v for v in value.replace(";", " ").replace(",", " ").replace("\n", " ").split() if v]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(400, f"{key} must be a list of sampler names (or one text of names separated by ';')",
                       param=key)
    stages, unknown = dialect.read_order(value)
    if unknown:
        raise ApiError(400, f"{key}: {unknown[0]!r} is not a sampler decodelab knows; known: "
                       f"{', '.join(sorted(set(dialect.stage_of()) | dialect.inert_order))}", param=key)
    return stages


def sent_name(field: str, sent: dict[str, str]) -> str:
    """The name the client used for a decodelab setting (its vLLM or own name when it came another way)."""
    return sent.get(field) or VLLM.name(field) or field


def check_bias(bias: object, name: str) -> None:
    """OpenAI bounds each bias to [-100, 100] and says so in its own words (llama.cpp's [[id, bias]] pairs too);
    a text value is the setting's to check (decodelab's "-inf", llama.cpp's false, ban the token)."""
    pairs = bias.items() if isinstance(bias, dict) else (
        [tuple(p) for p in bias if isinstance(p, (list, tuple)) and len(p) == 2] if isinstance(bias, list) else [])
    for key, value in pairs:
        if isinstance(key, str) and key.strip() and not key.strip().isdigit() and _number(key):
            raise ApiError(400, f"Invalid key in '{name}': {key!r} is a number but no token id: give a token id "
                           "(an integer >= 0), or a text to bias its tokens", param=name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value) or not -100 <= value <= 100:
            above = not value < -100
            raise ApiError(400, f"Invalid '{name}.{key}': number {'above maximum' if above else 'below minimum'} "
                           f"value. Expected a value {'<= 100' if above else '>= -100'}, but got {value:g} instead.",
                           param=f"{name}.{key}", code="decimal_above_max_value" if above else "decimal_below_min_value")


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
