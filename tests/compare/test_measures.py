"""The compare measures on hand-made token lists."""

from __future__ import annotations

import pytest

from llmgen.compare import distinct, mean, ngrams, repetition


def test_ngrams_slide_one_token_at_a_time():
    assert ngrams([1, 2, 3, 4], 2) == [(1, 2), (2, 3), (3, 4)]
    assert ngrams([1, 2], 3) == []


def test_distinct_is_the_share_of_unique_ngrams():
    assert distinct([1, 2, 3, 4], 1) == 1.0
    assert distinct([7, 7, 7, 7], 1) == 0.25
    assert distinct([1, 2, 1, 2, 1], 2) == pytest.approx(2 / 4)  # (1,2) (2,1) (1,2) (2,1)
    assert distinct([1, 2, 3, 1], 2) == 1.0


def test_repetition_counts_4grams_seen_before():
    assert repetition([1, 2, 3, 4, 5, 6]) == 0.0
    loop = [1, 2, 3, 4] * 3  # 9 four-grams, 4 distinct
    assert repetition(loop) == pytest.approx(1 - 4 / 9)
    assert repetition([5] * 10) == pytest.approx(1 - 1 / 7)


def test_measures_of_outputs_too_short_are_undefined_not_zero():
    assert distinct([], 1) is None
    assert distinct([3], 2) is None
    assert repetition([1, 2, 3]) is None
    assert mean([]) is None
    assert mean([-1.0, -3.0]) == -2.0
