"""Sessions: a whole comparison (prompt, model spec, configs, seeds, outputs) in one JSON file."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ConfigError, DecodingConfig
from ..results import Completion, completion_from_dict, completion_to_dict
from .fileio import load_document, save_document

SESSION_SCHEMA = 1


def user_data_dir(kind: str) -> Path:
    """Where the TUI offers to keep sessions ("sessions") and A/B tallies ("ab"): $DECODELAB_CONFIG_DIR/<kind>,
    else the platform's data folder; never the current folder, which is often a git clone."""
    override = os.environ.get("DECODELAB_CONFIG_DIR")
    if override:
        return Path(override) / kind
    import platformdirs

    return Path(platformdirs.user_data_dir("decodelab", appauthor=False)) / kind


def new_session_path(now=None) -> Path:
    """A fresh file name in the sessions folder: session-2026-12-01-0753.json."""
    import datetime

    stamp = (now or datetime.datetime.now()).strftime("%Y-%m-%d-%H%M")
    return user_data_dir("sessions") / f"session-{stamp}.json"


def last_session_path() -> Path | None:
    """The newest session file in the sessions folder, if any."""
    folder = user_data_dir("sessions")
    files = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    return files[-1] if files else None


@dataclass
class Session:
    """What a comparison needs to be reopened or sent to a colleague."""

    prompt: str
    model: dict
    configs: list[DecodingConfig]
    completions: list[Completion | None] = field(default_factory=list)

    def to_dict(self) -> dict:
        outputs = list(self.completions) + [None] * (len(self.configs) - len(self.completions))
        return {"schema": SESSION_SCHEMA, "kind": "decodelab-session", "prompt": self.prompt, "model": self.model,
                "panes": [{"config": c.to_dict(), "completion": completion_to_dict(o) if o else None}
                          for c, o in zip(self.configs, outputs)]}


def dumps_session(session: Session) -> str:
    return json.dumps(session.to_dict(), ensure_ascii=False, indent=1, allow_nan=False) + "\n"


def loads_session(text: str, where: str = "session") -> Session:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") != "decodelab-session":
        raise ConfigError(f"{where} is not a decodelab session file")
    if data.get("schema") != SESSION_SCHEMA:
        raise ConfigError(f"{where} has schema {data.get('schema')!r}; this decodelab reads {SESSION_SCHEMA}")
    try:
        panes = data["panes"]
        configs = [DecodingConfig.from_dict(p["config"], where=where) for p in panes]
        completions = [completion_from_dict(p["completion"]) if p.get("completion") else None for p in panes]
        prompt, model = data["prompt"], data["model"]
    except ConfigError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where} is damaged ({type(exc).__name__}: {exc})") from None
    if not isinstance(prompt, str) or not isinstance(model, dict):
        raise ConfigError(f"{where} is damaged (prompt or model has the wrong type)")
    return Session(prompt=prompt, model=model, configs=configs, completions=completions)


def save_session(session: Session, path: str | os.PathLike, overwrite: bool = False) -> Path:
    return save_document(path, dumps_session(session), "session file", overwrite=overwrite)


def load_session(path: str | os.PathLike) -> Session:
    return loads_session(load_document(path, "session"), where=f"session {path}")
