"""Parameter sweeps: grid, random and Bayesian (optuna TPE) search over decoding settings, scored by metrics.

Points run through the batched engine: every (point, seed) pair on every prompt is a row, up to
`max_rows` rows decoding at once, rows of different prompts in one batch (engine/decoding/loop.py). All
points share the same seeds (common random numbers), so differences between points come from the
settings, not from luck.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import tomllib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Literal, Sequence, cast

from ..config import INT_FIELDS, NUMBER_FIELDS, SETTINGS, ConfigError, DecodingConfig
from ..conversation import Prompt
from .metrics import METRICS, self_similarity, text_metrics

if TYPE_CHECKING:
    import threading

    from ..backends.base import Backend

STRATEGIES = ("grid", "random", "bayes")
SWEEPABLE = NUMBER_FIELDS  # every int or float setting of the table (engine/config.py)
WARPERS = frozenset(s.name for s in SETTINGS if s.warper)
"""Settings that only act on sampling rows (a greedy base ignores them)."""


@dataclass(frozen=True)
class PromptCase:
    text: Prompt
    """A text, or a conversation (chat messages: the TUI sweeps a pane's own turns)."""
    reference: str | None = None


@dataclass
class SweepSpec:
    base: DecodingConfig = field(default_factory=lambda: DecodingConfig(name="sweep", do_sample=True))
    grid: dict[str, list] = field(default_factory=dict)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    strategy: str = "grid"
    trials: int | None = None
    seeds: int = 3
    seed: int = 0
    prompts: list[PromptCase] = field(default_factory=list)
    objective: dict[str, float] = field(default_factory=lambda: {"mean_logprob": 1.0})
    direction: str = "maximize"

    def validate(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy {self.strategy!r} is unknown: choose {', '.join(STRATEGIES)}")
        for name in list(self.grid) + list(self.ranges):
            if name not in SWEEPABLE:
                close = [f for f in SWEEPABLE if f.startswith(name[:3])]
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"cannot sweep {name!r}.{hint} Sweepable: {', '.join(sorted(SWEEPABLE))}")
        warpers = WARPERS & set(self.swept())
        if warpers and not self.base.do_sample:
            raise ConfigError(f"the base config {self.base.name!r} is greedy, so sweeping {', '.join(sorted(warpers))} "
                              "changes nothing: start from a sampling preset (e.g. -p balanced) or set do_sample=true")
        for name, values in self.grid.items():
            if not values:
                raise ConfigError(f"--grid {name} has no values")
            for value in values:  # every value must make a valid config on its own
                self.base.replace(**{name: value})
        for name, (low, high) in self.ranges.items():
            if not low < high:
                raise ConfigError(f"range {name}={low}:{high} is empty: the low end must be below the high end")
            self.base.replace(**{name: low})
            self.base.replace(**{name: high})
        if self.strategy == "grid":
            if not self.grid:
                raise ConfigError("a grid sweep needs at least one --grid field=v1,v2,...")
            if self.ranges:
                raise ConfigError("a grid sweep takes --grid values; --range is for random and bayes")
            if self.trials is not None and self.trials < self.grid_size():
                raise ConfigError(f"the grid has {self.grid_size()} points but the budget is {self.trials} trials")
        else:
            if not (self.ranges or self.grid):
                raise ConfigError(f"a {self.strategy} sweep needs --range field=low:high (or --grid choices)")
            if not self.trials or self.trials < 1:
                raise ConfigError(f"a {self.strategy} sweep needs a budget: --trials N")
        if self.seeds < 1:
            raise ConfigError("--seeds must be at least 1")
        if not self.prompts:
            raise ConfigError("a sweep needs at least one prompt")
        if self.direction not in ("maximize", "minimize"):
            raise ConfigError(f"direction {self.direction!r} must be maximize or minimize")
        if not self.objective:
            raise ConfigError("the objective needs at least one metric")
        for metric in self.objective:
            if metric not in METRICS:
                raise ConfigError(f"unknown metric {metric!r}: choose from {', '.join(METRICS)}")
            if metric in ("rouge_l", "chrf") and not all(p.reference for p in self.prompts):
                raise ConfigError(f"{metric} needs a reference for every prompt (a JSONL prompt file with 'reference')")
        if "self_similarity" in self.objective and self.seeds < 2:
            raise ConfigError("self_similarity compares seeds: use --seeds 2 or more")

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid.values()) if self.grid else 0

    def swept(self) -> list[str]:
        return list(dict.fromkeys(list(self.grid) + list(self.ranges)))


@dataclass
class PointResult:
    params: dict
    config: DecodingConfig
    metrics: dict[str, float]
    objective: float
    samples: list[dict] = field(default_factory=list)


def objective_value(metrics: dict[str, float], weights: dict[str, float]) -> float:
    return sum(w * metrics.get(m, float("nan")) for m, w in weights.items())


