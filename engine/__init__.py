"""decodelab's engine: decoding configs, presets, model loading and batched generation.

Importing it is cheap: torch and transformers load only when a loading or generation name is used.
It never imports textual, rich or the tui package.
"""

from __future__ import annotations

from engine.config import FIELD_HELP, FIELD_NAMES, ConfigError, DecodingConfig
from engine.presets import (
    PresetExistsError,
    dumps_preset,
    find_preset,
    list_presets,
    load_preset,
    loads_preset,
    save_preset,
)

_LAZY = {
    "ModelSpec": "engine.loading",
    "LoadedModel": "engine.loading",
    "ModelLoadError": "engine.loading",
    "load_model": "engine.loading",
    "demo_model_path": "engine.loading",
    "load_model_profile": "engine.profiles",
    "save_model_profile": "engine.profiles",
    "generate_many": "engine.generation",
    "run_prompts": "engine.backend",
    "Backend": "engine.backend",
    "Completion": "engine.results",
    "TokenStep": "engine.results",
    "Alternative": "engine.results",
    "StepEvent": "engine.results",
    "GenerationError": "engine.results",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'engine' has no attribute {name!r}")


__all__ = [
    "FIELD_HELP", "FIELD_NAMES", "ConfigError", "DecodingConfig", "PresetExistsError", "dumps_preset",
    "find_preset", "list_presets", "load_preset", "loads_preset", "save_preset", *_LAZY,
]
