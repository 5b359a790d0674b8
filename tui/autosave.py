"""The Autosave part: the workspace survives ctrl+q, a crash and a closed SSH session.

Every few seconds (and on quit) the Workspace's session record is written, atomically, to one file
(engine/library/sessions.py: autosave_path), at most AUTOSAVE_LIMIT bytes. The next plain `decodelab` restores it
and says so in one line; shift+f starts fresh, setting the restored workspace aside (ctrl+o opens it again), and
`decodelab --fresh` skips the restore. A start that names its panes or prompt on the command line begins with
those (unless --resume), and sets the last workspace aside the same way, each in a file of its own (the last ten
are kept), so no start overwrites work.
"""

from __future__ import annotations

import datetime
import os
from typing import TYPE_CHECKING

from decodelab.engine.config import ConfigError

from .parts import Part

if TYPE_CHECKING:
    from pathlib import Path

    from .app import DecodelabApp
    from .state import PaneState

AUTOSAVE_SECONDS = 5.0
"""How often the workspace is written when it changed."""


class Autosave(Part):
    def __init__(self, app: DecodelabApp, enabled: bool, restore: bool) -> None:
        super().__init__(app)
        self.enabled = enabled
        """Write the workspace (run_app turns this on; tests that build the App leave it off)."""
        self.restore_at_start = restore
        """Restore the last workspace when the app starts (a plain `decodelab`, without --fresh)."""
        self.written: str | None = None
        """The text last written (a tick writes only when the workspace changed)."""
        self.problem: str | None = None
        """What went wrong with the last write, said once until a write works again."""
        self.left_out = ""
        """What the last write left out to stay within AUTOSAVE_LIMIT, said once."""

    # -- at start ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        """The main screen is up: restore or set aside the last workspace, then keep writing this one."""
        if not self.enabled:
            return
        from decodelab.engine.library.sessions import autosave_path

        path = autosave_path()
        if path.exists():
            if self.restore_at_start:
                self.restore(path)
            else:
                kept = self.set_aside(path)
                if kept is not None:
                    self.notify(f"Your last workspace ({saved_at(kept)}) is set aside in {kept}: ctrl+o opens it.",
                                timeout=10)
        self.app.set_interval(AUTOSAVE_SECONDS, self.save)

    def restore(self, path: Path) -> None:
        from decodelab.engine.library.sessions import load_session

        try:
            session = load_session(path)
            self.app.files.apply_session(session, f"the autosaved workspace {path}")
        except ConfigError as exc:
            kept = self.set_aside(path)
            self.notify(f"The last workspace could not be restored: {exc}\nIt is kept in {kept}; this start is fresh.",
                        severity="warning", timeout=15)
            return
        turns = sum(len(s.turns) + 1 for s in self.ws.panes if s.history)
        held = f", {plural(turns, 'turn')} in all" if turns else " (no output yet)"
        self.notify(f"Restored your workspace from {saved_at(path)}: {plural(len(session.configs), 'pane')}{held}. "
                    "shift+f starts fresh (--fresh skips this).", timeout=20)

    def set_aside(self, path: Path) -> Path | None:
        """Move the autosave to a new previous-workspace-<time>.json (the last KEEP_PREVIOUS are kept; none is ever
        overwritten); None when it cannot."""
        from decodelab.engine.library.sessions import previous_workspace_path, prune_previous

        target = previous_workspace_path()
        try:
            os.replace(path, target)
            prune_previous()
        except OSError as exc:
            self.notify(f"Could not set the last workspace aside ({exc.strerror or exc}); it stays in {path} and the "
                        "autosave is off for this start.", severity="warning", timeout=15)
            self.enabled = False
            return None
        self.ws.set_aside = str(target)  # ctrl+o offers it
        return target

    # -- writing --------------------------------------------------------------------------------------------
    def save(self, force: bool = False) -> None:
        """Write the workspace when it changed (a tick skips while a run streams; quitting writes anyway)."""
        if not self.enabled or (self.running and not force):
            return
        from decodelab.engine.library.fileio import atomic_write_text
        from decodelab.engine.library.sessions import autosave_path, autosave_text

        text, left_out = autosave_text(self.ws.record(self.prompt_box.text, self.shelf.spec))
        if left_out and left_out != self.left_out:
            what = "nothing" if text is None else "this"
            self.notify(f"The autosave is too big, so it keeps {what} without {left_out}. ctrl+s saves "
                        "everything to a session file.", severity="warning", timeout=10)
        self.left_out = left_out
        if text is None or text == self.written:
            return
        try:
            atomic_write_text(autosave_path(), text, overwrite=True)
        except OSError as exc:
            if self.problem is None:
                self.notify(f"Could not autosave the workspace to {autosave_path()}: {exc.strerror or exc}. "
                            "ctrl+s saves it elsewhere.", severity="warning", timeout=10)
            self.problem = str(exc)
            return
        self.written, self.problem = text, None

    # -- shift+f ----------------------------------------------------------------------------------------------
    def start_fresh(self) -> None:
        """shift+f: the command line's panes and an empty prompt; the workspace so far is set aside (ctrl+o)."""
        if self.running:
            self.notify("A run is in progress: Esc cancels it.", severity="warning")
            return
        from decodelab.engine.library.fileio import atomic_write_text
        from decodelab.engine.library.sessions import dumps_session, previous_workspace_path, prune_previous

        target = previous_workspace_path()
        try:
            atomic_write_text(target, dumps_session(self.ws.record(self.prompt_box.text, self.shelf.spec)))
            prune_previous()
        except OSError as exc:
            self.notify(f"Not started fresh: could not keep this workspace in {target} ({exc.strerror or exc}). "
                        "ctrl+s saves it first.", severity="error", timeout=10)
            return
        self.ws.set_aside = str(target)
        for pane in self.panes():
            pane.remove()
        self.ws.undo.clear()
        self.ws.clear_reference()
        self.ws.system_prompt, self.ws.draft = self.app.initial_system, None
        self.prompt_box.text = ""
        opened = [self.app.panes_part.mount(state) for state in self.app.fresh_states()]
        if opened:
            self.app.panes_part.current = opened[0]
        self.later(self.app.panes_part.refresh)
        self.later(self.shelf.models_changed)
        self.app.panes_part.update_legend()
        if self.shelf.loaded is not None:
            self.app.update_model_bar()
        self.later(self.app.panes_part.focus_prompt)
        self.notify(f"Started fresh. The workspace before is in {target}: ctrl+o opens it.", timeout=10)


def saved_at(path: Path) -> str:
    """When a file was written: 20:31 today, else the date too."""
    stamp = datetime.datetime.fromtimestamp(path.stat().st_mtime)
    today = stamp.date() == datetime.date.today()
    return stamp.strftime("%H:%M" if today else "%Y-%m-%d %H:%M")


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def fresh(states: list[PaneState]) -> list[PaneState]:
    """New pane states with the same configs and models (no output)."""
    from .state import PaneState

    return [PaneState(s.config, model_spec=s.model_spec) for s in states]
