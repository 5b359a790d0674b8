"""engine/ must stay importable without the TUI: no textual, rich, tui, cli or server in sys.modules.

The static arrows between packages (every import statement) are checked in test_layout.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_layout import code_files, module_name

ROOT = Path(__file__).resolve().parents[1]


def _modules_after(code: str) -> set[str]:
    script = code + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_engine_imports_no_ui():
    loaded = _modules_after(
        "import decodelab.engine, decodelab.engine.config, decodelab.engine.library.presets,"
        " decodelab.engine.backends.loading, decodelab.engine.decoding.loop, decodelab.engine.sampling,"
        " decodelab.engine.decoding.beams, decodelab.engine.library.profiles, decodelab.engine.decoding.rows\n"
        "from decodelab.engine import generate_many, load_model, ModelSpec"
    )
    for banned in ("textual", "rich", "decodelab.tui", "decodelab.cli", "decodelab.server"):
        assert not any(m == banned or m.startswith(banned + ".") for m in loaded), banned
    assert "decodelab.engine.decoding.loop" in loaded  # the check ran against the real modules


def engine_modules() -> list[str]:
    """Every module under engine/, as its installed name (decodelab.engine.decoding.loop, ...)."""
    return [module_name(path)[0] for path in code_files(["engine"])]


def test_every_engine_module_is_checked():
    names = engine_modules()
    assert len(names) > 40 and "decodelab.engine.dialects.webui" in names
    loaded = _modules_after("import importlib\n" + "\n".join(f"importlib.import_module({n!r})" for n in names))
    assert set(names) <= loaded
    assert not any(m.split(".")[0] in {"textual", "rich"} or m.startswith(("decodelab.tui", "decodelab.cli",
                   "decodelab.server", "decodelab.render", "decodelab.themes")) for m in loaded)


def test_plain_import_is_light():
    loaded = _modules_after("import decodelab.engine")
    assert "torch" not in loaded  # torch loads only when a model or generation name is used


def test_shared_renderers_live_below_tui_and_cli():
    loaded = _modules_after("import decodelab.render.tables, decodelab.render.pictures")
    assert "decodelab.render.tables" in loaded
    assert not any(m.startswith(("decodelab.tui", "decodelab.cli", "decodelab.server", "textual")) for m in loaded)
