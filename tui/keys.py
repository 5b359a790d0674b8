"""Every key of the main screen, once: the App's and the Pane's bindings and the command palette come from KEYS.

scope "main": bound on the main screen (tui/screens/main.py), so no dialog or other screen sees it; scope "pane":
bound on the Pane widget, so it acts on that pane (the palette runs it on the current pane). An action names the
App's part that does it and its method, with arguments: "panes.move(-1)" is Panes.move(pane, -1) (tui/app.py's
do() runs it; a pane key's method takes the pane first).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from textual.binding import Binding


@dataclass(frozen=True)
class Key:
    keys: str
    """Textual key names, comma-separated."""
    action: str
    title: str
    """The command palette's entry ("" keeps the key out of the palette)."""
    help: str = ""
    scope: str = "main"
    footer: str | None = None
    """Shown in the footer under this label; None keeps it out of the footer."""
    shown: str | None = None
    """How the help text writes the key (default: the first key name)."""

    def key_text(self) -> str:
        return self.shown or self.keys.split(",")[0]


KEYS: tuple[Key, ...] = (
    Key("ctrl+r", "runner.run_all", "Run all panes", "one batched run; unseeded panes get fresh seeds", footer="Run"),
    Key("escape", "runner.escape", "Cancel the run", footer="Cancel", shown="esc"),
    Key("a", "panes.add", "Add a pane from a preset", footer="Add"),
    Key("e", "panes.edit", "Edit this pane's config", scope="pane", footer="Edit"),
    Key("h", "panes.heatmap", "Next heatmap measure", "probability, processed, rank, entropy, surprisal, constraint "
        "(when a pane has a json_schema, regex, choice or grammar), kl (with a reference pane, shift+r), off",
        footer="Heatmap"),
    Key("i", "tokens.toggle_inspector", "Toggle the token inspector",
        "← → walk a pane's tokens; esc in a pane closes it",
        footer="Inspect"),
    Key("s", "files.save_preset", "Save this pane as a preset", scope="pane", footer="Save"),
    Key("ctrl+g", "runner.rerun_same", "Rerun with the same seeds", "reproduce the last run exactly"),
    Key("full_stop", "runner.rerun_pane", "Rerun this pane", "run only the focused pane", scope="pane", shown="."),
    Key("d", "panes.duplicate", "Duplicate this pane", scope="pane"),
    Key("x,delete", "panes.remove", "Remove this pane", "u brings it back", scope="pane"),
    Key("u", "panes.undo", "Undo", "brings back the last removed pane, or undoes the last = or shift+n"),
    Key("equals_sign", "panes.set_everywhere", "Set a field on every pane", "FIELD=VALUE, checked like the editor; "
        "u undoes it", shown="="),
    Key("k", "runner.stop_pane", "Stop this pane's run", "the other panes go on", scope="pane"),
    Key("less_than_sign", "panes.move(-1)", "Move this pane left", scope="pane", shown="<"),
    Key("greater_than_sign", "panes.move(1)", "Move this pane right", scope="pane", shown=">"),
    Key("left", "tokens.walk(-1)", "", "walk the pane's tokens: the previous one", scope="pane", shown="←"),
    Key("right", "tokens.walk(1)", "", "the next token", scope="pane", shown="→"),
    Key("home", "tokens.walk(-100000)", "", "the first token", scope="pane", shown="Home"),
    Key("end", "tokens.walk(100000)", "", "the last token", scope="pane", shown="End"),
    Key("down,i", "tokens.open_alternatives", "Into the alternatives", "esc or i goes back to the pane", scope="pane",
        shown="↓ or i in a pane"),
    Key("b", "tokens.branch_pane", "Branch from the chosen alternative",
        "reruns that pane from the alternative highlighted "
        "in the inspector (Enter there does the same)", scope="pane"),
    Key("left_square_bracket", "tokens.show_version(-1)", "Show the pane's older version",
        "earlier runs and branches are kept",
        scope="pane", shown="["),
    Key("right_square_bracket", "tokens.show_version(1)", "Show the pane's newer version", scope="pane", shown="]"),
    Key("ctrl+n", "talk.next_turn", "Send the next message to every pane",
        "the prompt box's text becomes the next user "
        "message; each pane answers after its own reply"),
    Key("n", "talk.next_turn_pane", "Send the next message to this pane", "only this pane's conversation goes on",
        scope="pane"),
    Key("w", "talk.continue_pane", "Continue this pane's reply", "it writes on from its last token", scope="pane"),
    Key("left_curly_bracket", "talk.turn(-1)", "Show the previous turn", "in every pane; ctrl+r there makes a new "
        "version of that turn", shown="{"),
    Key("right_curly_bracket", "talk.turn(1)", "Show the next turn", shown="}"),
    Key("N", "talk.new_conversation", "Start a new conversation", "every pane's earlier turns are set aside; u brings "
        "them back", shown="shift+n"),
    Key("P", "talk.system_prompt", "Set the system prompt", "every pane's conversation starts with it",
        shown="shift+p"),
    Key("v", "panes.diff", "Mark where panes diverge", "cycles off, vs greedy, vs the left neighbour"),
    Key("c", "files.copy_text", "Copy this pane's text", scope="pane"),
    Key("y", "files.copy_config", "Copy this pane's config (TOML)", scope="pane"),
    Key("f", "files.show_config", "Show this pane's whole config", "every field it sets, and which of them mattered in "
        "its last run", scope="pane"),
    Key("E", "files.export", "Export this pane's config for another stack", "transformers, vLLM, OpenAI, llama.cpp "
        "or the webui, saying what each drops; y copies, w writes a file", scope="pane", shown="shift+e"),
    Key("ctrl+s", "files.save_session", "Save the session"),
    Key("ctrl+o", "files.open_session_dialog", "Open a session"),
    Key("F", "autosave.start_fresh", "Start fresh", "the command line's panes and an empty prompt; the workspace "
        "so far is set aside (ctrl+o opens it)", shown="shift+f"),
    Key("ctrl+t", "shelf.toggle_chat", "Toggle the chat template"),
    Key("m", "shelf.change_model", "Load another model", "every pane without a model of its own runs on it"),
    Key("M", "shelf.pane_model", "Put this pane on a model of its own", "a model and load settings, e.g. "
        "smollm2,dtype=bfloat16 or smollm2,engine=llama.cpp; loaded once, shared by its panes", scope="pane",
        shown="shift+m"),
    Key("R", "compare.toggle", "Make this pane the reference (★): measure the others against it", "KL per token "
        "(h: kl heatmap), top-1 agreement, where outputs part, perplexity; again: off", scope="pane",
        shown="shift+r"),
    Key("p", "panes.focus_prompt", "Back to the prompt", "esc leaves it again"),
    Key("t", "panes.toggle_theme", "Toggle dark/light theme"),
    Key("A", "panes.arena", "Blind A/B between the panes", "vote on shuffled outputs, tally saved", shown="shift+a"),
    Key("S", "panes.sweep", "Sweep around this pane's config", "grid, random or Bayesian search", scope="pane",
        shown="shift+s"),
    Key("1", "panes.focus(0)", "", "focus pane N (and bring it into view)", shown="1–9"),
    *(Key(str(n), f"panes.focus({n - 1})", "", footer=None) for n in range(2, 10)),
)


