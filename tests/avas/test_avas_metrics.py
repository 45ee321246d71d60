"""recall@K and pairwise accuracy on hand-made cases (incl. ties), the ROC-AUC of s1 - s2, the
RankNet loss, and the ranking head's forward on a hand-checked tiny input."""
import math

import numpy as np
import pytest
import torch

from avas.attention import AttentionSequencePoolingLayer, Dice
from avas.evaluation import image_id, pairwise_accuracy, recall_at_k
from avas.loss import pair_softmax, rank_sigmoid_loss
from sklearn.metrics import roc_auc_score


def test_recall_at_k_hand_made_with_ties():
    rows = [('1', 'a', 'd/1_1.jpg', 0.2), ('1', 'a', 'd/2_1.jpg', 0.9), ('1', 'a', 'd/3_1.jpg', 0.5),
            ('2', 'b', 'd/1_1.jpg', 0.7), ('2', 'b', 'd/3_1.jpg', 0.7), ('2', 'b', 'd/2_1.jpg', 0.7),
            ('3', 'c', 'd/1_1.jpg', 0.1)]
    # POI 1: order 2,3,1 -> hit at rank 3. POI 2: all tie -> file order 1,3,2 -> hit at rank 3.
    # POI 3: its image is absent -> never a hit.
    assert recall_at_k(rows, 1) == 0.0
    assert recall_at_k(rows, 2) == 0.0
    assert recall_at_k(rows, 3) == pytest.approx(2 / 3)
    tie_first = [('2', 'b', 'd/2_9.jpg', 0.7), ('2', 'b', 'd/3_1.jpg', 0.7)]
    assert recall_at_k(tie_first, 1) == 1.0  # stable sort: ties keep file order
    assert image_id('/x/y/10060_3.jpg') == '10060' and image_id('a_b_c.png') == 'a'


def test_pairwise_accuracy_ties_predict_zero_and_roc_auc():
    labels = [1, 0, 1, 0, 0]
    s1 = [0.9, 0.1, 0.3, 0.5, 0.4]
    s2 = [0.1, 0.2, 0.3, 0.4, 0.4]  # pair 3 and 5 tie -> pred 0
    # preds 1,0,0,1,0 vs labels 1,0,1,0,0 -> 3/5
    assert pairwise_accuracy(labels, s1, s2) == pytest.approx(0.6)
    d = np.array(s1) - np.array(s2)  # 0.8, -0.1, 0, 0.1, 0
    # positives {0.8, 0}, negatives {-0.1, 0.1, 0}: wins 3 + (1 + 0.5 tie + 0)... = (3 + 1.5) / 6
    assert roc_auc_score(labels, d) == pytest.approx(4.5 / 6)


def test_rank_sigmoid_loss_and_softmax():
    s1, s2 = torch.tensor([[2.0], [0.0]]), torch.tensor([[0.0], [1.0]])
    label = torch.tensor([[1.0], [1.0]])
    expect = (-math.log(1 / (1 + math.exp(-2))) - math.log(1 / (1 + math.exp(1)))) / 2
    assert rank_sigmoid_loss(s1, s2, label).item() == pytest.approx(expect, rel=1e-6)
    a, b = pair_softmax(s1, s2)
    assert a[0].item() == pytest.approx(math.exp(2) / (math.exp(2) + 1), rel=1e-6)
    assert (a + b).flatten().tolist() == pytest.approx([1.0, 1.0])


@torch.no_grad()
def test_dice_is_sigmoid_bn_times_x():
    dice = Dice(3, dim=3).eval()
    dice.bn.running_mean.copy_(torch.tensor([0.5, 0.0, -1.0]))
    dice.bn.running_var.copy_(torch.tensor([4.0, 1.0, 0.25]))
    x = torch.tensor([[[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]]])  # (B=1, T=2, C=3)
    norm = (x - dice.bn.running_mean) / torch.sqrt(dice.bn.running_var + 1e-9)
    torch.testing.assert_close(dice(x), torch.sigmoid(norm) * x)


