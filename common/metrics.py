"""Metric primitives shared by several papers. Each paper's own protocol (HSL's and FHN's NDCGs,
LHSC's 5-captions/fold5 evaluation, AVAS's recall@K) lives in that paper's folder."""
import numpy as np


def positive_ranks(scores, positives):
    """0-based rank of the best-ranked positive in each row of `scores` (higher score = better).

    positives: a boolean matrix shaped like `scores`, or one list of column indices per row.
    Ties are broken by a stable descending sort: of equal scores, the earlier column ranks first.
    (Papers whose upstream uses `np.argsort(d)[::-1]`, which puts later columns first, keep their
    own ranking code.)
    """
    scores = np.asarray(scores)
    order = np.argsort(-scores, axis=1, kind='stable')
    ranks = np.empty(scores.shape[0], dtype=np.int64)
    for row in range(scores.shape[0]):
        if isinstance(positives, np.ndarray) and positives.dtype == bool:
            wanted = positives[row]
        else:
            wanted = np.zeros(scores.shape[1], dtype=bool)
            wanted[np.asarray(list(positives[row]), dtype=np.int64)] = True
        hits = np.nonzero(wanted[order[row]])[0]
        if hits.size == 0:
            raise ValueError('row %d has no positive column' % row)
        ranks[row] = hits[0]
    return ranks


def recall_at_k(ranks, k):
    """Percentage of queries whose first positive is within the top k (SCAN: 100 * mean(r < k))."""
    ranks = np.asarray(ranks)
    return 100.0 * np.count_nonzero(ranks < k) / len(ranks)


def _average_ranks(values):
    """1-based ranks of `values`, tied values sharing the mean of their ranks."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind='mergesort')
    sorted_vals = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    boundaries = np.r_[0, np.nonzero(np.diff(sorted_vals))[0] + 1, len(values)]
    for start, stop in zip(boundaries[:-1], boundaries[1:]):
        ranks[order[start:stop]] = 0.5 * (start + 1 + stop)
    return ranks


def roc_auc(labels, scores):
    """Area under the ROC curve (Mann-Whitney U); a tie counts one half."""
    labels = np.asarray(labels).astype(bool)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError('ROC-AUC needs both positive and negative labels')
    ranks = _average_ranks(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(labels, scores):
    """Label-based AP: mean of precision@i over the positions i of the relevant items, ranking by
    descending score (stable: ties keep input order)."""
    labels = np.asarray(labels).astype(bool)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind='stable')
    hits = labels[order]
    if not hits.any():
        return 0.0
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())
