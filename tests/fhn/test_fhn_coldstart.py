"""ColdStart (fork): user codes from similar big-dataset users, big codes from a configurable file."""
import os
import pickle

import numpy as np
import pytest
import torch

from fhn.coldstart import load_cache
from fhn.evaluation import rank_scores
from fhn.model import get_net
from fhn.param import FashionParam


@pytest.fixture(scope="module")
def cs_root(tmp_path_factory):
    from fhn.make_demo_data import make_data

    out = tmp_path_factory.mktemp("fhn_cs")
    make_data(str(out), users=2, items=4, posi=(2, 1, 2), nega_ratio=(1, 1, 1), seed=3)
    return os.path.join(str(out), "data", "polyvore")


def _cfg(root, tmp_path, data_file):
    big = dict(phase="train", batch_size=8, data_root=root, data_set="tuples_630", data_mode="TuplePair",
               shuffle=False, num_workers=0, use_semantic=True, use_visual=True, image_size=224)
    return FashionParam(
        data_param=dict(big, phase="test", data_mode="TripleWise", nega_mode="RandomFix"),
        net_param=dict(name="ColdStart", num_users=2, dim=8, hash_types=3, use_semantic=True,
                       use_visual=True, big_data_param=big, small_data_param=dict(big),
                       data_file=data_file, gpus=[], pretrained=False, big_feature_file=str(tmp_path / "big.npz")),
        gpus=[],
    )


@pytest.fixture(scope="module")
def cold(cs_root, tmp_path_factory):
    """A ColdStart net built once: its config, the cache it wrote, the big-set codes."""
    tmp_path = tmp_path_factory.mktemp("fhn_cs_net")
    big_codes = np.sign(np.random.RandomState(0).randn(2, 8)).astype(np.float32)
    with open(tmp_path / "big.npz", "wb") as f:
        pickle.dump(dict(user_codes=big_codes), f)  # upstream's extract-features format
    cfg = _cfg(cs_root, tmp_path, str(tmp_path / "CS.npz"))
    torch.manual_seed(0)
    np.random.seed(0)  # the online negatives are drawn with numpy's global generator
    net = get_net(cfg, "cpu").eval()
    data = load_cache(str(tmp_path / "CS.npz") + "_new")  # a plain .npz, no pickle
    return dict(cfg=cfg, net=net, data=data, big_codes=big_codes, tmp=tmp_path, root=cs_root)


def test_coldstart_codes_follow_the_formula(cold):
    net, data, big_codes = cold["net"], cold["data"], cold["big_codes"]
    assert set(data) >= {"big_outfits_posi_feat", "big_outfits_nega_feat", "small_outfits_posi_feat",
                         "small_outfits_nega_feat", "big_user_codes", "outfits_raw"}
    lam_i = net.core[1].weight.detach().numpy()
    lam_u = net.core[0].weight.detach().numpy()
    D = 8

    def uu(big, small):  # upstream's loops (fashionnet.py:654-666)
        out = []
        for s in small:
            acc = np.zeros(D)
            for b, code in zip(big, big_codes):
                acc += (np.asarray(s) * lam_i * np.asarray(b)).sum() / D * code
            out.append(acc / len(big))
        return np.array(out)

    bp, bn = data["big_outfits_posi_feat"], data["big_outfits_nega_feat"]
    sp, sn = data["small_outfits_posi_feat"], data["small_outfits_nega_feat"]
    code_user = (uu(bp, sp) - 0.5 * (uu(bp, sn) + uu(bn, sn))) / 2.0
    code_item = (np.array([np.asarray(x) for x in sp]) * lam_u - np.array([np.asarray(x) for x in sn]) * lam_u) / 2
    pre_sign = 0.5 * code_user + 0.5 * code_item
    # A drawn negative can equal its positive, making a pre-sign value exactly 0 in exact arithmetic:
    # its sign is then rounding noise (0 in float32, +-1 in float64), so compare the others.
    decided = np.abs(pre_sign) > 1e-6
    assert decided.mean() > 0.5
    np.testing.assert_array_equal(net.user_codes.numpy()[decided], np.sign(pre_sign)[decided])


def test_coldstart_cached_scores_equal_per_outfit(cold):
    cached, _ = rank_scores(cold["cfg"], cold["net"], "cpu")
    ref, _ = rank_scores(cold["cfg"], cold["net"], "cpu", per_outfit=True)
    assert cached[0][1] == ref[0][1] and cached[1][1] == ref[1][1]


def test_coldstart_second_net_reads_the_cache(cold):
    cfg2 = _cfg(cold["root"], cold["tmp"], str(cold["tmp"] / "CS.npz") + "_new")
    os.rename(cold["tmp"] / "big.npz", cold["tmp"] / "big_moved.npz")  # not needed: the cache holds the big codes
    try:
        torch.manual_seed(1)
        net2 = get_net(cfg2, "cpu")
    finally:
        os.rename(cold["tmp"] / "big_moved.npz", cold["tmp"] / "big.npz")
    np.testing.assert_array_equal(net2.cold_start_codes(cold["data"]).numpy(), cold["net"].user_codes.numpy())
