"""Write the table of names (every setting in each stack's name and spelling, from engine/dialects/) into README.md.

    python scripts/names_table.py          # rewrites the table between its markers
"""

from __future__ import annotations

from pathlib import Path

from decodelab.engine.dialects.table import END, START, with_table

README = Path(__file__).resolve().parents[1] / "README.md"

if __name__ == "__main__":
    text = README.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"README.md has no {START} ... {END} markers")
    README.write_text(with_table(text), encoding="utf-8")
    print("README.md: table of names written")
