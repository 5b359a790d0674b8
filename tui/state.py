"""What one pane knows: its config, its latest (possibly still streaming) output, and earlier versions."""

from __future__ import annotations

from dataclasses import dataclass, field

from decodelab.engine.config import DecodingConfig
from decodelab.engine.conversation import build, last_user

HISTORY = 8
"""How many finished versions (runs, reruns, branches) a pane keeps to step back through."""


@dataclass(frozen=True)
class Version:
    """One finished output of a pane, kept so a branch or rerun never loses the text it replaced."""

    number: int
    """1, 2, 3, … in the order the pane produced them (kept when old ones are dropped)."""
    config: DecodingConfig
    steps: tuple
    text: str
    stop_reason: str | None
    seed: int | None
    completion: object | None
    error: str | None
    branched_at: int | None
    """The token index the user chose an alternative at (None for a plain run)."""
    parent: int | None
    """The version number it branched from."""
    prompt: str | None = None

    @property
    def label(self) -> str:
        if self.branched_at is None:
            return f"v{self.number}"
        return f"v{self.number} (branch of v{self.parent} @{self.branched_at})"


@dataclass
class Turn:
    """One exchange of a pane's conversation other than the one on show: its versions, and which one shows."""

    history: list[Version]
    viewing: int | None = None
    followups: dict[int, list["Turn"]] = field(default_factory=dict)
    """Later turns set aside under a version when a new version of this turn was made (see PaneState)."""

    @property
    def shown(self) -> Version:
        return self.history[self.viewing if self.viewing is not None else -1]

    @property
    def user(self) -> str:
        return last_user(self.shown.prompt or "")

    @property
    def reply(self) -> str:
        return self.shown.text


