"""The layout: one installed name (decodelab), imports that point down only, no cycles.

Every import statement counts, function-local ones included; relative imports are resolved to the
installed name they mean (from engine/decoding/loop.py, `from ..config import` is decodelab.engine.config).
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "tui", "cli", "server", "render", "themes")
"""The repository's top-level package folders, installed as decodelab.<folder>."""
OTHER_CODE = ("tests", "benchmarks", "scripts", "decodelab")

# A package -> the packages it must never import (installed names).
FORBIDDEN = {
    "engine": {"textual", "rich", "decodelab.tui", "decodelab.cli", "decodelab.server", "decodelab.render",
               "decodelab.themes"},
    "render": {"decodelab.tui", "decodelab.cli", "decodelab.server", "textual"},
    "themes": {"decodelab.tui", "decodelab.cli", "decodelab.server", "decodelab.render"},
    "tui": {"decodelab.cli", "decodelab.server"},
    "server": {"decodelab.tui", "decodelab.cli", "decodelab.render", "decodelab.themes", "textual", "rich"},
    "cli": {"decodelab.tui.screens", "decodelab.tui.widgets", "decodelab.tui.actions"},  # cli opens tui.app only
}
# engine's sub-packages, top to bottom: a module may import its own layer or the ones below it.
ENGINE_LAYERS = ["experiments", "session", "library", "backends", "dialects", "decoding", "runners", "sampling",
                 "(core)"]


