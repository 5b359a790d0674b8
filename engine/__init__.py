"""decodelab's engine: decoding configs, presets, model loading and batched generation.

Importing it is cheap: torch and transformers load only when a loading or generation name is used.
It never imports textual, rich or the tui package.
"""

from __future__ import annotations

from .config import FIELD_HELP, FIELD_NAMES, ConfigError, DecodingConfig
from .library.presets import (
    PresetExistsError,
    dumps_preset,
    find_preset,
    list_presets,
    load_preset,
    loads_preset,
    save_preset,
)

_LAZY = {
    "ModelSpec": "decodelab.engine.backends.loading",
    "LoadedModel": "decodelab.engine.backends.loading",
    "ModelLoadError": "decodelab.engine.backends.base",
    "load_model": "decodelab.engine.backends.loading",
    "demo_model_path": "decodelab.engine.backends.catalog",
    "load_model_profile": "decodelab.engine.library.profiles",
    "save_model_profile": "decodelab.engine.library.profiles",
    "generate_many": "decodelab.engine.session",
    "run_prompts": "decodelab.engine.session",
    "Session": "decodelab.engine.session",
    "Job": "decodelab.engine.session",
    "Backend": "decodelab.engine.backends.base",
    "Completion": "decodelab.engine.results",
    "TokenStep": "decodelab.engine.results",
    "Alternative": "decodelab.engine.results",
    "StepEvent": "decodelab.engine.results",
    "GenerationError": "decodelab.engine.results",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'decodelab.engine' has no attribute {name!r}")


__all__ = [
    "FIELD_HELP", "FIELD_NAMES", "ConfigError", "DecodingConfig", "PresetExistsError", "dumps_preset",
    "find_preset", "list_presets", "load_preset", "loads_preset", "save_preset", *_LAZY,
]