@torch.no_grad()
def test_attention_pooling_raw_masked_weights_by_hand():
    """E = 1, T = 3: the weights are the raw MLP outputs times the length mask (no softmax)."""
    layer = AttentionSequencePoolingLayer(embedding_dim=1).eval()
    fc1, fc2 = layer.local_att.fc1.fc, layer.local_att.fc2.fc
    q = torch.tensor([[[2.0]]])
    keys = torch.tensor([[[1.0], [3.0], [5.0]]])
    out = layer(q, keys, torch.tensor([[2.0]]))
    weights = []
    for k in (1.0, 3.0, 5.0):
        a = torch.tensor([2.0, k, 2.0 - k, 2.0 * k])
        h = fc1[0].weight @ a + fc1[0].bias
        bn = fc1[1].bn
        h = torch.sigmoid((h - bn.running_mean) / torch.sqrt(bn.running_var + 1e-9) * bn.weight + bn.bias) * h
        h = fc1[3].weight @ h + fc1[3].bias
        weights.append((fc2[0].weight @ h + fc2[0].bias).item())
    expect = weights[0] * 1.0 + weights[1] * 3.0  # third POI masked out, weights not normalised
    assert out.shape == (1, 1, 1)
    assert out.item() == pytest.approx(expect, rel=1e-5, abs=1e-6)
    assert layer(q, keys, torch.tensor([[0.0]])).item() == 0.0  # no POI -> zero vector


def test_recall_from_matrix_equals_recall_of_written_rows(tmp_path):
    from avas.evaluation import recall_from_matrix
    from avas.recall import write_rows
    from avas.data import read_recall_results
    rng = np.random.default_rng(0)
    pois = [('1', 'a'), ('2', 'b'), ('3', 'c'), ('1', 'a2')]  # a poi_id with two names (grouped by id)
    images = ['d/%d_%d.jpg' % (p, r) for p in (1, 2, 3, 4) for r in (1, 2)]
    scores = np.round(rng.normal(size=(4, 8)), 1).astype(np.float32)  # rounding makes ties
    scores[1, :] = 0.5  # all ties: listing order decides
    write_rows(str(tmp_path / 'r.csv'), pois, images, scores)
    rows = read_recall_results(str(tmp_path / 'r.csv'))
    assert rows[0][3] == float(str(scores[0, 0]))
    for k in (1, 2, 3, 5):
        assert recall_from_matrix(pois, images, scores, k) == recall_at_k(rows, k)


class FixedImageTower(torch.nn.Module):
    """Stands in for the ALIGN: encode_image returns the given embeddings (test double of ours)."""

    def __init__(self, vectors):
        super().__init__()
        self.vectors = vectors

    def encode_image(self, image, norm=True):
        return self.vectors[:image.shape[0]]


@torch.no_grad()
def test_ranking_forward_by_hand():
    """Multimodal_Model.forward (spec §5 steps 1-4) recomputed in numpy from its own weights."""
    from avas.model_local import Multimodal_Model
    torch.manual_seed(0)
    v = torch.nn.functional.normalize(torch.randn(2, 512), dim=1)
    model = Multimodal_Model(FixedImageTower(v), use_norm=1).eval()
    dice_bn = model.attention_layer.local_att.fc1.fc[1].bn
    dice_bn.running_mean.uniform_(-0.1, 0.1)
    dice_bn.running_var.uniform_(0.5, 1.5)
    pois_feature = torch.randn(2, 512)
    m, t = torch.randn(2, 5, 512), torch.randn(2, 5, 512)
    poi_len = torch.tensor([[2.0], [0.0]])
    got = model(torch.zeros(2, 3, 8, 8), pois_feature, m, t, poi_len).numpy()

    W = {k: p.double().numpy() for k, p in model.state_dict().items() if not k.startswith('align_model')}
    lin = lambda x, name: x @ W[name + '.weight'].T + W[name + '.bias']
    sig = lambda x: 1 / (1 + np.exp(-x))
    for b in range(2):
        vb = v[b].double().numpy()
        u = lin(np.concatenate([m[b].double().numpy(), t[b].double().numpy()], -1), 'linear1')  # (5, 512)
        q = np.repeat(vb[None], 5, 0)
        h = lin(np.concatenate([q, u, q - u, q * u], -1), 'attention_layer.local_att.fc1.fc.0')  # (5, 64)
        pre = 'attention_layer.local_att.fc1.fc.1.bn.'
        bn = (h - W[pre + 'running_mean']) / np.sqrt(W[pre + 'running_var'] + 1e-9) * W[pre + 'weight'] + W[pre + 'bias']
        h = sig(bn) * h  # Dice with alpha = 0
        h = lin(h, 'attention_layer.local_att.fc1.fc.3')
        a = lin(h, 'attention_layer.local_att.fc2.fc.0')[:, 0]  # raw weights, no softmax
        a = a * (np.arange(5) < poi_len[b].item())
        att = a @ u
        x = np.concatenate([vb, pois_feature[b].double().numpy(), att])
        x = np.maximum(lin(x, 'linear3'), 0)
        x = np.maximum(lin(x, 'linear4'), 0)
        assert got[b, 0] == pytest.approx(lin(x, 'linear2')[0], rel=1e-5, abs=1e-6)
