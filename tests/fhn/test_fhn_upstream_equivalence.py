"""Scores, VSE loss, metrics and whole-net forwards equal upstream's on saved references
(numbers produced by running the upstream code on the same tiny inputs/weights)."""
import json
import os

import numpy as np
import pytest
import torch

from fhn import metrics
from fhn.model import CoreMat, FashionNet, FashionNetDeploy, LearnableScale, contrastive_loss, match_scores
from fhn.param import NetParam

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
REF = json.load(open(os.path.join(DATA, "upstream_reference.json")))
FWD = json.load(open(os.path.join(DATA, "upstream_forward.json")))


def _core(case):
    ht, D = case["hash_types"], len(case["w0"][0])
    if ht == 3:
        c0, c1 = CoreMat(D), CoreMat(D)
        c0.weight.data = torch.tensor(case["w0"])
        c1.weight.data = torch.tensor(case["w1"])
        return torch.nn.ModuleList([c0, c1])
    if ht in (1, 2):
        c = CoreMat(D)
        c.weight.data = torch.tensor(case["w0"])
        return c
    if ht == 0:
        return LearnableScale(case["ws"])
    return None


@pytest.mark.parametrize("idx", range(len(REF["scores"])))
def test_match_scores_equal_upstream(idx):
    case = REF["scores"][idx]
    items = [torch.tensor(x) for x in case["items"]]
    got = match_scores(_core(case), case["hash_types"], torch.tensor(case["u"]), items,
                       case["zero_iterm"], case["zero_uterm"])
    np.testing.assert_allclose(got.detach().view(-1).numpy(), case["score"], rtol=1e-6, atol=1e-7)


def test_match_scores_hand_computed_hash_types():
    """Score formula on 2-bit codes computed by hand for every hash type and zero flag."""
    u = torch.tensor([[1.0, -1.0]])
    items = [torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, -1.0]]), torch.tensor([[-1.0, -1.0]])]
    lam_u, lam_i = torch.tensor([[2.0, 1.0]]), torch.tensor([[1.0, 3.0]])
    # x = items*u: [1,-1],[1,1],[-1,1]; y pairs (0,1),(0,2),(1,2): [1,-1],[-1,-1],[-1,1]
    mean_x, mean_y = 2 / 6, -2 / 6
    wx = (2 - 1 + 2 + 1 - 2 + 1) / 6  # lam_u * x
    wy = (1 - 3 - 1 - 3 - 1 + 3) / 6  # lam_i * y
    c3 = torch.nn.ModuleList([CoreMat(2), CoreMat(2)])
    c3[0].weight.data, c3[1].weight.data = lam_u, lam_i
    c1 = CoreMat(2)
    c1.weight.data = lam_u
    s0 = LearnableScale(3.0)
    cases = [
        (c3, 3, False, False, 10 * (wx + wy)),
        (c1, 1, False, False, 10 * (wx + mean_y)),
        (c1, 2, False, False, 10 * (mean_x + wx)),  # quirk 5: user term weighted twice
        (s0, 0, False, False, 10 * (3 * mean_x + mean_y)),
        (c3, 3, True, False, 20 * wx),
        (c3, 3, False, True, 20 * wy),
    ]
    for core, ht, zi, zu, want in cases:
        got = match_scores(core, ht, u, items, zi, zu).detach().item()
        assert got == pytest.approx(want, abs=1e-6), (ht, zi, zu)


