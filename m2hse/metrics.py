"""Label-based mAP of a score matrix (upstream evaluation.py i2t_mAP / t2i_mAP), numpy only."""
import numpy as np


def _average_precisions(sims, targets):
    """Upstream i2t_mAP body (evaluation.py:98-130) for rows of `sims`; returns (N, 1) APs.

    Quirk kept (evaluation.py:103): the ranking is `argsort()[:, ::-1]`, the reverse of numpy's
    default (unstable) ascending sort, so ties are ordered exactly as upstream orders them.
    """
    ranking = sims.argsort()[:, ::-1]
    targets = np.asarray(targets)
    AP = np.zeros((sims.shape[0], 1))
    for i in range(sims.shape[0]):
        relevant = targets[ranking[i]] == targets[i]
        rel_count = np.cumsum(relevant)
        positions = np.nonzero(relevant)[0]
        # upstream adds relCount/(j+1) one relevant item at a time: a sequential float64 sum
        terms = rel_count[positions] / (positions + 1)
        AP[i] = np.cumsum(terms)[-1] / rel_count[-1] if len(terms) else np.nan
    return AP


def i2t_mAP(sims, targets):
    """Image -> text mAP: each image row ranks all captions; relevant = same label."""
    return np.mean(_average_precisions(sims, targets))


def t2i_mAP(sims, targets):
    """Text -> image mAP: the same on sims.T."""
    return np.mean(_average_precisions(sims.T, targets))


def random_mAP_sum(labels, n_trials=5, seed=0):
    """mAP_sum of uniformly random score matrices (mean over trials): the chance level to beat."""
    rng = np.random.RandomState(seed)
    n = len(labels)
    return float(np.mean([i2t_mAP(s, labels) + t2i_mAP(s, labels)
                          for s in (rng.rand(n, n) for _ in range(n_trials))]))
