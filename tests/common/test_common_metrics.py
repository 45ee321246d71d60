import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from common.metrics import average_precision, positive_ranks, recall_at_k, roc_auc


def test_positive_ranks_hand_computed():
    scores = np.array([[0.9, 0.1, 0.5, 0.3],
                       [0.2, 0.8, 0.8, 0.1],   # tie: the earlier column ranks first
                       [0.1, 0.2, 0.3, 0.4]])
    assert positive_ranks(scores, [[0], [2], [1, 2]]).tolist() == [0, 1, 1]
    as_matrix = np.zeros_like(scores, dtype=bool)
    as_matrix[0, 0] = as_matrix[1, 2] = as_matrix[2, 1] = as_matrix[2, 2] = True
    assert positive_ranks(scores, as_matrix).tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match='row 0'):
        positive_ranks(scores, np.zeros_like(scores, dtype=bool))


def test_recall_at_k_is_percent_of_ranks_below_k():
    ranks = np.array([0, 0, 3, 7, 12])
    assert recall_at_k(ranks, 1) == 40.0
    assert recall_at_k(ranks, 5) == 60.0
    assert recall_at_k(ranks, 10) == 80.0


def test_roc_auc_hand_computed_with_ties():
    # positives {0.8, 0.5}, negatives {0.5, 0.1}: pairs won 1 + 1 + 0.5(tie) + 1 = 3.5 of 4
    assert roc_auc([1, 1, 0, 0], [0.8, 0.5, 0.5, 0.1]) == pytest.approx(0.875)
    assert roc_auc([1, 0], [0.3, 0.3]) == 0.5
    with pytest.raises(ValueError):
        roc_auc([1, 1], [0.1, 0.2])


def test_average_precision_hand_computed():
    # ranking: rel, not, rel, not -> (1/1 + 2/3) / 2
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision([0, 0], [0.5, 0.1]) == 0.0


@pytest.mark.parametrize('seed', range(5))
def test_roc_auc_and_ap_match_sklearn_on_random_data(seed):
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, 2, size=200)
    labels[:2] = [0, 1]
    scores = np.round(rng.rand(200), 1)  # coarse values: many ties
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    distinct = rng.rand(200)  # sklearn's AP groups ties; compare on tie-free scores
    assert average_precision(labels, distinct) == pytest.approx(average_precision_score(labels, distinct), abs=1e-12)
