"""NDCG@5 as upstream computes it (metric.py NDCGScorer + evaluation.py cal_ndcg), the official
KDD Cup 2020 (Tianchi) formula, and the expected value of a random ranking."""
import math
import logging

import numpy as np

K = 5  # NDCG cut-off, hard-coded upstream (main.py:148)


class NDCGScorer(object):
    """Binary-gain NDCG@k on a list of 0/1 labels in ranked order (upstream metric.py:73)."""

    def __init__(self, k=0):
        self.k = k

    def getLength(self, sorted_labels):
        length = self.k
        if length > len(sorted_labels) or length <= 0:
            length = len(sorted_labels)
        return length

    def getDCG(self, sorted_labels):
        length = self.getLength(sorted_labels)
        dcg = max(sorted_labels[0], 0)
        for i in range(1, length):
            dcg += float(max(sorted_labels[i], 0)) / math.log(i + 2, 2)
        return dcg

    def getIdealDCG(self, sorted_labels):
        return self.getDCG(sorted(sorted_labels, reverse=True))

    def score(self, sorted_labels):
        """Raises ZeroDivisionError when no label is relevant, as upstream."""
        return self.getDCG(sorted_labels) / self.getIdealDCG(sorted_labels)


def rank_candidates(scores):
    """Upstream's ranking: np.argsort(scores)[::-1] (default sort kind; ties as numpy leaves them)."""
    return np.argsort(scores)[::-1]


def ranked_labels(scores, cand_pool, gdprods):
    return [1 if int(cand_pool[i]) in gdprods else 0 for i in rank_candidates(scores)]


def cal_ndcg(scores, cand_pool, gdprods, scorer, query_id=None):
    """Upstream cal_ndcg; a query without a relevant candidate warns and counts 0 (upstream crashed)."""
    labels = ranked_labels(scores, cand_pool, gdprods)
    if not any(labels):
        logging.getLogger(__name__).warning(
            'WARNING: query %s has no relevant product in its candidate pool; counted as nDCG 0 '
            '(upstream raises ZeroDivisionError here)', query_id)
        return 0.0
    return scorer.score(labels)


def official_query_ndcg(predicted, ground_truth, k=K):
    """Tianchi scorer for one query: top-k distinct predictions, IDCG over len(set(gt))."""
    gt = set(int(p) for p in ground_truth)
    if not gt:
        return 0.0
    top, seen = [], set()
    for pid in predicted:
        pid = int(pid)
        if pid not in seen:
            seen.add(pid)
            top.append(pid)
        if len(top) == k:
            break
    gains = [1.0 if pid in gt else 0.0 for pid in top]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    idcg = sum(1.0 / math.log2(i + 2) for i in range(min(len(gt), k)))
    return dcg / idcg


def official_ndcg(rankings, answer, k=K):
    """Mean over every query id of the answer file; a query without prediction scores 0."""
    if not answer:
        return 0.0
    total = 0.0
    for query_id, gt in answer.items():
        total += official_query_ndcg(rankings.get(str(query_id), []), gt, k)
    return total / len(answer)


def random_ndcg(pool_size, num_relevant, k=K):
    """Expected upstream NDCG@k of a uniformly random ranking: each of the first min(k, P)
    positions holds a relevant item with probability R/P; IDCG is fixed."""
    if num_relevant == 0:
        return 0.0
    length = min(k, pool_size)
    discounts = [1.0 / math.log2(i + 2) for i in range(length)]
    return (num_relevant / pool_size) * sum(discounts) / sum(discounts[:min(num_relevant, length)])
