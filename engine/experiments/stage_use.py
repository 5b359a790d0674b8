"""Which settings mattered in a run, read from its traced steps (engine/sampling/trace.py).

For each stage a row used: on how many steps it acted, cut tokens, decided what was kept (it was the last
stage to cut), or changed the most likely token, and how much probability it moved. A setting is dead
when it never changed anything, or when it is a filter that cut but never decided what was kept
because another filter always kept fewer ("top_k=40 ... min_p=0.1 always kept fewer").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import SETTING, SETTINGS, DecodingConfig
from ..sampling.chain import BY_NAME, STAGES

if TYPE_CHECKING:
    from ..results import Completion

MOVED_EPS = 1e-6
"""A stage that moves less probability than this at a step did nothing there."""

FILTERS = frozenset(stage.name for stage in STAGES if stage.effect != "reshape")
"""Stages that can remove tokens (logit_bias too, whose -inf bans one): the others only reshape."""


REORDER_FREE = frozenset({"temperature", "smoothing"})
"""Stages that reshape the distribution but never change the tokens' order."""


@dataclass(frozen=True)
class StageUse:
    """How one stage of a row's chain behaved over a run."""

    stage: str
    setting: str
    """The stage's settings as the config has them, e.g. "top_k=40"."""
    steps: int
    acted: int
    """Steps where it removed a token or moved probability."""
    cut: int
    """Steps where it removed tokens."""
    decided: int
    """Steps where it was the last stage to remove tokens, so it set what was kept."""
    top_changed: int
    """Steps where the most likely token after it differed from the one before."""
    mean_moved: float
    note: str
    dead: bool


def inert_settings(config: DecodingConfig) -> list[tuple[str, str]]:
    """The settings this config changes that cannot act, each with why (a warper on a greedy config, a
    partner setting whose switch is off): no stage of the chain reads them."""
    out = []
    for s in SETTINGS:
        stage = BY_NAME.get(s.stage) if s.stage is not None else None
        if stage is None or getattr(config, s.name) == s.default or stage.active(config, config.samples):
            continue
        switch = stage.switches[0]
        if not config.samples and stage.active(config, True):
            why = "the config is greedy (do_sample=false or temperature=0): set do_sample=true"
        elif getattr(config, switch) == SETTING[switch].default:
            why = f"{switch} is at its default ({SETTING[switch].default!r}), which switches it off"
        else:
            why = f"{stage.name} is off with these values (see {switch}'s help)"
        out.append((s.name, why))
    return out


def inert_notes(config: DecodingConfig) -> list[str]:
    """inert_settings as sentences, one per reason: "temperature=0.9, top_p=0.95 have no effect: ..."."""
    by_reason: dict[str, list[str]] = {}
    for name, why in inert_settings(config):
        by_reason.setdefault(why, []).append(_value_text(name, getattr(config, name)))
    return [f"{', '.join(names)} {'has' if len(names) == 1 else 'have'} no effect: {why}"
            for why, names in by_reason.items()]


def stage_report(completion: Completion) -> list[StageUse]:
    """For each stage the completion's config used (from its traced steps): how often it mattered, and a note;
    then the settings that could not act at all."""
    inert = [StageUse(stage="", setting="", steps=0, acted=0, cut=0, decided=0, top_changed=0, mean_moved=0.0,
                      note=note, dead=True) for note in inert_notes(completion.config)]
    steps = [s.stages for s in completion.steps if s.stages]
    if not steps:
        return inert
    per_stage: dict[str, list[tuple[int, int, float, bool, bool]]] = {}
    for stages in steps:
        last_cut = None
        for before, after in zip(stages, stages[1:]):
            if after.kept < before.kept:
                last_cut = after.stage
        for before, after in zip(stages, stages[1:]):
            per_stage.setdefault(after.stage, []).append(
                (before.kept, after.kept, after.moved, after.top_changed, after.stage == last_cut))
    order = list(dict.fromkeys(s.stage for stages in steps for s in stages[1:]))
    return [_use(name, per_stage[name], per_stage, order, completion.config) for name in order] + inert


def _use(name, rows, per_stage, order, config) -> StageUse:
    n = len(rows)
    cut = sum(1 for b, a, _, _, _ in rows if a < b)
    acted = sum(1 for b, a, moved, _, _ in rows if a < b or moved > MOVED_EPS)
    decided = sum(1 for r in rows if r[4])
    changed = sum(1 for r in rows if r[3])
    mean_moved = sum(r[2] for r in rows) / n
    setting = setting_text(name, config)
    if not acted:
        note, dead = f"{setting} never changed anything{_why_idle(name, rows, per_stage, order)}", True
    elif name in FILTERS and not decided:
        rival = max((other for other in order if other != name and other in FILTERS),
                    key=lambda other: sum(1 for r in per_stage[other] if r[4]), default=None)
        because = f": {setting_text(rival, config)} always kept fewer" if rival else ""
        note, dead = f"{setting} cut on {cut}/{n} steps but never decided what was kept{because}", True
    elif name in FILTERS:
        note, dead = f"{setting} decided what was kept on {decided}/{n} steps", False
    elif name in REORDER_FREE:
        note, dead = f"{setting} moved {100 * mean_moved:.1f}% of the probability on average (it never reorders " \
                     "tokens)", False
    else:
        note = (f"{setting} changed the most likely token on {changed}/{n} steps and moved "
                f"{100 * mean_moved:.1f}% of the probability on average")
        dead = False
    return StageUse(stage=name, setting=setting, steps=n, acted=acted, cut=cut, decided=decided, top_changed=changed,
                    mean_moved=mean_moved, note=note, dead=dead)


def _why_idle(name, rows, per_stage, order) -> str:
    if name not in FILTERS:
        return ""
    index = order.index(name)
    most = max(b for b, _, _, _, _ in rows)
    earlier = [other for other in order[:index] if other in FILTERS and any(a < b for b, a, *_ in per_stage[other])]
    if earlier:
        return f" (it never cut anything: {earlier[-1]} left at most {most} candidate{'s' * (most != 1)} before it)"
    return " (it never cut anything)"


def setting_text(stage: str, config: DecodingConfig) -> str:
    """The stage's changed settings as written in a config, e.g. "top_k=40" or "repetition_penalty=1.1"."""
    parts = [_value_text(s.name, getattr(config, s.name)) for s in SETTINGS
             if s.stage == stage and getattr(config, s.name) != SETTING[s.name].default]
    return " ".join(parts[:2]) or stage


def _value_text(field: str, value) -> str:
    if isinstance(value, str):
        return f'{field}="{value if len(value) <= 24 else value[:23] + "…"}"'
    return f"{field}={value:g}" if isinstance(value, float) else f"{field}={value}"


def report_dict(completion: Completion) -> list[dict]:
    """stage_report as JSON-ready data."""
    return [{"stage": u.stage, "setting": u.setting, "steps": u.steps, "acted": u.acted, "cut": u.cut,
             "decided": u.decided, "top_changed": u.top_changed, "mean_moved": round(u.mean_moved, 6),
             "dead": u.dead, "note": u.note} for u in stage_report(completion)]