@dataclass
class PaneState:
    config: DecodingConfig
    steps: list = field(default_factory=list)
    text: str = ""
    stop_reason: str | None = None
    seed: int | None = None
    completion: object | None = None
    running: bool = False
    error: str | None = None
    incomplete: str | None = None
    """A constrained output cut at max_new_tokens before its constraint was done (the status line says so)."""
    cursor: int | None = None
    branched_at: int | None = None
    parent: int | None = None
    prompt: str | None = None
    """The prompt this output continues (None when unknown, e.g. opened from an old session)."""
    model: str | None = None
    """The model that wrote this output (None when unknown): a branch must run on the same one."""
    model_spec: object | None = None
    """The pane's own model and load settings (a ModelSpec; shift+m); None: the app's model (m)."""
    agreement: object | None = None
    """The last run measured against the reference pane (an Agreement, or why not); None when not measured."""
    kl_levels: list | None = None
    """KL(this pane's model || the reference's) at each of its tokens, for the kl heatmap."""
    history: list[Version] = field(default_factory=list)
    """Finished versions, oldest first (at most HISTORY)."""
    viewing: int | None = None
    """Index into history of the version shown, when it is not the newest."""
    turns: list[Turn] = field(default_factory=list)
    """The conversation's earlier turns, oldest first: the live turn (the fields above) answers after them."""
    later: list[Turn] = field(default_factory=list)
    """Turns after the live one, when an earlier turn is on show ({ and })."""
    followups: dict[int, list[Turn]] = field(default_factory=dict)
    """Later turns set aside under a version of the live turn: a new run of an earlier turn keeps them under
    the version they followed, and [ ] brings them back with it."""

    @property
    def token_ids(self) -> list[int]:
        return [s.token_id for s in self.steps]

    def reset(self) -> None:
        self.steps, self.text, self.stop_reason, self.completion, self.error = [], "", None, None, None
        self.incomplete = None
        self.agreement, self.kl_levels = None, None
        self.cursor, self.branched_at, self.parent, self.viewing = None, None, None, None

    def begin(self, prefix_steps: list | None = None, branched_at: int | None = None,
              prompt=None, model: str | None = None) -> None:
        """A run starts: the pane empties, except a branch's forced tokens, which stay on show; turns after this
        one (an earlier turn rerun) are set aside under the version they followed."""
        shown = self.shown
        parent = shown.number if shown is not None and branched_at is not None else None
        self._set_aside(shown)
        self.reset()
        self.running = True
        if prefix_steps:
            self.steps = list(prefix_steps)
            self.text = "".join(s.text for s in prefix_steps)
        self.branched_at, self.parent, self.prompt, self.model = branched_at, parent, prompt, model
        if branched_at is not None:
            self.cursor = branched_at

    def finish(self, completion) -> None:
        self.completion = completion
        self.steps = list(completion.steps)
        self.text = completion.text
        self.stop_reason = completion.stop_reason
        self.seed = completion.seed
        self.running = False
        self.error = completion.extra.get("error")
        self.incomplete = completion.extra.get("incomplete")
        self.record()

    def record(self) -> None:
        """Keep the output just finished as the newest version (nothing to keep when it is empty)."""
        if not self.steps and not self.text:
            return
        number = self.history[-1].number + 1 if self.history else 1
        self.history.append(Version(number, self.config, tuple(self.steps), self.text, self.stop_reason, self.seed,
                                    self.completion, self.error, self.branched_at, self.parent, self.prompt))
        del self.history[:-HISTORY]
        self.viewing = None

    @property
    def shown(self) -> Version | None:
        """The version on show (None while a new run streams or before any finished)."""
        if self.running or not self.history:
            return None
        return self.history[self.viewing if self.viewing is not None else -1]

    def step_history(self, delta: int) -> str | None:
        """Show an older (-1) or newer (+1) version; returns why not when it cannot."""
        if self.running:
            return "this pane is running: wait for it, or Esc to cancel"
        if not self.history:
            return "this pane has no earlier versions yet"
        index = (self.viewing if self.viewing is not None else len(self.history) - 1) + delta
        if index < 0:
            return f"this is the oldest version kept (the last {HISTORY} are kept)"
        if index >= len(self.history):
            return "this is the newest version"
        self.show(index)
        return None

    def show(self, index: int) -> None:
        """Show version `index` of this turn; the turns that followed the version shown before are set aside
        under it, and the new version's own later turns come back."""
        version, before = self.history[index], self.shown
        if before is not None and before.number != version.number:
            self._set_aside(before)
            self.later = self.followups.pop(version.number, [])
        self._display(index)

    def _set_aside(self, version: Version | None) -> None:
        """The turns after the live one stay with the version they followed (under followups)."""
        if self.later and version is not None:
            self.followups[version.number] = self.later
        self.later = []

    def _display(self, index: int) -> None:
        version = self.history[index]
        self.viewing = None if index == len(self.history) - 1 else index
        self.steps, self.text, self.stop_reason = list(version.steps), version.text, version.stop_reason
        self.seed, self.completion, self.error = version.seed, version.completion, version.error
        self.incomplete = version.completion.extra.get("incomplete") if version.completion is not None else None
        self.branched_at, self.parent, self.prompt = version.branched_at, version.parent, version.prompt
        if self.cursor is not None and self.cursor >= len(self.steps):
            self.cursor = len(self.steps) - 1 if self.steps else None

    # -- the conversation -----------------------------------------------------------------------------
    def context(self) -> list[dict]:
        """The earlier turns as chat messages (each turn's version on show), oldest first."""
        messages = []
        for turn in self.turns:
            messages += [{"role": "user", "content": turn.user}, {"role": "assistant", "content": turn.reply}]
        return messages

    def prompt_for(self, user: str, system: str | None) -> str | list[dict]:
        """What the live turn runs on: the system prompt, the earlier turns, then this user message."""
        return build(user, system, self.context())

    @property
    def user(self) -> str | None:
        """The live turn's user message (None before any run)."""
        return last_user(self.prompt) if self.prompt is not None else None

    def can_advance(self) -> bool:
        """A reply is on show, so a new user message can follow it."""
        return self.shown is not None and not self.error_only

    @property
    def error_only(self) -> bool:
        return not self.steps and not self.text

    def push_turn(self) -> None:
        """The reply on show becomes an earlier turn; the live turn starts empty (turns after it are set aside)."""
        self._set_aside(self.shown)
        self.turns.append(Turn(self.history, self.viewing, self.followups))
        self.history, self.viewing, self.followups = [], None, {}
        self.reset()
        self.prompt = None

    def pop_turn(self) -> None:
        """Undo push_turn (a run that was refused before it started)."""
        self._load(self.turns.pop())

    def step_turn(self, delta: int) -> bool:
        """Show the previous (-1) or next (+1) turn; False when there is none or the pane runs."""
        if self.running or self.shown is None:
            return False
        source = self.turns if delta < 0 else self.later
        if not source:
            return False
        live = Turn(self.history, self.viewing, self.followups)
        turn = source.pop() if delta < 0 else source.pop(0)
        if delta < 0:
            self.later.insert(0, live)
        else:
            self.turns.append(live)
        self._load(turn)
        return True

    def _load(self, turn: Turn) -> None:
        """Make turn the live one (the cursor starts afresh: it pointed into another reply)."""
        self.history, self.followups, self.cursor = turn.history, turn.followups, None
        self._display(turn.viewing if turn.viewing is not None else len(turn.history) - 1)

    def forget_turns(self) -> tuple:
        """A new conversation: the earlier and later turns go (returned, for undo); the reply on show stays."""
        kept = (self.turns, self.later, self.followups)
        self.turns, self.later, self.followups = [], [], {}
        return kept

    def restore_turns(self, kept: tuple) -> None:
        self.turns, self.later, self.followups = kept

    def turn_label(self) -> str:
        """"t2/3" when the conversation has more than one turn, else ""."""
        total = len(self.turns) + 1 + len(self.later)
        return f"t{len(self.turns) + 1}/{total}" if total > 1 else ""

    def children(self) -> list[Version]:
        """Later versions branched from the one on show (a continuation, w, is not a branch)."""
        shown = self.shown
        return [v for v in self.history if shown is not None and v.parent == shown.number and v.branched_at is not None]

    def branch_marks(self) -> dict[int, str]:
        """Token index -> its mark: ┃ where this output was branched, ╎ where later versions branched from it."""
        from .widgets.token_view import BRANCH_MARK, CHILD_MARK

        marks = {v.branched_at: CHILD_MARK for v in self.children() if v.branched_at is not None}
        if self.branched_at is not None:
            marks[self.branched_at] = BRANCH_MARK
        return marks

    def version_label(self) -> str:
        """"v2/3" when the pane has more than one version, else ""."""
        shown = self.shown
        if shown is None or len(self.history) < 2:
            return ""
        return f"v{shown.number}/{self.history[-1].number}"

    @property
    def ignored(self) -> list[str]:
        """Settings the (remote) backend could not apply in this pane's last run."""
        return list(self.completion.extra.get("ignored", [])) if self.completion is not None else []


