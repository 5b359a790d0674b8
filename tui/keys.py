"""Every key of the main screen, once: the App's and the Pane's bindings and the command palette come from KEYS.

scope "app": bound on the App (works from anywhere on the main screen); scope "pane": bound on the Pane
widget, so it acts on that pane (the palette runs it on the current pane). An action is a Textual
action string, run in the binding's own namespace unless it names one ("app.token(-1)").
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
    scope: str = "app"
    footer: str | None = None
    """Shown in the footer under this label; None keeps it out of the footer."""
    shown: str | None = None
    """How the help text writes the key (default: the first key name)."""

    def key_text(self) -> str:
        return self.shown or self.keys.split(",")[0]


KEYS: tuple[Key, ...] = (
    Key("ctrl+r", "run", "Run all panes", "one batched run; unseeded panes get fresh seeds", footer="Run"),
    Key("escape", "cancel", "Cancel the run", footer="Cancel", shown="esc"),
    Key("a", "add_pane", "Add a pane from a preset", footer="Add"),
    Key("e", "edit", "Edit this pane's config", scope="pane", footer="Edit"),
    Key("h", "heatmap", "Next heatmap measure", "probability, processed, rank, entropy, surprisal, constraint "
        "(when a pane has a json_schema, regex, choice or grammar), kl (with a reference pane, shift+r), off",
        footer="Heatmap"),
    Key("i", "inspector", "Toggle the token inspector", "← → walk a pane's tokens; esc in a pane closes it",
        footer="Inspect"),
    Key("s", "save_preset", "Save this pane as a preset", scope="pane", footer="Save"),
    Key("ctrl+g", "rerun_same", "Rerun with the same seeds", "reproduce the last run exactly"),
    Key("full_stop", "rerun_pane", "Rerun this pane", "run only the focused pane", scope="pane", shown="."),
    Key("d", "duplicate", "Duplicate this pane", scope="pane"),
    Key("x,delete", "remove", "Remove this pane", "u brings it back", scope="pane"),
    Key("u", "undo", "Undo", "brings back the last removed pane, or undoes the last = or shift+n"),
    Key("equals_sign", "set_everywhere", "Set a field on every pane", "FIELD=VALUE, checked like the editor; "
        "u undoes it", shown="="),
    Key("k", "stop_pane", "Stop this pane's run", "the other panes go on", scope="pane"),
    Key("less_than_sign", "move(-1)", "Move this pane left", scope="pane", shown="<"),
    Key("greater_than_sign", "move(1)", "Move this pane right", scope="pane", shown=">"),
    Key("left", "token(-1)", "", scope="pane"),
    Key("right", "token(1)", "", scope="pane"),
    Key("home", "token(-100000)", "", scope="pane"),
    Key("end", "token(100000)", "", scope="pane"),
    Key("down,i", "alternatives", "Into the alternatives", "esc or i goes back to the pane", scope="pane",
        shown="↓ or i in a pane"),
    Key("b", "branch", "Branch from the chosen alternative", "reruns that pane from the alternative highlighted "
        "in the inspector (Enter there does the same)", scope="pane"),
    Key("left_square_bracket", "history(-1)", "Show the pane's older version", "earlier runs and branches are kept",
        scope="pane", shown="["),
    Key("right_square_bracket", "history(1)", "Show the pane's newer version", scope="pane", shown="]"),
    Key("ctrl+n", "next_turn", "Send the next message to every pane", "the prompt box's text becomes the next user "
        "message; each pane answers after its own reply"),
    Key("n", "next_turn_pane", "Send the next message to this pane", "only this pane's conversation goes on",
        scope="pane"),
    Key("w", "continue_reply", "Continue this pane's reply", "it writes on from its last token", scope="pane"),
    Key("left_curly_bracket", "turn(-1)", "Show the previous turn", "in every pane; ctrl+r there makes a new "
        "version of that turn", shown="{"),
    Key("right_curly_bracket", "turn(1)", "Show the next turn", shown="}"),
    Key("N", "new_conversation", "Start a new conversation", "every pane's earlier turns are set aside; u brings "
        "them back", shown="shift+n"),
    Key("P", "system_prompt", "Set the system prompt", "every pane's conversation starts with it", shown="shift+p"),
    Key("v", "diff", "Mark where panes diverge", "cycles off, vs greedy, vs the left neighbour"),
    Key("c", "copy_text", "Copy this pane's text", scope="pane"),
    Key("y", "copy_config", "Copy this pane's config (TOML)", scope="pane"),
    Key("f", "show_config", "Show this pane's whole config", "every field it sets, and which of them mattered in "
        "its last run", scope="pane"),
    Key("ctrl+s", "save_session", "Save the session"),
    Key("ctrl+o", "open_session", "Open a session"),
    Key("ctrl+t", "toggle_chat", "Toggle the chat template"),
    Key("m", "change_model", "Load another model", "every pane without a model of its own runs on it"),
    Key("M", "pane_model", "Put this pane on a model of its own", "a model and load settings, e.g. "
        "smollm2,dtype=bfloat16 or smollm2,engine=llama.cpp; loaded once, shared by its panes", scope="pane",
        shown="shift+m"),
    Key("R", "reference", "Make this pane the reference (★): measure the others against it", "KL per token "
        "(h: kl heatmap), top-1 agreement, where outputs part, perplexity; again: off", scope="pane",
        shown="shift+r"),
    Key("p", "focus_prompt", "Back to the prompt", "esc leaves it again"),
    Key("t", "toggle_theme", "Toggle dark/light theme"),
    Key("A", "arena", "Blind A/B between the panes", "vote on shuffled outputs, tally saved", shown="shift+a"),
    Key("S", "sweep", "Sweep around this pane's config", "grid, random or Bayesian search", scope="pane",
        shown="shift+s"),
    *(Key(str(n), f"focus_pane({n - 1})", "", footer=None) for n in range(1, 10)),
)


def bindings(scope: str) -> list[Binding]:
    """The Textual bindings of one scope ("app" or "pane")."""
    return [Binding(k.keys, k.action, k.footer or k.title or k.action, show=k.footer is not None)
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
        await app.run_action(key.action, pane)
    else:
        await app.run_action(key.action)
