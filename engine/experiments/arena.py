"""Blind A/B: shuffled rounds, votes, and the tally (wins, ties, Wilson intervals, Bradley-Terry ratings).

A round shows k outputs labelled A, B, ... in a random order; the voter picks the best one, a tie,
or skips. A pick counts as a win over every other shown config; a tie as a tie between every pair.
"""

from __future__ import annotations

import math
import random
import secrets
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from ..config import ConfigError, DecodingConfig

if TYPE_CHECKING:
    from ..backends.base import Backend

TALLY_SCHEMA = 1
LABELS = string.ascii_uppercase


@dataclass
class Round:
    """What the voter sees: labels and texts only. `order[i]` is the config index shown as label i."""

    number: int
    prompt: str
    order: list[int]
    texts: list[str]
    seeds: list[int]

    @property
    def labels(self) -> list[str]:
        return list(LABELS[: len(self.order)])

    def shown(self) -> list[tuple[str, str]]:
        """(label, text) pairs: everything a blind voter may see."""
        return list(zip(self.labels, self.texts))


def shuffled_order(n: int, rng: random.Random | None = None) -> list[int]:
    order = list(range(n))
    (rng or random.Random(secrets.randbits(64))).shuffle(order)
    return order


def wilson_interval(successes: float, n: float, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a proportion (ties count as half a success)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class Tally:
    """Every vote so far, and what follows from them."""

    configs: list[DecodingConfig]
    votes: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.configs) < 2:
            raise ConfigError("blind A/B needs at least 2 configs")
        if len(self.configs) > len(LABELS):
            raise ConfigError(f"blind A/B shows at most {len(LABELS)} configs at once")

    @property
    def names(self) -> list[str]:
        names = [c.name for c in self.configs]
        return [n if names.count(n) == 1 else f"{n}#{i + 1}" for i, n in enumerate(names)]

    def record(self, rnd: Round, choice: str) -> dict:
        """choice: a label ("A", "B", ...), "tie" or "skip". Returns the reveal."""
        if choice not in rnd.labels and choice not in ("tie", "skip"):
            raise ConfigError(f"vote {choice!r} is not one of {', '.join(rnd.labels)}, tie, skip")
        winner = rnd.order[rnd.labels.index(choice)] if choice in rnd.labels else None
        vote = {"round": rnd.number, "prompt": rnd.prompt, "order": list(rnd.order), "seeds": list(rnd.seeds),
                "choice": choice, "winner": winner}
        self.votes.append(vote)
        return vote

    def reveal(self, rnd: Round) -> list[str]:
        return [f"{label} = {self.names[i]} (seed {seed})" for label, i, seed in zip(rnd.labels, rnd.order, rnd.seeds)]

    # -- arithmetic -------------------------------------------------------------------------------------
    def pairwise(self) -> tuple[list[list[float]], list[list[float]]]:
        """wins[i][j]: times i beat j; ties[i][j]: times i and j tied (symmetric)."""
        n = len(self.configs)
        wins = [[0.0] * n for _ in range(n)]
        ties = [[0.0] * n for _ in range(n)]
        for vote in self.votes:
            shown = vote["order"]
            if vote["choice"] == "skip":
                continue
            if vote["choice"] == "tie":
                for a in shown:
                    for b in shown:
                        if a != b:
                            ties[a][b] += 1
                continue
            for other in shown:
                if other != vote["winner"]:
                    wins[vote["winner"]][other] += 1
        return wins, ties

    def summary(self) -> list[dict]:
        """Per config: wins, losses, ties, win rate (ties as half) with its 95% Wilson interval, BT rating."""
        wins, ties = self.pairwise()
        ratings = self.bradley_terry()
        rows = []
        for i, name in enumerate(self.names):
            w = sum(wins[i])
            lost = sum(wins[j][i] for j in range(len(self.configs)))
            t = sum(ties[i])
            games = w + lost + t
            rate = (w + 0.5 * t) / games if games else None
            low, high = wilson_interval(w + 0.5 * t, games)
            rows.append({"name": name, "wins": w, "losses": lost, "ties": t, "games": games, "win_rate": rate,
                         "ci_low": low, "ci_high": high, "rating": ratings[i]})
        return rows

    def bradley_terry(self, iterations: int = 500, prior: float = 1.0) -> list[float]:
        """Bradley-Terry strengths by Hunter's MM algorithm, on an Elo-like scale (1000 = average).

        Ties count as half a win each way; `prior` adds that many virtual ties to every pair, so a
        config with no wins still gets a finite rating and a few votes do not swing it to infinity.
        """
        wins, ties = self.pairwise()
        n = len(self.configs)
        won = [[wins[i][j] + 0.5 * ties[i][j] + 0.5 * prior for j in range(n)] for i in range(n)]
        games = [[won[i][j] + won[j][i] for j in range(n)] for i in range(n)]
        strength = [1.0] * n
        for _ in range(iterations):
            new = []
            for i in range(n):
                total = sum(won[i][j] for j in range(n) if j != i)
                denominator = sum(games[i][j] / (strength[i] + strength[j]) for j in range(n) if j != i)
                new.append(total / denominator)
            mean_log = sum(math.log(s) for s in new) / n
            strength = [s / math.exp(mean_log) for s in new]
        return [1000 + 400 * math.log10(s) for s in strength]

    def leader(self) -> int | None:
        """Index of the config with the best rating, once at least one vote counted."""
        if not any(v["choice"] != "skip" for v in self.votes):
            return None
        ratings = self.bradley_terry()
        return max(range(len(ratings)), key=ratings.__getitem__)

    def describe(self, index: int) -> str:
        row = self.summary()[index]
        rate = "n/a" if row["win_rate"] is None else f"{row['win_rate']:.0%}"
        rounds = f"{len(self.votes)} round" + ("" if len(self.votes) == 1 else "s")
        return (f"blind A/B winner over {rounds} vs "
                f"{', '.join(n for k, n in enumerate(self.names) if k != index)}: {row['wins']:.0f} wins, "
                f"{row['losses']:.0f} losses, {row['ties']:.0f} ties, win rate {rate} "
                f"(95% CI {row['ci_low']:.0%}-{row['ci_high']:.0%}), rating {row['rating']:.0f}")

    # -- persistence ----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"schema": TALLY_SCHEMA, "kind": "decodelab-ab", "configs": [c.to_dict() for c in self.configs],
                "votes": self.votes}

    @classmethod
    def from_dict(cls, data: dict, where: str = "tally") -> Tally:
        if not isinstance(data, dict) or data.get("kind") != "decodelab-ab":
            raise ConfigError(f"{where} is not a decodelab A/B tally")
        if data.get("schema") != TALLY_SCHEMA:
            raise ConfigError(f"{where} has schema {data.get('schema')!r}; this decodelab reads {TALLY_SCHEMA}")
        try:
            configs = [DecodingConfig.from_dict(c, where=where) for c in data["configs"]]
            votes = [dict(v) for v in data["votes"]]
            for v in votes:
                if not all(0 <= i < len(configs) for i in v["order"]):
                    raise ValueError("a vote names a config that is not in the tally")
        except ConfigError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where} is damaged ({exc})") from None
        return cls(configs=configs, votes=votes)


