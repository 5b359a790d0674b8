"""engine/ must stay importable without the TUI: no textual, rich or tui in sys.modules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules_after(code: str) -> set[str]:
    script = code + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_engine_imports_no_ui():
    loaded = _modules_after(
        "import engine, engine.config, engine.presets, engine.loading, engine.generation, engine.sampling,"
        " engine.beams, engine.profiles, engine.rows\n"
        "from engine import generate_many, load_model, ModelSpec"
    )
    for banned in ("textual", "rich", "tui"):
        assert not any(m == banned or m.startswith(banned + ".") for m in loaded), banned
    assert "engine.generation" in loaded  # the check ran against the real modules


def test_every_engine_module_is_checked():
    names = {p.stem for p in (ROOT / "engine").glob("*.py")} - {"__init__"}
    loaded = _modules_after("import importlib\n" + "\n".join(f"importlib.import_module('engine.{n}')" for n in names))
    assert not any(m.split(".")[0] in {"textual", "rich", "tui"} for m in loaded)


def test_plain_import_is_light():
    loaded = _modules_after("import engine")
    assert "torch" not in loaded  # torch loads only when a model or generation name is used