def first_divergence(a: list[int], b: list[int]) -> int | None:
    """Index of the first token where two outputs differ (None when one is a prefix of the other)."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None


# -- sessions: a pane's whole conversation as plain data (engine/library/sessions.py keeps it per pane) --------
def conversation_record(state: PaneState) -> dict | None:
    """Every turn of the pane with every version kept (None when it has no finished output)."""
    if not state.history:
        return None
    live = Turn(state.history, state.viewing, state.followups)
    return {"earlier": [_turn_record(t) for t in state.turns], "turn": _turn_record(live),
            "later": [_turn_record(t) for t in state.later]}


def restore_conversation(state: PaneState, record: dict, where: str) -> None:
    """The inverse of conversation_record: the pane shows the turn and version it was saved on.
    Raises KeyError/TypeError/ValueError (or ConfigError) on damaged data."""
    state.turns = [_read_turn(t, where) for t in record["earlier"]]
    state.later = [_read_turn(t, where) for t in record["later"]]
    state._load(_read_turn(record["turn"], where))


def _turn_record(turn: Turn) -> dict:
    from decodelab.engine.library.sessions import version_record

    return {"versions": [version_record(v.number, v.config, v.completion, v.prompt, v.branched_at, v.parent, v.error)
                         for v in turn.history],
            "viewing": turn.viewing,
            "followups": {str(n): [_turn_record(t) for t in turns] for n, turns in turn.followups.items()}}


def _read_turn(data: dict, where: str) -> Turn:
    from decodelab.engine.library.sessions import read_version

    history = []
    for item in data["versions"]:
        v = read_version(item, where)
        c = v["completion"]
        history.append(Version(v["number"], v["config"], tuple(c.steps), c.text, c.stop_reason, c.seed, c,
                               v["error"], v["branched_at"], v["parent"], v["prompt"]))
    if not history:
        raise ValueError("a turn has no versions")
    viewing = data.get("viewing")
    if viewing is not None and not (isinstance(viewing, int) and 0 <= viewing < len(history)):
        raise ValueError(f"viewing {viewing!r} is not one of the turn's versions")
    followups = {int(n): [_read_turn(t, where) for t in turns] for n, turns in data.get("followups", {}).items()}
    return Turn(history, viewing, followups)
