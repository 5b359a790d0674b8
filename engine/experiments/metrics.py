"""Automatic metrics for generated text: likelihood, diversity, repetition, and reference overlap.

Texts are split into words (runs of letters/digits, or single punctuation marks) for the n-gram
measures. Every function is pure and works on plain strings or lists, so it is easy to check by hand.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from itertools import combinations

_WORD = re.compile(r"\w+|[^\w\s]")
_ROUGE_DROP = re.compile(r"[^a-z0-9]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngrams(items: list, n: int) -> list[tuple]:
    return [tuple(items[i : i + n]) for i in range(len(items) - n + 1)]


def distinct_n(text: str, n: int) -> float:
    """Distinct n-grams / total n-grams (Li et al. 2016); 0 for a text too short to have one."""
    grams = ngrams(words(text), n)
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(text: str, n: int = 3) -> float:
    """Share of n-grams that already occurred earlier in the same text (0 = no repeats)."""
    grams = ngrams(words(text), n)
    if not grams:
        return 0.0
    seen: set[tuple] = set()
    repeats = 0
    for gram in grams:
        repeats += gram in seen
        seen.add(gram)
    return repeats / len(grams)


def _lcs(a: list[str], b: list[str]) -> int:
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_words(text: str) -> list[str]:
    """Words as rouge-score (Google's reference ROUGE) splits them: lower case, runs of a-z and 0-9 only; punctuation
    (and any other character) separates and is not a word."""
    return _ROUGE_DROP.sub(" ", text.lower()).split()


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 (beta = 1) over rouge-score's words, so it equals rouge_score's RougeScorer(["rougeL"]) (no stemmer)."""
    c, r = rouge_words(candidate), rouge_words(reference)
    lcs = _lcs(c, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(c), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def chrf(candidate: str, reference: str, n: int = 6, beta: float = 2.0) -> float:
    """chrF (Popović 2015): character n-gram F-beta, averaged over n = 1..6, whitespace removed; 0..1."""
    c, r = re.sub(r"\s+", "", candidate), re.sub(r"\s+", "", reference)
    precisions, recalls = [], []
    for k in range(1, n + 1):
        cg, rg = Counter(ngrams(list(c), k)), Counter(ngrams(list(r), k))
        if not cg or not rg:
            continue
        overlap = sum((cg & rg).values())
        precisions.append(overlap / sum(cg.values()))
        recalls.append(overlap / sum(rg.values()))
    if not precisions:
        return 0.0
    p, rc = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
    if p == 0 and rc == 0:
        return 0.0
    return (1 + beta**2) * p * rc / (beta**2 * p + rc)


def self_similarity(texts: list[str]) -> float | None:
    """Mean pairwise ROUGE-L between outputs of the same point under different seeds (high = less diverse)."""
    if len(texts) < 2:
        return None
    pairs = list(combinations(texts, 2))
    return sum(rouge_l(a, b) for a, b in pairs) / len(pairs)


def text_metrics(text: str, logprobs: list[float], reference: str | None = None) -> dict[str, float]:
    """All per-output metrics for one generated text."""
    finite = [lp for lp in logprobs if math.isfinite(lp)]
    mean = sum(finite) / len(finite) if finite else float("nan")
    out = {
        "mean_logprob": mean,
        "perplexity": math.exp(-mean) if finite else float("nan"),
        "distinct_1": distinct_n(text, 1),
        "distinct_2": distinct_n(text, 2),
        "repetition": repetition_rate(text),
        "length": float(len(words(text))),
    }
    if reference is not None:
        out["rouge_l"] = rouge_l(text, reference)
        out["chrf"] = chrf(text, reference)
    return out


METRICS = ("mean_logprob", "perplexity", "distinct_1", "distinct_2", "repetition", "length", "self_similarity",
           "rouge_l", "chrf")
"""Every metric name a sweep objective may use."""
