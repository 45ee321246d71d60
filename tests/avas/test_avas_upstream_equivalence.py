"""The port reproduces numbers produced by running upstream's own AIS code (align_model.py,
model_local.py, attention/fc/dice.py, loss.py, datasets_attention_local.py formulas) on real
photos and real val-CSV lines, with deterministic weights (avas_testlib.fill_deterministic)."""
import json
import os

import numpy as np
import pytest
import torch

from avas.align_model import ALIGN
from avas.data import normalize_image, open_rgb, parse_ranking_line, pair_label, poi_inputs, poi_text
from avas.loss import rank_sigmoid_loss
from avas.model_local import Multimodal_Model
from avas.poi_tables import load_table
from avas.tokenization import tokenize
from tests.avas.avas_testlib import (PHOTOS, PIC_NUM, TEST_DATA, VAL_CSV, fill_deterministic,
                                     make_small_bert, set_bn_stats_from)

REF = json.load(open(os.path.join(TEST_DATA, 'upstream_reference.json'), encoding='utf-8'))


@pytest.fixture(scope='module')
def port(tmp_path_factory):
    torch.set_num_threads(1)
    bert = make_small_bert(str(tmp_path_factory.mktemp('bert')))
    align = ALIGN(bert_path=bert)
    model = Multimodal_Model(align, use_norm=1)
    fill_deterministic(model, seed=REF['weights_seed'])
    model.eval()
    imgs = torch.from_numpy(np.stack([normalize_image(open_rgb(os.path.join(PHOTOS, n))) for n in REF['photos']]))
    set_bn_stats_from(align.image_model, imgs)
    return model, imgs


def _pairs():
    lines = [l.strip() for l in open(VAL_CSV, encoding='utf-8') if len(l.strip()) >= 2][:2]
    records = [parse_ranking_line(l, i + 1, VAL_CSV) for i, l in enumerate(lines)]
    pic = load_table(PIC_NUM, 3)  # upstream's pickled dict, through the allow-list
    g = torch.Generator().manual_seed(REF['poi_vector_seed'])
    names = sorted({n for r in records for n in r.poi_names.split(',')})
    img_vecs = {n: torch.randn(512, generator=g).numpy().astype(np.float32) for n in names}
    name_vecs = {n: torch.randn(512, generator=g).numpy().astype(np.float32) for n in names}
    inputs = [poi_inputs(r.poi_names, pic, img_vecs, name_vecs) for r in records]
    return records, inputs


@torch.no_grad()
def test_image_embeddings_equal_upstream(port):
    model, imgs = port
    emb = model.align_model.encode_image(imgs)
    np.testing.assert_allclose(emb.numpy(), np.array(REF['img_emb']), atol=2e-5)
    raw = model.align_model.encode_image(imgs, norm=False)[:, :8]
    np.testing.assert_allclose(raw.numpy(), np.array(REF['img_emb_raw_first8']), atol=1e-4)  # float noise of a deep net
    assert REF['img_emb_std_over_images'] > 1e-3  # the reference images are not collapsed


@torch.no_grad()
def test_pair_scores_and_loss_equal_upstream(port):
    model, imgs = port
    records, inputs = _pairs()
    texts = [poi_text(r) for r in records]
    tok = tokenize(model.align_model.tokenizer, texts[:1])
    assert tok['input_ids'][0].tolist() == REF['poi_text_token_ids'][0]
    feats = torch.cat([model.align_model.encode_text(tokenize(model.align_model.tokenizer, [t])) for t in texts])
    np.testing.assert_allclose(feats.numpy(), np.array(REF['poi_text_emb']), atol=2e-5)
    batched = model.align_model.encode_text(tokenize(model.align_model.tokenizer, texts))  # padded batch
    np.testing.assert_allclose(batched.numpy(), feats.numpy(), atol=1e-5)
    mvec = torch.stack([i[0] for i in inputs])
    tvec = torch.stack([i[1] for i in inputs])
    plen = torch.tensor([[float(i[2])] for i in inputs])
    assert plen.tolist() == REF['poi_len']
    s1 = model(imgs[:2], feats, mvec, tvec, plen)
    s2 = model(imgs[2:], feats, mvec, tvec, plen)
    np.testing.assert_allclose(s1.reshape(-1).numpy(), REF['s1'], atol=2e-5)
    np.testing.assert_allclose(s2.reshape(-1).numpy(), REF['s2'], atol=2e-5)
    labels = torch.tensor([[pair_label(r)] for r in records])
    assert labels.reshape(-1).tolist() == REF['labels']
    assert rank_sigmoid_loss(s1, s2, labels).item() == pytest.approx(REF['rank_loss'], abs=1e-5)
    no_poi = model(imgs[:1], feats[:1], torch.zeros(1, 5, 512), torch.zeros(1, 5, 512), torch.zeros(1, 1))
    assert no_poi.item() == pytest.approx(REF['s1_no_poi'], abs=2e-5)


@torch.no_grad()
def test_clip_loss_equal_upstream(port):
    model, imgs = port
    records, _ = _pairs()
    text = tokenize(model.align_model.tokenizer, [r.title for r in records])
    assert model.align_model(imgs[:2], text).item() == pytest.approx(REF['clip_loss_titles'], abs=1e-5)