def test_variable_length_drops_top_top_pair():
    """K=4: pairs (0,2),(0,3),(1,2),(1,3),(2,3) -- the (0,1) top-top pair is dropped."""
    from fhn.model import outfit_pairs

    a, b = outfit_pairs(4)
    assert list(zip(a.tolist(), b.tolist())) == [(0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]


def test_contrastive_loss_equal_upstream():
    v = REF["vse"]
    got = contrastive_loss(v["margin"], torch.tensor(v["im"]), torch.tensor(v["s"]))
    np.testing.assert_allclose(got.numpy(), v["loss"], rtol=1e-6, atol=1e-7)


def test_ndcg_auc_equal_upstream_with_ties():
    m = REF["metrics"]
    mean_ndcg, avg_ndcg = metrics.NDCG(m["posi"], m["nega"])
    aucs, mean_auc = metrics.ROC(m["posi"], m["nega"])
    np.testing.assert_allclose(mean_ndcg, m["mean_ndcg"], rtol=1e-12)
    np.testing.assert_allclose(avg_ndcg, m["avg_ndcg"], rtol=1e-12)
    np.testing.assert_allclose(aucs, m["aucs"], rtol=1e-12)
    assert mean_auc == pytest.approx(m["mean_auc"], rel=1e-12)
    np.testing.assert_allclose(metrics.NDCG(m["posi"], m["nega"], wtype="log")[0], m["ndcg_log"])


def test_ndcg_hand_computed():
    """One user, scores [3, 1 | 2]: order labels 1,0,1; discounts 1,1,log2(3)."""
    mean_ndcg, avg_ndcg = metrics.NDCG([[3.0, 1.0]], [[2.0]])
    dcg = np.cumsum([1 / 1, 0 / 1, 1 / np.log2(3)])
    idcg = np.cumsum([1 / 1, 1 / 1, 0 / np.log2(3)])
    np.testing.assert_allclose(avg_ndcg, dcg / idcg)
    assert mean_ndcg[0] == pytest.approx(np.mean(dcg / idcg))
    # AUC with a tie counts 1/2: posi [1, 0], nega [1] -> (0.5 + 0) / 2
    assert metrics.ROC([[1.0, 0.0]], [[1.0]])[1] == pytest.approx(0.25)
    # avg_ndcg at cut-off k averages only users with >= k outfits
    _, avg = metrics.NDCG([[1.0], [1.0]], [[0.0], [0.0, 2.0]])
    assert avg[2] == pytest.approx(metrics.ndcg_score(np.array([1.0, 0, 2]), np.array([1, 0, 0]))[2])


def seeded_state(net, seed):
    """Same weights as the reference generator: sorted keys, one generator."""
    g = torch.Generator().manual_seed(seed)
    sd = net.state_dict()
    for k in sorted(sd):
        if k.endswith("scale"):
            sd[k] = torch.full_like(sd[k], 1.7)
        elif k.startswith("core"):
            sd[k] = 0.5 + torch.rand(sd[k].shape, generator=g)
        else:
            sd[k] = torch.randn(sd[k].shape, generator=g) * 0.05
    return sd


CASES = {
    "sem_630_ht3": (dict(num_users=5, dim=8, hash_types=3, use_semantic=True, use_visual=False), 3, None),
    "sem_32_ht1": (dict(num_users=32, dim=8, hash_types=1, use_semantic=True, use_visual=False), 4, None),
    "vse_alex_ht3": (dict(num_users=5, dim=8, hash_types=3, use_semantic=True, use_visual=True), 3, 224),
    "res18_ht0": (dict(num_users=5, dim=8, hash_types=0, use_semantic=False, use_visual=True,
                       backbone="resnet18"), 3, 224),
}


@pytest.mark.parametrize("name", list(CASES))
def test_whole_net_forward_equal_upstream(name):
    cfg, K, img = CASES[name]
    ref = FWD[name]
    dep = FashionNetDeploy(NetParam(**dict(cfg, name="FashionNetDeploy")), pretrained=False).eval()
    assert [[k, list(v.shape)] for k, v in dep.state_dict().items()] == ref["keys"]
    sd = seeded_state(dep, 1)
    dep.load_state_dict(sd)
    g = torch.Generator().manual_seed(2)
    n = 3
    uidx = torch.tensor([0, 4, 2]) if K == 3 else torch.tensor([0, 31, 7])

    def items():
        sem = [torch.randn(n, 2400, generator=g) for _ in range(K)]
        ims = [torch.randn(n, 3, img, img, generator=g) for _ in range(K)] if img else None
        if cfg["use_semantic"] and cfg["use_visual"]:
            return ims, sem
        return ims if cfg["use_visual"] else sem

    posi, nega = items(), items()
    with torch.no_grad():
        s, b = dep(posi, uidx)
        tr = FashionNet(NetParam(**dict(cfg, name="FashionNet")), pretrained=False).eval()
        tr.load_state_dict(sd)
        losses, acc = tr(posi, nega, uidx)
    np.testing.assert_allclose(s.view(-1).numpy(), ref["score"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b.view(-1).numpy(), ref["binary"], rtol=1e-6, atol=1e-6)
    for k, v in ref["losses"].items():
        np.testing.assert_allclose(losses[k].view(-1).numpy(), v, rtol=1e-4, atol=1e-5)
    for k, v in ref["acc"].items():
        assert acc[k].view(-1).tolist() == v
