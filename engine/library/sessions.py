"""Sessions: a whole comparison (prompt, system prompt, model spec, configs, seeds, outputs, and each pane's
conversation: every turn with every version) in one JSON file.

Schema 2 adds "system" and, per pane, "conversation" (see conversation_record); schema 1 files still open.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import ConfigError, DecodingConfig
from ..conversation import Prompt
from ..results import Completion, completion_from_dict, completion_to_dict
from .fileio import load_document, save_document

if TYPE_CHECKING:
    import datetime

SESSION_SCHEMA = 2
READABLE = (1, 2)


def user_data_dir(kind: str) -> Path:
    """Where the TUI offers to keep sessions ("sessions") and A/B tallies ("ab"): $DECODELAB_CONFIG_DIR/<kind>,
    else the platform's data folder; never the current folder, which is often a git clone."""
    override = os.environ.get("DECODELAB_CONFIG_DIR")
    if override:
        return Path(override) / kind
    import platformdirs

    return Path(platformdirs.user_data_dir("decodelab", appauthor=False)) / kind


def new_session_path(now: datetime.datetime | None = None) -> Path:
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
    system: str | None = None
    conversations: list[dict | None] = field(default_factory=list)
    """Per pane, its turns and versions (a conversation record), or None for just the output above."""
    pane_models: list[dict | None] = field(default_factory=list)
    """Per pane, its own model and load settings (a ModelSpec as a dict), or None for the session's model."""
    reference: int | None = None
    """The reference pane (★, shift+r) by its index, or None. Its figures are measured again on load."""

    def to_dict(self) -> dict:
        n = len(self.configs)
        outputs = list(self.completions) + [None] * (n - len(self.completions))
        records = list(self.conversations) + [None] * (n - len(self.conversations))
        models = list(self.pane_models) + [None] * (n - len(self.pane_models))
        panes = []
        for config, output, record, model in zip(self.configs, outputs, records, models):
            pane = {"config": config.to_dict(), "completion": completion_to_dict(output) if output else None}
            if record is not None:
                pane["conversation"] = record
            if model is not None:
                pane["model"] = model
            panes.append(pane)
        doc = {"schema": SESSION_SCHEMA, "kind": "decodelab-session", "prompt": self.prompt, "system": self.system,
               "model": self.model, "panes": panes}
        if self.reference is not None:
            doc["reference"] = self.reference
        return doc


def version_record(number: int, config: DecodingConfig, completion: Completion, prompt: Prompt | None,
                   branched_at: int | None, parent: int | None, error: str | None) -> dict:
    """One version of one turn of a pane: what it ran (config, prompt: text or messages) and what it made."""
    return {"number": number, "config": config.to_dict(), "prompt": prompt, "branched_at": branched_at,
            "parent": parent, "error": error, "completion": completion_to_dict(completion)}


def read_version(data: dict, where: str) -> dict:
    """A version record's fields, checked: config and completion come back as objects."""
    from ..conversation import check_messages

    prompt = data.get("prompt")
    if isinstance(prompt, list):
        prompt = check_messages(prompt, where)
    elif prompt is not None and not isinstance(prompt, str):
        raise ValueError("a version's prompt must be text or messages")
    optional_int = {k: data.get(k) for k in ("branched_at", "parent")}
    if any(v is not None and not isinstance(v, int) for v in optional_int.values()):
        raise ValueError("branched_at and parent must be integers")
    return {"number": int(data["number"]), "config": DecodingConfig.from_dict(data["config"], where=where),
            "completion": completion_from_dict(data["completion"]), "prompt": prompt, "error": data.get("error"),
            **optional_int}


def dumps_session(session: Session) -> str:
    return json.dumps(session.to_dict(), ensure_ascii=False, indent=1, allow_nan=False) + "\n"


