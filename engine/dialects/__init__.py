"""One Dialect per stack, read from the settings table's columns (base.py), and the exports and imports built on
them: HF's generation_config.json, vLLM's SamplingParams, the OpenAI API, llama.cpp's command line and server,
text-generation-webui's presets. Every export and import returns its notes: settings the other side lacks,
defaults made explicit, semantics that differ. Nothing is dropped silently. A new target is a column of the
table, a module here and a line in EXPORTERS.
"""

from __future__ import annotations

import json

from ..config import ConfigError, DecodingConfig
from .base import Dialect
from .common import Converted
from .hf import HF, from_hf, to_hf
from .llamacpp import LLAMACPP, llamacpp_samplers, to_llamacpp
from .openai import OPENAI, to_openai
from .vllm import VLLM, to_vllm
from .webui import WEBUI, from_webui_yaml, preset_name, to_webui

DIALECTS: dict[str, Dialect] = {"hf": HF, "vllm": VLLM, "openai": OPENAI, "llamacpp": LLAMACPP, "webui": WEBUI}
EXPORTERS = {"hf": to_hf, "vllm": to_vllm, "openai": to_openai, "llamacpp": to_llamacpp, "webui": to_webui}
FORMATS = tuple(EXPORTERS)


EXPORT_NAMES = {"hf": ("transformers", "generation_config.json", "{name}.generation_config.json"),
                "vllm": ("vLLM", "SamplingParams (JSON)", "{name}.vllm.json"),
                "openai": ("OpenAI", "request fields (JSON)", "{name}.openai.json"),
                "llamacpp": ("llama.cpp", "command-line flags", "{name}.llamacpp.txt"),
                "webui": ("text-generation-webui", "a preset (YAML)", "{name}.yaml")}
"""Per export format: the stack, what the export is, and a file name for it."""


def export_preset(config: DecodingConfig, fmt: str) -> Converted:
    if fmt not in EXPORTERS:
        raise ConfigError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return EXPORTERS[fmt](config)


def export_text(config: DecodingConfig, fmt: str) -> tuple[str, list[str]]:
    """The export as the text a file holds (JSON, YAML or flags, ending in a newline) and the notes on what the
    target does not carry over."""
    converted = export_preset(config, fmt)
    text = converted.text() if fmt != "llamacpp" else str(converted.data) + "\n"
    return text, converted.notes


def import_preset_text(text: str, filename: str, name: str) -> Converted:
    """Pick the importer by file name: .json is HF generation_config, .yaml/.yml is text-generation-webui."""
    if filename.endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{filename} is not valid JSON: {exc}") from None
        return from_hf(data, name)
    if filename.endswith((".yaml", ".yml")):
        try:
            return from_webui_yaml(text, name)
        except ConfigError as exc:
            if str(exc).startswith("not valid YAML"):
                raise ConfigError(f"{filename} is {exc}", field=exc.field) from None
            raise
    raise ConfigError(f"cannot tell the format of {filename}: use a .json generation_config or a .yaml webui preset")


__all__ = ["DIALECTS", "EXPORTERS", "EXPORT_NAMES", "FORMATS", "Converted", "Dialect", "export_preset", "export_text", "from_hf", "from_webui_yaml",
           "import_preset_text", "llamacpp_samplers", "preset_name", "to_hf", "to_llamacpp", "to_openai", "to_vllm",
           "to_webui"]
