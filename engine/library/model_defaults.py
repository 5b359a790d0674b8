"""The decoding settings a model ships in its generation_config.json, offered as the "model defaults" preset.

HF `generate()` applies these silently; decodelab's presets stay neutral and this one says where it came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import ConfigError, DecodingConfig

if TYPE_CHECKING:
    from ..backends.base import Backend

NAME = "model defaults"
SAMPLING_KEYS = {"do_sample", "temperature", "top_k", "top_p", "min_p", "typical_p", "repetition_penalty",
                 "no_repeat_ngram_size", "num_beams", "length_penalty"}


@dataclass(frozen=True)
class ModelDefaults:
    config: DecodingConfig
    origin: str
    """The generation_config.json the settings were read from."""
    notes: tuple[str, ...] = ()
    """Settings in the file that decodelab cannot apply (listed, not dropped silently)."""


def generation_config_file(loaded: Backend) -> Path | None:
    """The model's generation_config.json on disk: in its folder, or in the local HF cache for a hub id."""
    source = getattr(loaded, "source", "") or ""
    if not source:  # a remote server has no files here
        return None
    folder = Path(source)
    if folder.is_dir():
        path = folder / "generation_config.json"
        return path if path.is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(source, "generation_config.json")
    except Exception:  # noqa: BLE001 - not a hub id, or no cache: no file
        return None
    return Path(found) if isinstance(found, str) else None


def model_defaults(loaded: Backend) -> ModelDefaults | None:
    """The model's own recommended decoding settings, or None when it ships none (only ids, say)."""
    path = generation_config_file(loaded)
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not SAMPLING_KEYS & {k for k, v in data.items() if v is not None}:
        return None
    from ..dialects.hf import from_hf

    try:
        converted = from_hf(data, name=NAME)
    except ConfigError:
        return None
    assert isinstance(converted.data, DecodingConfig)  # from_hf converts to a config
    config = converted.data.replace(description=f"{loaded.name}'s generation_config.json ({path})")
    return ModelDefaults(config=config, origin=str(path), notes=tuple(converted.notes))
