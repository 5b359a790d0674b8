"""The README's table of names: every setting under each stack's name and spelling, made from the dialects (so it
cannot drift from what the exports write). `python scripts/names_table.py` writes it into README.md."""

from __future__ import annotations

from ..config import SAME, SETTINGS, Spell
from . import DIALECTS

COLUMNS = (("hf", "HF generate"), ("vllm", "vLLM"), ("openai", "OpenAI"), ("llamacpp", "llama.cpp server / CLI"),
           ("webui", "text-generation-webui"))
START, END = "<!-- names: made by scripts/names_table.py -->", "<!-- /names -->"


def _cell(stack: str, name: str) -> str:
    spell: Spell | None = DIALECTS[stack].spell(name)
    if spell is None or not spell.name:
        return "—"
    text = f"`{spell.name}`"
    if stack == "llamacpp":
        flag = spell.flag or "--" + spell.name.replace("_", "-")
        text += f" / `{flag}`"
    more = []
    if spell.off is not SAME:
        more.append(f"off = {spell.off!r}".replace("None", "null"))
    if spell.whole is not SAME:
        more.append(f"whole context = {spell.whole}")
    if spell.none is not SAME:
        more.append(f"random seed = {spell.none}")
    if spell.unit != 1:
        more.append(f"in units of {spell.unit:g}")
    return text + (f" ({'; '.join(more)})" if more else "")


def names_table() -> str:
    """Markdown: a row per setting that some stack names, a column per stack."""
    lines = ["| decodelab | " + " | ".join(title for _, title in COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 1) + "|"]
    for s in SETTINGS:
        cells = [_cell(stack, s.name) for stack, _ in COLUMNS]
        if any(c != "—" for c in cells):
            lines.append(f"| `{s.name}` | " + " | ".join(cells) + " |")
    others = [s.name for s in SETTINGS if s.stage and all(_cell(stack, s.name) == "—" for stack, _ in COLUMNS)]
    lines.append("")
    lines.append("decodelab only: " + ", ".join(f"`{name}`" for name in others) + ".")
    return "\n".join(lines)


def with_table(readme: str) -> str:
    """The README with its table of names replaced by the current one."""
    head, _, rest = readme.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{names_table()}\n{END}{tail}"
