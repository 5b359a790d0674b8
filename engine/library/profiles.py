"""Model profiles: a ModelSpec saved as TOML, kept apart from decoding presets."""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from pathlib import Path

import tomli_w

from ..backends.loading import ModelSpec
from ..config import ConfigError
from .fileio import load_document, save_document

PROFILE_SCHEMA = 1
_FIELDS = tuple(f.name for f in dataclasses.fields(ModelSpec))


def dumps_model_profile(spec: ModelSpec) -> str:
    body = {"schema": PROFILE_SCHEMA, "kind": "model", **dataclasses.asdict(spec)}
    return "# decodelab model profile\n" + tomli_w.dumps(body)


def loads_model_profile(text: str, where: str = "model profile") -> ModelSpec:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}") from None
    if data.pop("kind", "model") != "model":
        raise ConfigError(f"{where} is not a model profile (kind must be 'model')")
    schema = data.pop("schema", PROFILE_SCHEMA)
    if schema != PROFILE_SCHEMA:
        raise ConfigError(f"{where} has schema = {schema!r}; this decodelab reads schema {PROFILE_SCHEMA}")
    for key in data:
        if key not in _FIELDS:
            close = difflib.get_close_matches(key, _FIELDS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else f" Known keys: {', '.join(_FIELDS)}."
            raise ConfigError(f"unknown key {key!r} in {where}.{hint}")
    return ModelSpec(**data)


def save_model_profile(spec: ModelSpec, path: str | os.PathLike, overwrite: bool = False) -> Path:
    return save_document(path, dumps_model_profile(spec), "model profile", overwrite=overwrite)


def load_model_profile(path: str | os.PathLike) -> ModelSpec:
    return loads_model_profile(load_document(path, "model profile"), where=f"model profile {path}")
