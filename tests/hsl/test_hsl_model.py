"""Model structure (upstream HSL/model.py) and numerical equivalence with upstream's model code."""
import argparse
import os

import numpy as np
import pytest
import torch

from common.checkpoint import load_checkpoint, save_checkpoint
from hsl import parser
from hsl.data import VOCAB_ALIASES
from hsl.model import HSL, aggregate_box_scores, cal_scores


def default_model(vocab_size=20, glove=True):
    opt = parser.get_parser(['--glove'] if glove else [])
    opt.vocab_size = vocab_size
    opt.we_parameter = np.zeros((vocab_size, 300)) if glove else None
    return HSL(opt)


def test_state_dict_keys_and_shapes_match_spec():
    model = default_model()
    img, txt, word = model.state_dict()
    assert len(img) == 100 and len(txt) == 68
    assert list(word) == ['embed.weight', 'fc.weight', 'fc.bias']
    assert word['embed.weight'].shape == (20, 300) and word['fc.weight'].shape == (512, 300)
    expect = {'in_fc.weight': (512, 2048), 'out_fc.weight': (1024, 512), 'fc1.weight': (1024, 512),
              'fc2.weight': (512, 1024), 'fc3.weight': (512, 1024),
              'attflat_img.mlp.fc.linear.weight': (512, 512), 'attflat_img.mlp.linear.weight': (1, 512),
              'attflat_img.linear_merge.weight': (1024, 512),
              'encoder_layer.self_attn.in_proj_weight': (1536, 512),
              'transformer2.layers.2.linear1.weight': (2048, 512),
              'transformer1.layers.0.norm2.bias': (512,)}
    for key, shape in expect.items():
        assert tuple(img[key].shape) == shape, key
    assert list(img)[:2] == ['in_fc.weight', 'in_fc.bias']
    assert 'transformer1.layers.1.self_attn.out_proj.weight' in txt and 'transformer1.layers.2.linear1.weight' not in txt
    assert tuple(txt['fc4.weight'].shape) == (1024, 512)
    assert all(v.dtype == torch.float32 for sd in (img, txt, word) for v in sd.values())
    no_glove = default_model(glove=False).state_dict()[2]
    assert list(no_glove) == ['embed.weight'] and tuple(no_glove['embed.weight'].shape) == (20, 512)


def test_forward_shapes(hh):
    model = HSL(hh.tiny_opt('B'))
    model.val_start()
    images = torch.rand(3, 4, 16)
    embs = model.forward_emb(images, torch.tensor([4, 2, 1]), torch.randint(0, 10, (3, 5)),
                             torch.tensor([5, 4, 3]), no_grad=True)
    assert [tuple(e.shape) for e in embs] == [(3, 4, 12), (3, 12), (3, 4, 12), (3, 12),
                                              (3, 12), (3, 12), (3, 12), (3, 12)]
    sims = model.score_levels(embs, torch.tensor([4, 2, 1]))
    assert all(tuple(s.shape) == (3, 3) for s in sims)


def _ref_batch(reference, cfg):
    return [torch.from_numpy(reference['%s_train_%s' % (cfg, k)])
            for k in ('images', 'num_boxes', 'caps', 'lengths')]


def _model_for(cfg, hh, reference):
    if cfg == 'A':  # weights from the checkpoint upstream wrote
        model = HSL(hh.tiny_opt('A'))
        ckpt = load_checkpoint(os.path.join(hh.DATA, 'upstream_ckpt_glove.pth.tar'), aliases=VOCAB_ALIASES)
        model.load_state_dict(ckpt['model'])
    else:  # same seed, same construction order -> upstream's initial weights
        torch.manual_seed(0)
        model = HSL(hh.tiny_opt('B'))
    return model


@pytest.mark.parametrize('cfg', ['A', 'B'])
def test_embeddings_scores_and_loss_equal_upstream(cfg, hh, reference):
    model = _model_for(cfg, hh, reference)
    model.val_start()
    images, num_boxes, caps, lengths = _ref_batch(reference, cfg)
    embs = model.forward_emb(images, num_boxes, caps, lengths, no_grad=True)
    for i, e in enumerate(embs):
        np.testing.assert_allclose(e.numpy(), reference['%s_emb%d' % (cfg, i)], rtol=1e-5, atol=1e-6)
    sims = model.score_levels(embs, num_boxes)
    for i, s in enumerate(sims):
        np.testing.assert_allclose(s.numpy(), reference['%s_sims%d' % (cfg, i + 1)], rtol=1e-5, atol=1e-6)
    loss = model.forward_loss(*sims).item()
    assert loss == pytest.approx(float(reference[cfg + '_loss']), rel=1e-6)


