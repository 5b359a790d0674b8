"""Write DecodingConfig's field declarations (engine/config.py) from the settings table.

    python scripts/config_class.py          # rewrites the fields between their markers

The fields are declared in code so that editors and type checkers see each one; tests/test_config.py fails
when they and SETTINGS part (a row added, renamed, retyped or given another default).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's decodelab, not an installed one
from decodelab.engine.checks import with_fields  # noqa: E402
from decodelab.engine.config import SETTINGS

CONFIG = Path(__file__).resolve().parents[1] / "engine" / "config.py"

if __name__ == "__main__":
    text = CONFIG.read_text(encoding="utf-8")
    written = with_fields(text, SETTINGS)
    if written == text:
        print("engine/config.py: DecodingConfig's fields already match SETTINGS")
    else:
        CONFIG.write_text(written, encoding="utf-8")
        print("engine/config.py: DecodingConfig's fields written from SETTINGS")
