"""The AVAS MKG TransE loss as intended (quirk 26): per-row pick of the text (type 1) or image
(type 2) tail, L1 distance of L2-normalised h + r - t, hinge max(0, d_pos - d_neg + 1); the caller's
tail_type is not modified; the in-batch variant used by train_align.py; the CLIP loss formula."""
import pytest
import torch
import torch.nn.functional as F

from avas.align_model import ALIGN, HAS_IMAGE, HAS_TITLE
from avas.tokenization import tokenize
from tests.avas.avas_testlib import make_small_bert


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    return ALIGN(bert_path=make_small_bert(str(tmp_path_factory.mktemp('bert'))), with_mkg=True).eval()


def _l1(h, r, t):
    return (F.normalize(h, dim=1) + F.normalize(r, dim=1) - F.normalize(t, dim=1)).abs().sum(1)


@torch.no_grad()
def test_explicit_triples_pick_text_or_image_tail(model):
    tok = lambda texts: tokenize(model.tokenizer, texts)
    heads, tails, negs = ['普陀山', '漠河'], ['南海观音', '北极村'], ['上海', '三亚']
    imgs, neg_imgs = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    relation = torch.tensor([HAS_TITLE, HAS_IMAGE])
    tail_type = torch.tensor([[1], [2]])  # row 0: text tail, row 1: image tail
    d_pos, d_neg = model.mkg_distances(tok(heads), relation, tok(tails), imgs, tail_type, tok(negs), neg_imgs)
    assert tail_type.tolist() == [[1], [2]]  # AVAS decremented the caller's tensor in place
    h = model.encode_text(tok(heads))
    r = model.linear_relation(model.relations_emb(relation))
    pos = torch.stack([model.encode_text(tok(tails))[0], model.encode_image(imgs)[1]])
    neg = torch.stack([model.encode_text(tok(negs))[0], model.encode_image(neg_imgs)[1]])
    torch.testing.assert_close(d_pos, _l1(h, r, pos))
    torch.testing.assert_close(d_neg, _l1(h, r, neg))
    text = tok(['普陀山', '漠河'])
    mkg = dict(head_text=tok(heads), relation=relation, tail_text=tok(tails), tail_img=imgs, tail_type=tail_type,
               neg_tail_text=tok(negs), neg_tail_img=neg_imgs)
    loss_clip, mkg_loss, dp, dn = model(imgs, text, mkg=mkg)
    torch.testing.assert_close(mkg_loss, torch.clamp(d_pos - d_neg + 1, min=0))
    ref = torch.nn.MarginRankingLoss(margin=1, reduction='none')(d_pos, d_neg, torch.tensor([-1.0]))
    torch.testing.assert_close(mkg_loss, ref)


@torch.no_grad()
def test_in_batch_triples_and_clip_loss(model):
    imgs = torch.randn(3, 3, 32, 32)
    text = tokenize(model.tokenizer, ['普陀山', '漠河', '北海海底世界'])
    loss_clip, mkg_loss, d_pos, d_neg = model(imgs, text, mkg='in_batch')
    i, t = model.encode_image(imgs), model.encode_text(text)
    r = model.linear_relation(model.relations_emb(torch.full((3,), HAS_IMAGE)))
    torch.testing.assert_close(d_pos, _l1(t, r, i))
    torch.testing.assert_close(d_neg, _l1(t, r, i.roll(1, 0)))  # negative tail: the previous row's image
    sims = i @ t.t() * model.logit_scale  # multiplied, not exp'd (logit_scale = 1 at init)
    expect = (F.cross_entropy(sims, torch.arange(3)) + F.cross_entropy(sims.t(), torch.arange(3))) / 2
    assert loss_clip.item() == pytest.approx(expect.item(), rel=1e-6)
    assert model(imgs, text).item() == pytest.approx(loss_clip.item(), rel=1e-6)
