"""i2t / t2i / fold5 on hand-built matrices, and the ranking loss on a hand-checked 3x3 case."""
import contextlib
import io
import json
import os

import numpy as np
import pytest
import torch

from lhsc import evaluation
from lhsc.model import ContrastiveLoss

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')
UPSTREAM = os.path.join(DATA, 'upstream')
VOCAB = os.path.join(DATA, 'vocab')

S3 = [[0.5, 0.45, 0.6], [0.55, 0.4, 0.3], [0.7, 0.35, 0.3]]


def test_loss_3x3_by_hand_with_and_without_max_violation():
    # margin 0.2, diagonal (.5, .4, .3):
    # cost_s rows:  (.15, .3), (.35, .1), (.6, .25)   -> sum 1.75, row maxima .3+.35+.6 = 1.25
    # cost_im cols: (.25, .4), (.25, .15), (.5, .2)   -> sum 1.75, col maxima .4+.25+.5 = 1.15
    scores = torch.tensor(S3)
    upstream = json.load(open(os.path.join(UPSTREAM, 'loss_3x3.json')))  # run with upstream's class
    assert ContrastiveLoss(0.2, max_violation=True)(scores).item() == pytest.approx(2.4, abs=1e-6)
    assert ContrastiveLoss(0.2, max_violation=False)(scores).item() == pytest.approx(3.5, abs=1e-6)
    assert upstream == {'True': pytest.approx(2.4, abs=1e-6), 'False': pytest.approx(3.5, abs=1e-6)}


def test_loss_gradient_flows_on_cpu():
    scores = torch.tensor(S3, requires_grad=True)
    ContrastiveLoss(0.2, True)(scores).backward()
    # hardest negatives: rows pick (0,2),(1,0),(2,0); columns pick (2,0),(0,1),(0,2)
    expected_offdiag = {(0, 2): 2, (1, 0): 1, (2, 0): 2, (0, 1): 1}
    for (i, j), v in expected_offdiag.items():
        assert scores.grad[i, j].item() == v
    assert scores.grad.diag().tolist() == [-2, -2, -2]  # one row term + one column term each


def hand_matrix():
    row0 = [0.1, 0.9, 0.2, 0.3, 0.15, 0.95, 0.5, 0.05, 0.6, 0.7]
    row1 = [0.8, 0.1, 0.25, 0.35, 0.4, 0.5, 0.05, 0.06, 0.07, 0.08]
    return np.array([row0, row1])


def test_i2t_t2i_on_hand_built_matrix():
    sims = hand_matrix()
    r, (ranks, top1) = evaluation.i2t(None, None, None, sims, return_ranks=True)
    assert ranks.tolist() == [1, 1] and top1.tolist() == [5, 0]
    assert r == (0.0, 100.0, 100.0, 2.0, 2.0)
    ri, (ranks_i, _) = evaluation.t2i(None, None, None, sims, return_ranks=True)
    assert ranks_i.tolist() == [1, 0, 1, 1, 1, 1, 1, 0, 1, 1]
    assert ri == (20.0, 100.0, 100.0, 2.0, pytest.approx(1.8))
    m = evaluation.retrieval_metrics(sims)
    assert m['rsum'] == pytest.approx(420.0) and m['ar'] == pytest.approx(200 / 3) and m['ari'] == pytest.approx(220 / 3)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        evaluation.print_full(m)
    assert buf.getvalue().splitlines() == ['rsum: 420.0', 'Average i2t Recall: 66.7',
                                           'Image to text: 0.0 100.0 100.0 2.0 2.0',
                                           'Average t2i Recall: 73.3', 'Text to image: 20.0 100.0 100.0 2.0 1.8']


def test_fold5_mean_lines_keep_upstream_labels_and_add_true_means():
    folds = []
    for k in range(5):
        r = [10.0 + k, 20.0, 30.0, 4.0, 5.0]
        ri = [1.0 * k, 2.0, 3.0, 6.0, 7.0]
        ar, ari = sum(r[:3]) / 3, sum(ri[:3]) / 3
        folds.append({'i2t': dict(zip(('r1', 'r5', 'r10', 'medr', 'meanr'), r)),
                      't2i': dict(zip(('r1', 'r5', 'r10', 'medr', 'meanr'), ri)),
                      'ar': ar, 'ari': ari, 'rsum': sum(r[:3]) + sum(ri[:3]), 'n_images': 1000, 'n_captions': 5000})
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        mean = evaluation.fold5_summary(folds)
    lines = buf.getvalue().splitlines()
    # means: r1 12, ri1 2 -> ar = 62/3 = 20.667, ari = 7/3 = 2.333, rsum = 69
    assert lines[:7] == ['-----------------------------------', 'Mean metrics: ',
                         'rsum: 124.0',                       # upstream: 6 * mean(ar)
                         'Average i2t Recall: 2.3',           # upstream: mean(ari)
                         'Image to text: 12.0 20.0 30.0 4.0 5.0',
                         'Average t2i Recall: 69.0',          # upstream: mean(rsum)
                         'Text to image: 2.0 2.0 3.0 6.0 7.0']
    assert 'True mean metrics' in lines[7] and lines[8] == 'rsum: 69.0 ar: 20.7 ari: 2.3'
    assert mean['rsum'] == pytest.approx(69.0) and mean['ar'] == pytest.approx(62 / 3)
    assert mean['i2t']['r1'] == pytest.approx(12.0) and mean['n_images'] == 5000


def test_fold5_evalrank_slices_like_upstream(tmp_path):
    """5 folds of 6 images over the 30-image fixture: fold k = images 6k.., captions 30k.."""
    full = np.load(os.path.join(UPSTREAM, 'lhsc_test_sims.npy'))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        metrics, sims = evaluation.evalrank(os.path.join(UPSTREAM, 'lhsc_legacy.pth.tar'), DATA, 'test',
                                            fold5=True, vocab_path=VOCAB, fold_images=6)
    assert sims.shape == (5, 6, 30)
    for k in range(5):
        block = full[6 * k:6 * (k + 1), 30 * k:30 * (k + 1)]
        assert np.abs(sims[k] - block).max() <= 1e-5
        assert metrics['folds'][k]['i2t'] == pytest.approx(evaluation.retrieval_metrics(block)['i2t'])
    assert metrics['rsum'] == pytest.approx(np.mean([f['rsum'] for f in metrics['folds']]))
    assert metrics['mean']['ari'] == metrics['ari']
    text = buf.getvalue()
    assert text.count('Image to text: ') == 6 and 'Mean metrics: ' in text
    assert 'rsum: %.1f ar: %.1f ari: %.1f' % (metrics['folds'][0]['rsum'], metrics['folds'][0]['ar'],
                                              metrics['folds'][0]['ari']) in text


def test_fold5_on_small_split_is_a_clear_error():
    with pytest.raises(SystemExit, match='5 folds of 1000 images'):
        evaluation.evalrank(os.path.join(UPSTREAM, 'lhsc_legacy.pth.tar'), DATA, 'test', fold5=True,
                            vocab_path=VOCAB)


def test_recall_at_k_is_percent_of_ranks_below_k():
    # moved with recall_at_k from common/metrics.py (lhsc is its only user)
    ranks = np.array([0, 0, 3, 7, 12])
    assert evaluation.recall_at_k(ranks, 1) == 40.0
    assert evaluation.recall_at_k(ranks, 5) == 60.0
    assert evaluation.recall_at_k(ranks, 10) == 80.0