def save_tally(tally: Tally, path: str | Path) -> None:
    """Saved after every vote: atomic, replacing the previous state of the same tally."""
    import json

    from ..library.fileio import save_document

    save_document(path, json.dumps(tally.to_dict(), ensure_ascii=False, indent=1) + "\n", "tally", overwrite=True)


def load_tally(path: str | Path) -> Tally:
    import json

    from ..library.fileio import load_document

    text = load_document(path, "tally")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"tally {path} is not valid JSON: {exc}") from None
    return Tally.from_dict(data, where=f"tally {path}")


def play_round(loaded: Backend, tally: Tally, prompt: str, number: int, rng: random.Random | None = None,
               **kwargs: Any) -> Round:
    """Run every config on the prompt with fresh seeds, in a shuffled order, as one batched call."""
    from ..session import default_session

    order = shuffled_order(len(tally.configs), rng)
    configs = [tally.configs[i].replace(seed=None) for i in order]
    completions = default_session().generate(loaded, prompt, configs, **kwargs)
    return Round(number=number, prompt=prompt, order=order, texts=[c.text for c in completions],
                 seeds=[c.seed for c in completions])


def play_rounds(loaded: Backend, tally: Tally, prompts: Sequence[str], first: int, count: int, chunk: int = 8,
                rng: random.Random | None = None, **kwargs: Any) -> Iterator[Round]:
    """Rounds first .. first+count-1 over prompts (cycled), yielded one at a time for voting.

    Each chunk of rounds runs as ONE multi-prompt batch (every config of every round's prompt is a
    row), so a prompt file is decoded in a fraction of the time of one round after another.
    """
    from ..session import default_session

    for start in range(first, first + count, chunk):
        numbers = list(range(start, min(start + chunk, first + count)))
        orders = [shuffled_order(len(tally.configs), rng) for _ in numbers]
        texts = [prompts[n % len(prompts)] for n in numbers]
        items = [(text, [tally.configs[i].replace(seed=None) for i in order]) for text, order in zip(texts, orders)]
        for number, text, order, completions in zip(numbers, texts, orders, default_session().generate_prompts(loaded, items, **kwargs)):
            yield Round(number=number, prompt=text, order=order, texts=[c.text for c in completions],
                        seeds=[c.seed for c in completions])