def module_name(path: Path) -> tuple[str, bool]:
    """The installed name of a file under a package folder, and whether it is a package's __init__."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    if parts[0] != "decodelab":
        parts = ["decodelab", *parts]
    return ".".join(parts), is_package


def _type_only(tree: ast.AST) -> set[int]:
    """The ids of the import nodes inside `if TYPE_CHECKING:` blocks (they never run: types only)."""
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            hidden |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return hidden


def imports(path: Path, me: str | None = None, is_package: bool = False,
            runtime_only: bool = False) -> list[tuple[int, str, int]]:
    """(line, imported name, level) for every import in the file; relative ones resolved against me. runtime_only
    leaves out the imports under `if TYPE_CHECKING:`."""
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    hidden = _type_only(tree) if runtime_only else set()
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                assert me is not None, f"{path}: a relative import outside a package"
                anchor = me.split(".") if is_package else me.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:  # `from pkg import module` imports pkg.module
                found.append((node.lineno, f"{base}.{alias.name}", node.level))
    return found


def code_files(folders) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def graph(runtime_only: bool = False) -> dict[str, set[str]]:
    """Installed module name -> the project modules it imports (a name resolves to the longest module); with
    runtime_only, the imports that run (not those under `if TYPE_CHECKING:`)."""
    files = {module_name(p): p for p in code_files(PACKAGES)}
    known = {name for name, _ in files}
    edges: dict[str, set[str]] = {}
    for (name, is_package), path in files.items():
        targets = set()
        for _, imported, _ in imports(path, name, is_package, runtime_only):
            while imported and imported not in known:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and imported != "decodelab":
                targets.add(imported)
        edges[name] = targets
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_file_imports_a_bare_top_level_package():
    bare = []
    for path in code_files(PACKAGES + OTHER_CODE):
        for line, name, level in imports(path, *(module_name(path) if path.parts[len(ROOT.parts)] in PACKAGES
                                                 else (None, False))):
            if level == 0 and name.split(".")[0] in PACKAGES:
                bare.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert bare == []


def test_imports_inside_a_package_are_relative():
    absolute = []
    for path in code_files(PACKAGES):
        top = "decodelab." + path.relative_to(ROOT).parts[0]
        for line, name, level in imports(path, *module_name(path)):
            if level == 0 and (name == top or name.startswith(top + ".")):
                absolute.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert absolute == []


def test_layers_import_only_downwards():
    wrong = []
    for package, banned in FORBIDDEN.items():
        for path in code_files([package]):
            for line, name, _ in imports(path, *module_name(path)):
                if any(name == b or name.startswith(b + ".") for b in banned):
                    wrong.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert wrong == []


def _engine_layer(module: str) -> int:
    parts = module.split(".")
    sub = parts[2] if len(parts) > 3 or (len(parts) == 3 and parts[2] in ENGINE_LAYERS) else "(core)"
    return ENGINE_LAYERS.index(sub) if sub in ENGINE_LAYERS else ENGINE_LAYERS.index("(core)")


def test_engine_sub_packages_import_only_downwards():
    upward = [f"{src} imports {dst}" for src, targets in graph().items() if src.startswith("decodelab.engine.")
              for dst in targets if dst.startswith("decodelab.engine.") and _engine_layer(dst) < _engine_layer(src)]
    assert upward == []


def test_there_are_no_import_cycles():
    """No cycle among the imports that run. An annotation may name a type of a module that imports this one (under
    `if TYPE_CHECKING:`, which never runs); layering still holds for those (the two tests above)."""
    edges = graph(runtime_only=True)
    assert len(edges) > 80 and "decodelab.engine.decoding.loop" in edges["decodelab.engine.decoding.run"]
    assert cycles(edges) == []


def test_type_only_imports_are_left_out_of_the_runtime_graph_and_nothing_else(tmp_path):
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import T\n"
              "def f():\n    from .c import y\n")
    (tmp_path / "b.py").write_text(source)
    assert [n for _, n, _ in imports(tmp_path / "b.py", "p.b", runtime_only=True)] == ["typing.TYPE_CHECKING", "p.c.y"]
    assert [n for _, n, _ in imports(tmp_path / "b.py", "p.b")] == ["typing.TYPE_CHECKING", "p.a.T", "p.c.y"]


def test_the_cycle_finder_finds_a_cycle_through_function_local_imports(tmp_path):
    """The check must see what hid the old cycles: an import inside a function."""
    (tmp_path / "a.py").write_text("from .b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    from .a import y\n")
    edges = {"a": {"b"}, "b": set()}
    for _, name, level in imports(tmp_path / "b.py", "pkg.b"):
        assert (name, level) == ("pkg.a.y", 1)
        edges["b"].add("a")
    assert cycles(edges) == [["a", "b"]]


DATA_FOLDERS = {"decodelab.engine.demo_model", "decodelab.engine.library.builtin_presets"}
"""Folders of data files only, installed as data-only packages (listed, so setuptools does not warn)."""


def test_pyproject_lists_every_package_folder():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {module_name(p.parent / "__init__.py")[0] for p in code_files(PACKAGES) if p.name == "__init__.py"}
    assert folders | {"decodelab"} | DATA_FOLDERS == set(config["packages"])
    subfolders = {module_name(p / "__init__.py")[0] for top in PACKAGES for p in (ROOT / top).rglob("*")
                  if p.is_dir() and p.name != "__pycache__"}
    assert subfolders <= set(config["packages"])  # a folder setuptools does not know of is left out silently
    assert config["package-dir"] == {"decodelab": "decodelab", **{f"decodelab.{p}": p for p in PACKAGES}}


def test_the_wheel_installs_only_decodelab(tmp_path):
    source = tmp_path / "src"  # a copy, so the build leaves no build/ folder in the checkout
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "tests", "__pycache__", "build",
                                                                 "*.egg-info", ".pytest_cache", ".hypothesis"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v",
                            "-w", str(tmp_path), str(source)], check=True, capture_output=True, text=True, timeout=300)
    assert "absent from the `packages` configuration" not in build.stdout + build.stderr  # setuptools' warning
    (wheel,) = tmp_path.glob("decodelab-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"decodelab"}
    for needed in ("decodelab/engine/decoding/loop.py", "decodelab/engine/demo_model/model.safetensors",
                   "decodelab/engine/library/builtin_presets/greedy.toml", "decodelab/themes/app.tcss"):
        assert needed in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "decodelab = decodelab.cli.main:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_a_plain_checkout_imports_as_decodelab_without_an_install():
    """decodelab/engine, decodelab/tui, ... are links to the top-level folders, so an editor, a type checker and a plain
    `python` in the checkout resolve decodelab.* with no install: here site-packages is on the path for the
    dependencies, but not the editable install's finder (python -S skips the .pth that installs it)."""
    import sysconfig

    for folder in PACKAGES:
        link = ROOT / "decodelab" / folder
        assert link.is_symlink() and link.resolve() == (ROOT / folder).resolve(), folder
    purelib = sysconfig.get_paths()["purelib"]
    code = (f"import sys; sys.path.append({purelib!r}); import decodelab.engine.dialects as d, decodelab.server.schemas "
            "as s, decodelab.cli.main as c; print(d.__file__); assert 'editable' not in repr(sys.meta_path)")
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(ROOT / "decodelab" / "engine"))


def test_every_public_function_of_the_engine_and_the_server_is_annotated():
    """Issue 31: the public functions of engine/ and server/ say their types (mypy checks them in make test)."""
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("annotations", root / "scripts" / "annotations.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _, _, public, missing = module.count([str(root / "engine"), str(root / "server")])
    assert public > 500 and not missing, missing[:20]