GROUPS = {"runner": "Running", "panes": "Panes", "tokens": "Tokens, alternatives, branches and versions",
          "talk": "Conversations", "files": "Presets, copying, sessions", "autosave": "Presets, copying, sessions",
          "shelf": "Models", "compare": "Comparing against a reference pane"}
"""The help screen's groups (?, F1): a key's group is the part that does it."""

KEY_NAMES = {"escape": "esc", "question_mark": "?", "full_stop": ".", "equals_sign": "=", "less_than_sign": "<",
             "greater_than_sign": ">", "left_square_bracket": "[", "right_square_bracket": "]",
             "left_curly_bracket": "{", "right_curly_bracket": "}", "left": "←", "right": "→", "up": "↑",
             "down": "↓", "enter": "Enter", "space": "space", "delete": "Delete", "home": "Home", "end": "End",
             "f1": "F1", "tab": "Tab"}


def key_name(keys: str) -> str:
    """How the help writes Textual key names: "escape" is esc, "R" is shift+r, "down,i" is "↓ or i"."""
    def one(k: str) -> str:
        if len(k) == 1 and k.isupper():
            return f"shift+{k.lower()}"
        return KEY_NAMES.get(k, k)

    return " or ".join(one(k) for k in keys.split(","))


def help_groups() -> list[tuple[str, list[tuple[str, str, bool]]]]:
    """Every main-screen key, grouped by what it does: (group, [(key, what it does, acts on the pane)])."""
    groups: dict[str, list[tuple[str, str, bool]]] = {}
    for key in KEYS:
        text = key.title or key.help
        if not text:
            continue
        if key.title and key.help:
            text = f"{key.title}: {key.help}"
        part = key.action.split(".")[0]
        groups.setdefault(GROUPS[part], []).append((key.shown or key_name(key.keys), text, key.scope == "pane"))
    return list(groups.items())


def bindings(scope: str) -> list[Binding]:
    """The Textual bindings of one scope ("main" or "pane"): each runs do(action) where it is bound."""
    return [Binding(k.keys, f"do({k.action!r})", k.footer or k.title or k.action, show=k.footer is not None)
            for k in KEYS if k.scope == scope]


def palette(app):
    """(title, help, callback) for every key with a title; pane keys act on the app's current pane."""
    for key in KEYS:
        if not key.title:
            continue
        help_text = f"{key.key_text()}: {key.help}" if key.help else key.key_text()
        yield key.title, help_text, partial(_run, app, key)


async def _run(app, key: Key) -> None:
    if key.scope == "pane":
        pane = app.pane()
        if pane is None:
            app.notify("No pane to act on: press a to add one.", severity="warning")
            return
        app.do(key.action, pane)
    else:
        app.do(key.action)
