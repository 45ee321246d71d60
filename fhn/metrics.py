"""Per-user AUC and NDCG exactly as upstream utils/metrics.py."""
import numpy as np
import sklearn.metrics

_POSILABEL = 1
_NEGALABEL = 0


def _canonical(posi, nega):
    """Labels [1]*P + [0]*N and scores posi ++ nega."""
    posi, nega = np.array(posi), np.array(nega)
    y_true = np.array([_POSILABEL] * len(posi) + [_NEGALABEL] * len(nega))
    y_score = np.hstack((posi.flatten(), nega.flatten()))
    return y_true, y_score


def ROC(posi, nega):
    """(per-user AUCs, unweighted mean) with sklearn's roc_auc_score (ties count 1/2)."""
    assert len(posi) == len(nega)
    aucs = []
    for p, n in zip(posi, nega):
        y_true, y_score = _canonical(p, n)
        aucs.append(sklearn.metrics.roc_auc_score(y_true, y_score))
    return aucs, sum(aucs) / len(posi)


def ndcg_score(y_score, y_label, wtype="max"):
    """ndcg@k for k = 1..n; 'max' discount log2(max(rank, 2)) (ranks 1 and 2 both 1).

    Ties keep np.argsort's default (quicksort) order, as upstream (metrics.py:302).
    """
    order = np.argsort(-y_score)
    p_label = np.take(y_label, order)
    i_label = np.sort(y_label)[::-1]
    p_gain = 2 ** p_label - 1
    i_gain = 2 ** i_label - 1
    if wtype.lower() == "max":
        discounts = np.log2(np.maximum(np.arange(len(y_label)) + 1, 2.0))
    else:
        discounts = np.log2(np.arange(len(y_label)) + 2)
    return (p_gain / discounts).cumsum() / (i_gain / discounts).cumsum()


def mean_ndcg_score(u_scores, u_labels, wtype="max"):
    """(mean over all cut-offs per user [U], mean ndcg@k over users having >= k items)."""
    num_users = len(u_scores)
    n_samples = [len(scores) for scores in u_scores]
    max_sample = max(n_samples)
    count = np.zeros(max_sample)
    mean_ndcg = np.zeros(num_users)
    avg_ndcg = np.zeros(max_sample)
    for u in range(num_users):
        ndcg = ndcg_score(u_scores[u], u_labels[u], wtype)
        avg_ndcg[: n_samples[u]] += ndcg
        count[: n_samples[u]] += 1
        mean_ndcg[u] = ndcg.mean()
    return mean_ndcg, avg_ndcg / count


def NDCG(posi, nega, wtype="max"):
    assert len(posi) == len(nega)
    u_labels, u_scores = [], []
    for p, n in zip(posi, nega):
        label, score = _canonical(p, n)
        u_labels.append(label)
        u_scores.append(score)
    return mean_ndcg_score(u_scores, u_labels, wtype)


def calc_AUC(posi, nega):
    return ROC(posi, nega)[1]


def calc_NDCG(posi, nega):
    return NDCG(posi, nega)[0].mean()
