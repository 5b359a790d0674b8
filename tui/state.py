"""What one pane knows: its config and its latest (possibly still streaming) output."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.config import DecodingConfig


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
    cursor: int | None = None
    branched_at: int | None = None

    @property
    def token_ids(self) -> list[int]:
        return [s.token_id for s in self.steps]

    def reset(self) -> None:
        self.steps, self.text, self.stop_reason, self.completion, self.error = [], "", None, None, None
        self.cursor, self.branched_at = None, None

    def finish(self, completion) -> None:
        self.completion = completion
        self.steps = list(completion.steps)
        self.text = completion.text
        self.stop_reason = completion.stop_reason
        self.seed = completion.seed
        self.running = False
        self.error = completion.extra.get("error")

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
