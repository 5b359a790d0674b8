"""Atomic, no-clobber text file writes and careful text reads, shared by presets, profiles and sessions."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..config import ConfigError


class TargetExistsError(FileExistsError):
    """The destination exists and overwriting was not asked for."""


def atomic_write_text(path: str | os.PathLike, text: str, *, overwrite: bool = False) -> Path:
    """Write text to path via a temporary file in the same folder, then rename.

    Without overwrite, an existing file is never replaced: the final step is a hard link, which
    fails atomically when the name is taken. No temporary file is left behind on any error.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite and path.exists():
        raise TargetExistsError(f"{path} already exists")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a preset or export is meant to be shared
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise TargetExistsError(f"{path} already exists") from None
            except OSError:  # a filesystem without hard links: check-then-rename is the best we have
                if path.exists():
                    raise TargetExistsError(f"{path} already exists") from None
                os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_text_file(path: str | os.PathLike, what: str) -> str:
    """Read a UTF-8 text file; raise ValueError with a clear message for missing, binary or empty files."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"{what} {path} is a folder, not a file") from None
    except OSError as exc:
        raise ValueError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if b"\x00" in data:
        raise ValueError(f"{what} {path} is a binary file, not TOML text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{what} {path} is not UTF-8 text (is it a binary file?)") from None


def save_document(path: str | os.PathLike, text: str, what: str, *, overwrite: bool = False,
                  exists_error: type[ConfigError] = ConfigError,
                  hint: str = "choose another name or allow overwriting") -> Path:
    """atomic_write_text for a user's document (preset, profile, session): every failure is a ConfigError."""
    try:
        return atomic_write_text(path, text, overwrite=overwrite)
    except TargetExistsError:
        raise exists_error(f"{what} {path} already exists; {hint}") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {what} {path}: {exc.strerror or exc}") from None


def load_document(path: str | os.PathLike, what: str) -> str:
    """read_text_file for a user's document: every failure is a ConfigError."""
    try:
        return read_text_file(path, what)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
