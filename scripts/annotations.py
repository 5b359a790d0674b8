"""Count the type annotations of engine/ and server/ (issue 31's figures).

    python scripts/annotations.py engine server      # parameters annotated, public functions fully annotated
    python scripts/annotations.py engine -v          # and list the public functions that are not

A public function is one whose name does not start with "_" (and __init__, __call__): all its parameters but
self/cls and its return (but __init__'s) are annotated. tests/test_layout.py holds engine/ and server/ to all.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def count(roots: list[str]) -> tuple[int, int, int, list[str]]:
    """(parameters, annotated parameters, public functions, the public functions not fully annotated)."""
    params = annotated = public = 0
    missing: list[str] = []
    for root in roots:
        for path in sorted(Path(root).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                a = node.args
                args = [x for x in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
                        if x is not None and x.arg not in ("self", "cls")]
                params += len(args)
                annotated += sum(x.annotation is not None for x in args)
                if node.name.startswith("_") and node.name not in ("__init__", "__call__"):
                    continue
                public += 1
                if any(x.annotation is None for x in args) or (node.returns is None and node.name != "__init__"):
                    missing.append(f"{path}:{node.lineno} {node.name}")
    return params, annotated, public, missing


if __name__ == "__main__":
    roots = [a for a in sys.argv[1:] if not a.startswith("-")] or ["engine", "server"]
    params, annotated, public, missing = count(roots)
    print(f"parameters annotated {annotated}/{params} = {annotated / max(params, 1):.0%}; public functions fully "
          f"annotated {public - len(missing)}/{public} = {(public - len(missing)) / max(public, 1):.0%}")
    if "-v" in sys.argv:
        print("\n".join(missing))
