"""NDCG@5 on hand-computed cases: upstream convention, official formula, random expectation."""
import itertools
import math

import numpy as np
import pytest

from hsl.metric import (NDCGScorer, cal_ndcg, official_ndcg, official_query_ndcg, random_ndcg,
                        rank_candidates)

D = [1 / math.log2(i + 2) for i in range(10)]  # 1, 0.6309, 0.5, 0.4307, 0.3869, ...


def test_single_relevant_at_rank_two():
    assert NDCGScorer(5).score([0, 1, 0, 0, 0, 0]) == pytest.approx(D[1])


def test_more_than_five_relevant_truncates_both_dcg_and_idcg():
    labels = [1, 1, 0, 1, 1, 1, 1, 1, 0, 0]
    want = (D[0] + D[1] + D[3] + D[4]) / sum(D[:5])
    assert NDCGScorer(5).score(labels) == pytest.approx(want)


def test_short_pool_uses_its_length():
    assert NDCGScorer(5).score([0, 0, 1]) == pytest.approx(D[2])


def test_ties_follow_numpy_argsort_reversed():
    scores = np.array([0.5, 0.5, 0.2], np.float32)
    order = rank_candidates(scores)
    assert list(order) == list(np.argsort(scores)[::-1]) == [1, 0, 2]
    # product at index 1 (id 20) is ranked first by upstream's tie order
    assert cal_ndcg(scores, [10, 20, 30], [20], NDCGScorer(5)) == pytest.approx(1.0)
    assert cal_ndcg(scores, [10, 20, 30], [10], NDCGScorer(5)) == pytest.approx(D[1])


def test_out_of_pool_answers_ignored_upstream_but_counted_officially():
    scores = np.array([0.9, 0.1, 0.5], np.float32)
    pool, gt = [10, 20, 30], [30, 99]
    assert cal_ndcg(scores, pool, gt, NDCGScorer(5)) == pytest.approx(D[1])
    assert official_query_ndcg([10, 30, 20], gt) == pytest.approx(D[1] / (D[0] + D[1]))
    # official: mean over every answer query, missing predictions count 0
    assert official_ndcg({'1': [10, 30, 20]}, {'1': gt, '2': [5]}) == pytest.approx(D[1] / (D[0] + D[1]) / 2)


def test_official_dedups_predictions_and_cuts_at_five():
    assert official_query_ndcg([1, 1, 2, 3, 4, 5, 6], [6]) == 0.0
    assert official_query_ndcg([1, 1, 2, 3, 4, 6], [6]) == pytest.approx(D[4])


def test_no_relevant_candidate_warns_and_scores_zero(caplog):
    with pytest.raises(ZeroDivisionError):
        NDCGScorer(5).score([0, 0, 0])  # upstream's behaviour
    assert cal_ndcg(np.array([0.3, 0.2], np.float32), [1, 2], [7], NDCGScorer(5), '42') == 0.0
    assert 'query 42 has no relevant product' in caplog.text


@pytest.mark.parametrize('pool,relevant', [(5, 1), (6, 2), (7, 7), (3, 1)])
def test_random_ndcg_equals_mean_over_all_permutations(pool, relevant):
    labels = [1] * relevant + [0] * (pool - relevant)
    values = [NDCGScorer(5).score(list(p)) for p in itertools.permutations(labels)]
    assert random_ndcg(pool, relevant) == pytest.approx(np.mean(values))