@pytest.mark.parametrize('agg', ['max', 'mean', 'sum', 'top2', 'top10'])
def test_box_aggregation_equals_upstream(agg, hh, reference):
    model = _model_for('A', hh, reference)
    model.val_start()
    images, num_boxes, caps, lengths = _ref_batch(reference, 'A')
    embs = model.forward_emb(images, num_boxes, caps, lengths, no_grad=True)
    got = cal_scores(embs[0], embs[1], num_boxes, agg).numpy()
    want = reference['A_agg_' + agg]
    if agg == 'top10':  # upstream reads k = last char = 0: mean of nothing = NaN (kept)
        assert np.isnan(want).all() and np.isnan(got).all()
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_topk_fix_parses_all_digits():
    sims = torch.tensor([[[3., 1., 2., 9.]]])
    nb = torch.tensor([3])
    assert aggregate_box_scores(sims, nb, 'top2').item() == pytest.approx(2.5)
    assert torch.isnan(aggregate_box_scores(sims, nb, 'top10'))
    assert aggregate_box_scores(sims, nb, 'top10', fix_topk=True).item() == pytest.approx(2.0)


@pytest.mark.parametrize('cfg', ['A', 'B'])
def test_one_optimizer_step_equals_upstream(cfg, hh, reference):
    model = _model_for(cfg, hh, reference)
    model.val_start()  # dropout off, as in the reference run
    model.train_emb(0, *_ref_batch(reference, cfg))
    prefix = '%s_step_' % cfg
    keys = [k for k in reference if k.startswith(prefix)]
    assert len(keys) > 40
    state = model.state_dict()
    for key in keys:
        m, name = key[len(prefix):].split('_', 1)
        got, want = state[int(m)][name].numpy(), reference[key]
        if name.endswith('in_proj_bias'):
            # the key-bias third has a mathematically zero gradient (softmax is shift-invariant):
            # Adam turns its ~1e-12 rounding noise into +-lr steps, so only q and v parts compare
            d = got.shape[0] // 3
            got, want = np.r_[got[:d], got[2 * d:]], np.r_[want[:d], want[2 * d:]]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6, err_msg=key)


def test_upstream_checkpoint_loads_with_namespace_and_numpy(hh):
    ckpt = load_checkpoint(os.path.join(hh.DATA, 'upstream_ckpt_glove.pth.tar'), aliases=VOCAB_ALIASES)
    assert set(ckpt) == {'epoch', 'model', 'nDCG', 'opt', 'Eiters'}
    assert isinstance(ckpt['opt'], argparse.Namespace) and ckpt['opt'].glove
    assert ckpt['opt'].we_parameter.shape == (10, 300) and ckpt['opt'].we_parameter.dtype == np.float64
    assert isinstance(ckpt['model'], list) and len(ckpt['model']) == 3
    assert 'encoder_layer.linear1.weight' in ckpt['model'][0]


def test_port_checkpoint_round_trip_in_upstream_layout(tmp_path, hh, reference):
    model = _model_for('A', hh, reference)
    path = str(tmp_path / 'checkpoint.pth.tar')
    save_checkpoint({'epoch': 1, 'model': model.state_dict(), 'nDCG': 0.25, 'opt': hh.tiny_opt('A'),
                     'Eiters': 3}, path)
    # upstream's own call on torch<2.6 is torch.load(path); emulate it (trusted file)
    raw = torch.load(path, weights_only=False)
    assert isinstance(raw['model'], list) and list(raw['model'][2]) == ['embed.weight', 'fc.weight', 'fc.bias']
    other = HSL(hh.tiny_opt('A'))
    other.load_state_dict(load_checkpoint(path)['model'])
    for a, b in zip(model.state_dict(), other.state_dict()):
        for k in a:
            assert torch.equal(a[k], b[k])
