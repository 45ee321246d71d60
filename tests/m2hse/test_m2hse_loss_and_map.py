"""MSB loss on a hand-checked batch and label-based mAP on hand-computed rankings (with ties)."""
import argparse
import json
import math
import os

import numpy as np
import pytest
import torch

from common.errors import InputError
from m2hse.evaluation import i2t_mAP, t2i_mAP
from m2hse.model import MultiSpringBalanceLoss

HERE = os.path.dirname(os.path.abspath(__file__))
EXPECTED = json.load(open(os.path.join(HERE, 'data', 'upstream', 'upstream_expected.json')))
OPT = argparse.Namespace(Delta=0.1, gamma_1=1.0, gamma_2=0.5)
S4 = [[0.9, 0.2, 0.5, 0.1], [0.3, 0.8, 0.75, 0.0], [0.6, 0.1, 0.7, 0.65], [0.2, 0.55, 0.3, 0.4]]


def test_msb_hand_checked_batch():
    """labels 0,1,0,1. Mined sets (strict comparisons, Delta .1):
    i=0: row P={.9,.5}, max N=.2 -> P' empty -> skipped.
    i=1: column P={.8,.55}, max N=.2 -> P' empty -> skipped.
    i=3: row P={.55,.4}, max N=.3 -> .4 < .4 false -> P' empty -> skipped.
    i=2: row P'={.6,.7}, N'={.65}; column P'={.5,.7}, N'={.75}.
    Only i=2 survives, but the sum is divided by the full batch size 4."""
    row = math.log(math.exp(.5 - .6) + math.exp(.5 - .7)) + math.log(math.exp(.65 - .5))
    col = math.log(math.exp(.5 - .5) + math.exp(.5 - .7)) + math.log(math.exp(.75 - .5))
    expected = (row + col) / 4
    loss = MultiSpringBalanceLoss(OPT)(torch.tensor(S4, dtype=torch.float64), torch.tensor([0., 1., 0., 1.]))
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    assert loss.item() == pytest.approx(EXPECTED['msb_4x4']['loss'], abs=1e-12)  # upstream's own number


def test_msb_accepts_upstream_label_tuple_and_gammas():
    opt = argparse.Namespace(Delta=0.1, gamma_1=2.0, gamma_2=0.3)
    labels = tuple(torch.Tensor([x]) for x in (0, 1, 0, 1))  # upstream's collate output
    loss = MultiSpringBalanceLoss(opt)(torch.tensor(S4, dtype=torch.float64), labels)
    row = 0.5 * math.log(math.exp(.3 - 2 * .6) + math.exp(.3 - 2 * .7)) + 0.5 * math.log(math.exp(2 * .65 - .3))
    col = 0.5 * math.log(math.exp(.3 - 2 * .5) + math.exp(.3 - 2 * .7)) + 0.5 * math.log(math.exp(2 * .75 - .3))
    assert loss.item() == pytest.approx((row + col) / 4, abs=1e-12)


def test_msb_nothing_survives_gives_float64_zero_with_grad():
    S = torch.tensor(EXPECTED['msb_all_skipped']['scores'], dtype=torch.float32, requires_grad=True)
    loss = MultiSpringBalanceLoss(OPT)(S, torch.tensor([0., 1., 2.]))
    assert loss.dtype == torch.float64 and loss.requires_grad and loss.item() == 0.0
    loss.backward()  # must not raise


def test_msb_single_label_batch_does_not_crash():
    """Upstream raised on max(empty negatives); every row is skipped instead (same numbers otherwise)."""
    S = torch.rand(5, 5, requires_grad=True)
    loss = MultiSpringBalanceLoss(OPT)(S, torch.zeros(5))
    assert loss.item() == 0.0


def test_msb_gradient_only_flows_through_mined_pairs():
    S = torch.tensor(S4, dtype=torch.float64, requires_grad=True)
    MultiSpringBalanceLoss(OPT)(S, torch.tensor([0., 1., 0., 1.])).backward()
    used = {(2, 0), (2, 2), (2, 3), (0, 2), (1, 2)}  # row 2: cols 0,2 (P'), 3 (N'); col 2: rows 0,2 (P'), 1 (N')
    for i in range(4):
        for j in range(4):
            assert (S.grad[i, j] != 0).item() == ((i, j) in used), (i, j)


