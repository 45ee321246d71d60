"""Cached item codes (each distinct item encoded once) == upstream's per-outfit evaluation."""
import numpy as np
import pytest
import torch

from fhn.evaluation import rank_metrics, rank_scores
from fhn.scoring import CNNCounter
from fhn.codecache import CodeCache
from fhn.model import FashionNetDeploy
from fhn.param import FashionParam, NetParam


def _net(num_users, visual, semantic, seed=0, **kw):
    torch.manual_seed(seed)
    net = FashionNetDeploy(NetParam(name="FashionNetDeploy", num_users=num_users, dim=8,
                                    hash_types=3, use_visual=visual, use_semantic=semantic, **kw),
                           pretrained=False)
    net.init_weights()
    # larger weights than init_weights so that codes are not all tiny
    for m in net.modules():
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.normal_(m.weight, std=0.05)
    net.set_scale(2.0)
    return net.eval()


def _both(net, cfg):
    counter = CNNCounter(net)
    cached, _ = rank_scores(cfg, net, "cpu", per_outfit=False)
    n_cached = counter.count
    counter.count = 0
    ref, _ = rank_scores(cfg, net, "cpu", per_outfit=True)
    n_ref = counter.count
    counter.close()
    return cached, ref, n_cached, n_ref


def _assert_equal_scores(cached, ref):
    for (c_rel, c_bin), (r_rel, r_bin) in zip(cached, ref):
        for cu, ru in zip(c_rel, r_rel):
            np.testing.assert_allclose(cu, ru, rtol=1e-5, atol=1e-6)
        assert c_bin == r_bin  # binary scores are exactly equal


def test_cached_equals_per_outfit_visual_semantic(demo_root, make_data_cfg):
    net = _net(4, True, True)
    cfg = FashionParam(data_param=make_data_cfg(demo_root, phase="test", nega_mode="RandomFix",
                                                batch_size=16, use_visual=True, use_semantic=True))
    cached, ref, n_cached, n_ref = _both(net, cfg)
    _assert_equal_scores(cached, ref)
    # 3 categories x 8 items at most, vs 3 images per outfit (12 positives + 36 negatives)
    assert n_cached <= 24 and n_ref == 3 * (12 + 36)
    a = rank_metrics(cached[0][0], cached[0][1], cached[1][0], cached[1][1])
    b = rank_metrics(ref[0][0], ref[0][1], ref[1][0], ref[1][1])
    assert a["mean_auc_binary"] == b["mean_auc_binary"]
    assert a["mean_auc"] == pytest.approx(b["mean_auc"], abs=1e-12)


def test_cached_equals_per_outfit_variable_length(var_root, make_data_cfg):
    net = _net(32, False, True, seed=1)
    cfg = FashionParam(data_param=make_data_cfg(var_root, data_set="tuples_32", phase="test",
                                                nega_mode="RandomFix", batch_size=5))
    cached, ref, _, _ = _both(net, cfg)
    _assert_equal_scores(cached, ref)
    assert sum(len(x) for x in cached[0][0]) == 9


def test_fitb_cached_equals_per_outfit(demo_root, make_data_cfg, monkeypatch):
    from fhn import evaluation as E

    net = _net(4, False, True, seed=2)
    monkeypatch.setattr(E, "get_net", lambda config, device="cpu", data_param=None: net)
    fitb_cfg = FashionParam(fitb_data_param=dict(
        data_root=make_data_cfg(demo_root)["data_root"], num_workers=0, use_semantic=True,
        use_visual=False), net_param=dict(num_users=4))
    assert E.fitb(fitb_cfg, "cpu") == E.fitb(fitb_cfg, "cpu", per_outfit=True)


def test_accuracy_cached_equals_per_outfit(demo_root, make_data_cfg, monkeypatch):
    from fhn import evaluation as E
    from fhn.model import FashionNet

    net = _net(4, False, True, seed=2)
    pair_net = FashionNet(net.param, pretrained=False)
    pair_net.load_state_dict(net.state_dict())
    monkeypatch.setattr(E, "get_net", lambda config, device="cpu", data_param=None: pair_net.eval())
    acc_cfg = FashionParam(data_param=make_data_cfg(demo_root, phase="test", nega_mode="RandomFix",
                                                    batch_size=7), net_param=dict(num_users=4))
    a = E.evaluate_accuracy(acc_cfg, "cpu")
    b = E.evaluate_accuracy(acc_cfg, "cpu", per_outfit=True)
    assert a["binary"] == b["binary"] and a["accuracy"] == pytest.approx(b["accuracy"], abs=1e-12)


def test_fitb_tie_with_ground_truth_counts_as_correct(demo_root, make_data_cfg, monkeypatch):
    """Upstream takes torch.argmax of the binary scores: the first maximum wins (run.py:249)."""
    from fhn import evaluation as E

    net = _net(4, False, True, seed=3)
    monkeypatch.setattr(E, "get_net", lambda config, device="cpu", data_param=None: net)
    n_q = [0]

    def fake_score(self, uidx, tuples, bar=None):
        n = len(tuples) // 4
        n_q[0] = n
        b = np.tile([1.0, 1.0, 0.0, -1.0], n)  # truth ties with candidate 1
        b[4:8] = [0.0, 2.0, 2.0, 0.0]  # question 1: a wrong candidate wins
        return b, b

    monkeypatch.setattr(CodeCache, "score", fake_score)
    cfg = FashionParam(fitb_data_param=dict(
        data_root=make_data_cfg(demo_root)["data_root"], num_workers=0, use_semantic=True,
        use_visual=False), net_param=dict(num_users=4))
    got = E.fitb(cfg, "cpu")["fitb_acc"]
    assert got == pytest.approx((n_q[0] - 1) / n_q[0])