def _cast(name: str, value):
    return int(round(value)) if name in INT_FIELDS else float(value)


def grid_points(spec: SweepSpec) -> list[dict]:
    names = list(spec.grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(spec.grid[n] for n in names))]


def random_points(spec: SweepSpec) -> list[dict]:
    rng = random.Random(spec.seed)
    points = []
    assert spec.trials is not None  # validate(): a random sweep has a budget
    for _ in range(spec.trials):
        point = {name: rng.choice(values) for name, values in spec.grid.items()}
        for name, (low, high) in spec.ranges.items():
            point[name] = rng.randint(int(low), int(high)) if name in INT_FIELDS else rng.uniform(low, high)
        points.append(point)
    return points


def evaluate(loaded: Backend, spec: SweepSpec, points: list[dict], max_rows: int = 64,
             cancel: threading.Event | None = None,
             on_point: Callable[[PointResult], None] | None = None) -> list[PointResult]:
    """Run each point on every prompt with spec.seeds seeds, batched, and score it."""
    from ..session import default_session

    configs = [spec.base.replace(**{k: _cast(k, v) for k, v in p.items()}, name=_point_name(p)) for p in points]
    seeds = [spec.seed * 1000 + s for s in range(spec.seeds)]
    rows = [(i, s) for i in range(len(points)) for s in seeds]
    per_point: dict[int, list[dict]] = {i: [] for i in range(len(points))}
    results = []
    chunk = max(1, max_rows // spec.seeds) * spec.seeds
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        batch = [configs[i].replace(seed=s) for i, s in part]
        every = default_session().generate_prompts(loaded, [(case.text, batch) for case in spec.prompts],
                                                   cancel=cancel)  # rows join the batch as others finish
        for case, outs in zip(spec.prompts, every):  # all prompts decode together, max_rows rows at a time
            for (i, seed), out in zip(part, outs):
                per_point[i].append({"prompt": case.text, "seed": seed, "text": out.text,
                                     "metrics": text_metrics(out.text, [st.logprob for st in out.steps], case.reference),
                                     "stop_reason": out.stop_reason})
        if cancel is not None and cancel.is_set():
            break
        for i in sorted({i for i, _ in part}):
            result = _score(points[i], configs[i], per_point[i], spec)
            results.append(result)
            if on_point:
                on_point(result)
    return results


def _score(params: dict, config: DecodingConfig, samples: list[dict], spec: SweepSpec) -> PointResult:
    names = samples[0]["metrics"].keys()
    metrics = {m: _mean([s["metrics"][m] for s in samples]) for m in names}
    by_prompt: dict[str, list[str]] = {}
    for s in samples:  # a conversation (a list of messages) groups by its JSON text: a list is no dict key
        key = s["prompt"] if isinstance(s["prompt"], str) else json.dumps(s["prompt"], sort_keys=True)
        by_prompt.setdefault(key, []).append(s["text"])
    similarity = [self_similarity(texts) for texts in by_prompt.values()]
    if all(v is not None for v in similarity):
        metrics["self_similarity"] = _mean(similarity)
    return PointResult(params=params, config=config, metrics=metrics,
                       objective=objective_value(metrics, spec.objective), samples=samples)


def _mean(values: Sequence[float | None]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def _point_name(params: dict) -> str:
    return "sweep-" + "-".join(f"{k}{v:g}" if isinstance(v, float) else f"{k}{v}" for k, v in params.items())


def run_sweep(loaded: Backend, spec: SweepSpec, cancel: threading.Event | None = None,
              on_point: Callable[[PointResult], None] | None = None, batch_trials: int = 8) -> list[PointResult]:
    """Run the sweep's strategy within its budget; on cancel, the points finished so far are returned."""
    spec.validate()
    if spec.strategy == "grid":
        return evaluate(loaded, spec, grid_points(spec), cancel=cancel, on_point=on_point)
    if spec.strategy == "random":
        return evaluate(loaded, spec, random_points(spec), cancel=cancel, on_point=on_point)
    return _bayes(loaded, spec, cancel, on_point, batch_trials)


def _bayes(loaded, spec: SweepSpec, cancel, on_point, batch_trials: int) -> list[PointResult]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    assert spec.trials is not None  # validate(): a bayes sweep has a budget
    direction = cast(Literal["minimize", "maximize"], spec.direction)  # validate() checked it is one of the two
    sampler = optuna.samplers.TPESampler(seed=spec.seed, n_startup_trials=min(8, spec.trials))
    study = optuna.create_study(direction=direction, sampler=sampler)
    results: list[PointResult] = []
    while len(results) < spec.trials and not (cancel is not None and cancel.is_set()):
        trials = [study.ask() for _ in range(min(batch_trials, spec.trials - len(results)))]
        points = [_suggest(t, spec) for t in trials]
        batch = evaluate(loaded, spec, points, cancel=cancel, on_point=on_point)
        for trial, result in zip(trials, batch):
            value = result.objective
            study.tell(trial, value if math.isfinite(value) else None,
                       state=None if math.isfinite(value) else optuna.trial.TrialState.FAIL)
        results.extend(batch)
        if len(batch) < len(trials):
            break
    return results


def _suggest(trial, spec: SweepSpec) -> dict:
    point = {}
    for name, values in spec.grid.items():
        point[name] = trial.suggest_categorical(name, values)
    for name, (low, high) in spec.ranges.items():
        point[name] = (trial.suggest_int(name, int(low), int(high)) if name in INT_FIELDS
                       else trial.suggest_float(name, low, high))
    return point


def best(results: list[PointResult], direction: str) -> PointResult | None:
    finite = [r for r in results if math.isfinite(r.objective)]
    if not finite:
        return None
    return (max if direction == "maximize" else min)(finite, key=lambda r: r.objective)


# -- input and output -----------------------------------------------------------------------------------

def parse_grid(items: tuple[str, ...]) -> dict[str, list]:
    """--grid temperature=0.2,0.7,1.2 -> {"temperature": [0.2, 0.7, 1.2]}"""
    grid = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not raw:
            raise ConfigError(f"--grid {item!r} is not field=v1,v2,... (e.g. --grid temperature=0.2,0.7)")
        values = []
        for text in raw.split(","):
            try:
                values.append(tomllib.loads(f"v = {text.strip()}")["v"])
            except tomllib.TOMLDecodeError:
                raise ConfigError(f"--grid {name}: {text!r} is not a number") from None
        grid[name.strip()] = values
    return grid


def parse_ranges(items: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    """--range temperature=0.1:1.5 -> {"temperature": (0.1, 1.5)}"""
    ranges = {}
    for item in items:
        name, sep, raw = item.partition("=")
        low, colon, high = raw.partition(":")
        try:
            ranges[name.strip()] = (float(low), float(high))
        except ValueError:
            raise ConfigError(f"--range {item!r} is not field=low:high (e.g. --range top_p=0.5:1.0)") from None
        if not sep or not colon:
            raise ConfigError(f"--range {item!r} is not field=low:high (e.g. --range top_p=0.5:1.0)")
    return ranges


def parse_objective(text: str) -> dict[str, float]:
    """"distinct_2=1,mean_logprob=0.5" or just "distinct_2" -> weights."""
    weights = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, raw = part.partition("=")
        try:
            weights[name.strip()] = float(raw) if sep else 1.0
        except ValueError:
            raise ConfigError(f"objective weight {raw!r} for {name} is not a number") from None
    return weights


def read_prompt_cases(text: str, filename: str) -> list[PromptCase]:
    """A .jsonl file of {"prompt": ..., "reference": ...} objects, or plain text with one prompt per line."""
    if filename.endswith(".jsonl"):
        cases = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                cases.append(PromptCase(str(data["prompt"]), data.get("reference")))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ConfigError(f"{filename} line {number}: expected {{\"prompt\": ...}} ({exc})") from None
        return cases
    return [PromptCase(line.replace("\\n", "\n")) for line in text.splitlines() if line.strip()]


def load_sweep_file(text: str, where: str) -> dict:
    """A TOML sweep file: strategy, trials, seeds, base, [grid], [ranges], [objective] (with direction)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}") from None
    known = {"strategy", "trials", "seeds", "seed", "base", "grid", "ranges", "objective", "direction"}
    for key in data:
        if key not in known:
            raise ConfigError(f"unknown key {key!r} in {where}; known: {', '.join(sorted(known))}")
    return data


def results_rows(results: list[PointResult], spec: SweepSpec) -> list[dict]:
    names = spec.swept()
    metric_names = sorted({m for r in results for m in r.metrics})
    return [{**{n: r.params.get(n) for n in names}, **{m: r.metrics.get(m) for m in metric_names},
             "objective": r.objective} for r in results]


def to_csv(results: list[PointResult], spec: SweepSpec) -> str:
    import csv
    import io

    rows = results_rows(results, spec)
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return out.getvalue()


def to_json(results: list[PointResult], spec: SweepSpec) -> str:
    from ..results import json_number as clean

    doc = {"strategy": spec.strategy, "objective": spec.objective, "direction": spec.direction, "seeds": spec.seeds,
           "points": [{"params": r.params, "config": r.config.to_dict(),
                       "metrics": {k: clean(v) for k, v in r.metrics.items()}, "objective": clean(r.objective),
                       "samples": [{**s, "metrics": {k: clean(v) for k, v in s["metrics"].items()}}
                                   for s in r.samples]}
                      for r in results]}
    return json.dumps(doc, ensure_ascii=False, indent=1) + "\n"


__all__ = ["PointResult", "PromptCase", "SweepSpec", "best", "run_sweep"]
