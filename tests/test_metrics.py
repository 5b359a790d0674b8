"""Automatic metrics, checked on handmade texts."""

from __future__ import annotations

import math

import pytest

from decodelab.engine.experiments.metrics import chrf, distinct_n, repetition_rate, rouge_l, self_similarity, text_metrics, words


def test_words_split_punctuation():
    assert words("Hello, World!") == ["hello", ",", "world", "!"]


def test_distinct_n():
    assert distinct_n("a b a b", 1) == 0.5
    assert distinct_n("a b a b", 2) == pytest.approx(2 / 3)
    assert distinct_n("a", 2) == 0.0
    assert distinct_n("one two three", 1) == 1.0


def test_repetition_rate():
    assert repetition_rate("a b c a b c", 3) == 0.25
    assert repetition_rate("a b c d", 3) == 0.0
    assert repetition_rate("x x x x x", 1) == 0.8


def test_rouge_l():
    assert rouge_l("the cat sat", "the cat sat on the mat") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert rouge_l("a b c", "a b c") == 1.0
    assert rouge_l("a b c", "d e f") == 0.0
    assert rouge_l("", "a") == 0.0


def test_chrf():
    assert chrf("the cat", "the cat") == pytest.approx(1.0)
    assert chrf("abc", "xyz") == 0.0
    partial = chrf("the cat", "the hat")
    assert 0 < partial < 1


def test_self_similarity():
    assert self_similarity(["a b c", "a b c", "a b c"]) == 1.0
    assert self_similarity(["a b", "c d"]) == 0.0
    assert self_similarity(["only one"]) is None


def test_text_metrics_bundle():
    m = text_metrics("a b a b", [math.log(0.5), math.log(0.5)], reference="a b")
    assert m["mean_logprob"] == pytest.approx(math.log(0.5)) and m["perplexity"] == pytest.approx(2.0)
    assert m["distinct_1"] == 0.5 and m["length"] == 4.0 and m["rouge_l"] > 0 and "chrf" in m
    assert "rouge_l" not in text_metrics("x", [0.0])


def test_rouge_l_equals_rouge_score_on_the_issues_pairs_and_hundreds_more():
    """The A/B and sweep metric against Google's rouge-score (rougeL, no stemmer), which counts no punctuation."""
    import random

    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    pairs = [("The cat sat on the mat.", "A cat was sitting on the mat."),
             ("It rains a lot in Bergen, Norway.", "Bergen in Norway gets much rain.")]
    assert rouge_l(*pairs[0]) == pytest.approx(0.615, abs=5e-4) and rouge_l(*pairs[1]) == pytest.approx(0.308, abs=5e-4)
    vocab = ["the", "cat", "a", "mat", "on", "sat", ",", ".", "!", "Rain", "don't", "e-mail", "x2", "Ünï", "42", "'s",
             "(", ")", "—", "and"]
    rng = random.Random(7)
    for _ in range(300):
        pairs.append(tuple(" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 14))) for _ in range(2)))
    for candidate, reference in pairs:
        expected = scorer.score(reference, candidate)["rougeL"].fmeasure  # rouge-score takes (target, prediction)
        assert rouge_l(candidate, reference) == pytest.approx(expected, abs=1e-12), (candidate, reference)