TIES = np.array([[0.5, 0.5, 0.2, 0.5], [0.1, 0.9, 0.9, 0.3], [0.4, 0.4, 0.4, 0.4], [0.0, 0.2, 0.2, 0.7]])
TIE_LABELS = np.array([0., 1., 0., 1.])


def test_map_hand_computed_with_ties():
    """numpy's ascending sort keeps tied indices in order on these tiny rows, and upstream reverses it,
    so among ties the highest index ranks first:
      row 0 -> [3,1,0,2]: relevant at ranks 3,4 -> AP (1/3 + 2/4)/2
      row 1 -> [2,1,3,0]: ranks 2,3 -> (1/2 + 2/3)/2
      row 2 -> [3,2,1,0]: ranks 2,4 -> (1/2 + 2/4)/2
      row 3 -> [3,2,1,0]: ranks 1,3 -> (1 + 2/3)/2"""
    aps = [(1 / 3 + 2 / 4) / 2, (1 / 2 + 2 / 3) / 2, (1 / 2 + 2 / 4) / 2, (1 + 2 / 3) / 2]
    assert i2t_mAP(TIES, TIE_LABELS) == pytest.approx(np.mean(aps), abs=1e-15)
    # columns: [0,2,1,3] -> 1 ; [1,0,2,3] -> .75 ; [1,2,3,0] -> .5 ; [3,0,2,1] -> .75
    assert t2i_mAP(TIES, TIE_LABELS) == pytest.approx(0.75, abs=1e-15)
    assert i2t_mAP(TIES, TIE_LABELS) == EXPECTED['map_ties']['i2t']
    assert t2i_mAP(TIES, TIE_LABELS) == EXPECTED['map_ties']['t2i']


def test_map_perfect_and_worst_ranking():
    labels = np.array([0, 0, 1, 1, 2])
    perfect = (labels[:, None] == labels[None, :]).astype(float)
    assert i2t_mAP(perfect + np.eye(5) * 0.1, labels) == pytest.approx(1.0)
    worst = -perfect
    # each query of class 0 finds its 2 relevant items at ranks 4,5 -> (1/4 + 2/5)/2; class 2 at rank 5 -> 1/5
    expected = np.mean([(1 / 4 + 2 / 5) / 2] * 4 + [1 / 5])
    assert t2i_mAP(worst, labels) == pytest.approx(expected)


def test_fuse_weights_and_report(tmp_path):
    from m2hse import fuse
    up = os.path.join(HERE, 'data', 'upstream')
    g, l = os.path.join(up, 'upstream_global_sims.npy'), os.path.join(up, 'upstream_local_sims.npy')
    labels = os.path.join(up, 'global', 'corel5k_precomp', 'test_labels.npy')
    only_global = fuse.main(['--global_scores', g, '--local_scores', l, '--labels', labels, '--weight', '1'])
    assert only_global['i2t_mAP'] == pytest.approx(EXPECTED['global']['i2t_mAP'], abs=1e-12)
    only_local = fuse.main(['--global_scores', g, '--local_scores', l, '--labels', labels, '--weight', '0'])
    assert only_local['t2i_mAP'] == pytest.approx(EXPECTED['local']['t2i_mAP'], abs=1e-12)
    half = fuse.main(['--global_scores', g, '--local_scores', l, '--labels', labels,
                      '--out_json', str(tmp_path / 'f.json'), '--out_scores', str(tmp_path / 'f.npy')])
    fused = np.load(tmp_path / 'f.npy')
    np.testing.assert_allclose(fused, 0.5 * np.load(g) + 0.5 * np.load(l))
    payload = json.load(open(tmp_path / 'f.json'))
    assert payload['mAP_sum'] == pytest.approx(half['mAP_sum']) and payload['n_images'] == 12
    assert 0 < payload['random_mAP_sum'] < 1
    np.save(tmp_path / 'bad.npy', np.zeros((3, 3)))
    with pytest.raises(InputError, match='shape mismatch'):
        fuse.main(['--global_scores', g, '--local_scores', str(tmp_path / 'bad.npy'), '--labels', labels])


def test_total_loss_weights_alpha_for_global_beta_for_local():
    from m2hse.train import loss_weights
    opt = argparse.Namespace(alpha_1=.8, alpha_2=.7, beta_1=.4, beta_2=.3)
    assert loss_weights('global', opt) == (.8, .7) and loss_weights('local', opt) == (.4, .3)
