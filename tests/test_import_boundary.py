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
    for banned in ("textual", "rich", "decodelab.tui"):
        assert not any(m == banned or m.startswith(banned + ".") for m in loaded), banned
    assert "decodelab.engine.decoding.run" in loaded  # the check ran against the real modules


def test_every_engine_module_is_checked():
    names = {p.stem for p in (ROOT / "decodelab.engine").glob("*.py")} - {"__init__"}
    loaded = _modules_after("import importlib\n" + "\n".join(f"importlib.import_module('decodelab.engine.{n}')" for n in names))
    assert not any(m.split(".")[0] in {"textual", "rich", "decodelab.tui"} for m in loaded)


def test_plain_import_is_light():
    loaded = _modules_after("import engine")
    assert "torch" not in loaded  # torch loads only when a model or generation name is used


# -- the arrows between layers, read from every import statement (function-local ones included) -----------

import ast  # noqa: E402

LAYERS = {  # a package: the top-level packages it must never import
    "decodelab.engine": {"textual", "rich", "decodelab.tui", "decodelab.cli", "decodelab.server", "decodelab.render", "decodelab.themes"},
    "decodelab.render": {"decodelab.tui", "decodelab.cli", "decodelab.server", "textual"},
    "decodelab.themes": {"decodelab.tui", "decodelab.cli", "decodelab.server", "decodelab.render"},
    "decodelab.tui": {"decodelab.cli", "decodelab.server"},
    "decodelab.server": {"decodelab.tui", "decodelab.cli", "decodelab.render", "decodelab.themes", "textual", "rich"},  # an HTTP layer over engine only
    "decodelab.cli": {"decodelab.tui.screens", "decodelab.tui.widgets", "decodelab.tui.actions"},  # cli opens the app (tui.app) and nothing under it
}


def imported_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _violations(package: str, banned: set[str]) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in imported_names(path):
            if any(name == b or name.startswith(b + ".") for b in banned):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


def test_layers_import_only_downwards():
    for package, banned in LAYERS.items():
        assert (ROOT / package).is_dir(), package
        assert _violations(package, banned) == []


def test_the_import_scan_sees_function_local_imports(tmp_path):
    """The scan must catch an import hidden inside a function, as tui once had `from cli.sweep_cmd import`."""
    sample = tmp_path / "m.py"
    sample.write_text("def show():\n    from cli.sweep_cmd import results_table\n    import rich.table\n")
    assert imported_names(sample) == {"decodelab.cli.sweep_cmd", "rich.table"}


def test_shared_renderers_live_below_tui_and_cli():
    loaded = _modules_after("import render.tables, render.pictures")
    assert not any(m.split(".")[0] in {"decodelab.tui", "decodelab.cli", "textual", "decodelab.server"} for m in loaded)