def loads_session(text: str, where: str = "session") -> Session:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") != "decodelab-session":
        raise ConfigError(f"{where} is not a decodelab session file")
    if data.get("schema") not in READABLE:
        raise ConfigError(f"{where} has schema {data.get('schema')!r}; this decodelab reads "
                          f"{' and '.join(map(str, READABLE))}")
    try:
        panes = data["panes"]
        configs = [DecodingConfig.from_dict(p["config"], where=where) for p in panes]
        completions = [completion_from_dict(p["completion"]) if p.get("completion") else None for p in panes]
        prompt, model, system = data["prompt"], data["model"], data.get("system")
        conversations = [p.get("conversation") for p in panes]
        pane_models = [p.get("model") for p in panes]
        if not all(m is None or isinstance(m, dict) for m in pane_models):
            raise ConfigError(f"{where} is damaged: a pane's model is not a table of load settings")
        if not all(c is None or isinstance(c, dict) for c in conversations):
            raise ValueError("a pane's conversation must be an object")
        reference = data.get("reference")
        if reference is not None and not (type(reference) is int and 0 <= reference < len(panes)):
            raise ValueError(f"reference {reference!r} is not one of the {len(panes)} panes")
    except ConfigError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where} is damaged ({type(exc).__name__}: {exc})") from None
    if not isinstance(prompt, str) or not isinstance(model, dict) or not isinstance(system, (str, type(None))):
        raise ConfigError(f"{where} is damaged (prompt, system or model has the wrong type)")
    return Session(prompt=prompt, model=model, configs=configs, completions=completions, system=system,
                   pane_models=pane_models, conversations=conversations, reference=reference)


# -- the autosave: the TUI's workspace, kept between starts ---------------------------------------------------
AUTOSAVE_LIMIT = 16 * 2**20
"""The most bytes the autosave takes: beyond it, tokens keep fewer alternatives, then none (autosave_text)."""


def autosave_path() -> Path:
    """Where the TUI keeps its workspace between starts (restored on the next `decodelab` without --fresh)."""
    return user_data_dir("autosave") / "workspace.json"


KEEP_PREVIOUS = 10
"""How many workspaces set aside are kept (the oldest beyond it are deleted)."""


def previous_workspace_path() -> Path:
    """A new file for a workspace set aside (shift+f, or a start with panes named on the command line):
    previous-workspace-<date>-<time>.json, never one that exists, so setting aside never overwrites an earlier one."""
    import datetime

    folder = user_data_dir("autosave")
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path, n = folder / f"previous-workspace-{stamp}.json", 1
    while path.exists():
        n += 1
        path = folder / f"previous-workspace-{stamp}-{n}.json"
    return path


def previous_workspaces() -> list[Path]:
    """The workspaces set aside, newest first."""
    folder = user_data_dir("autosave")
    return sorted(folder.glob("previous-workspace*.json"), key=lambda p: (p.stat().st_mtime_ns, p.name),
                  reverse=True)


def prune_previous(keep: int = KEEP_PREVIOUS) -> list[Path]:
    """Delete the workspaces set aside beyond the newest `keep`; the ones deleted."""
    gone = previous_workspaces()[keep:]
    for path in gone:
        try:
            path.unlink()
        except OSError:
            pass
    return gone


def autosave_text(session: Session, limit: int = AUTOSAVE_LIMIT) -> tuple[str | None, str]:
    """The autosave of a session, at most limit bytes, and what it left out ("" for nothing). Over the limit, each
    token first loses its stage trace and all but 5 alternatives, then every alternative; None when even that is
    too big (the outputs' text and token ids alone)."""
    doc = session.to_dict()
    text = json.dumps(doc, ensure_ascii=False, allow_nan=False)
    if len(text.encode()) <= limit:
        return text + "\n", ""
    for keep, said in ((5, "the stage traces and all but 5 alternatives per token"),
                       (0, "the stage traces and every token's alternatives")):
        _slim(doc, keep)
        text = json.dumps(doc, ensure_ascii=False, allow_nan=False)
        if len(text.encode()) <= limit:
            return text + "\n", said
    return None, f"everything: even without alternatives it is over {limit / 2**20:.0f} MB"


def _slim(node: object, keep: int) -> None:
    """Cut every token record below node to `keep` alternatives, without its stage trace or named tokens."""
    if isinstance(node, dict):
        tokens = node.get("tokens")
        if isinstance(tokens, list) and tokens and isinstance(tokens[0], dict) and "alternatives" in tokens[0]:
            for step in tokens:
                step.pop("stages", None)
                step.pop("named", None)
                step["alternatives"] = step["alternatives"][:keep]
        for value in node.values():
            _slim(value, keep)
    elif isinstance(node, list):
        for value in node:
            _slim(value, keep)


def save_session(session: Session, path: str | os.PathLike, overwrite: bool = False) -> Path:
    return save_document(path, dumps_session(session), "session file", overwrite=overwrite)


def load_session(path: str | os.PathLike) -> Session:
    return loads_session(load_document(path, "session"), where=f"session {path}")
