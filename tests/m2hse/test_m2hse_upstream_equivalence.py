"""Checkpoints written by upstream load and reproduce upstream's scores, mAPs and training loss."""
import json
import os

import numpy as np
import pytest
import torch

from common.errors import InputError
from common.vocab import deserialize_vocab
from m2hse import data_provider as data
from m2hse import test_global, test_local
from m2hse.model import MultiSpringBalanceLoss, build_model
from m2hse.checkpoints import load_model_checkpoint, strip_module_prefix

HERE = os.path.dirname(os.path.abspath(__file__))
UPSTREAM = os.path.join(HERE, 'data', 'upstream')
VOCAB_DIR = os.path.join(os.path.dirname(os.path.dirname(HERE)), 'm2hse', 'vocab')

EXPECTED = json.load(open(os.path.join(UPSTREAM, 'upstream_expected.json')))


def _load(level):
    ckpt = load_model_checkpoint(os.path.join(UPSTREAM, 'upstream_%s.pth.tar' % level))
    opt = ckpt['opt']
    vocab = deserialize_vocab(os.path.join(VOCAB_DIR, 'corel5k_precomp_vocab.json'))
    opt.vocab_size = len(vocab)
    model = build_model(level, opt)
    model.load_state_dict(strip_module_prefix(ckpt['model']))
    return ckpt, opt, vocab, model


def test_legacy_checkpoint_dict_loads():
    ckpt, opt, _, model = _load('global')
    assert ckpt['epoch'] == 3 and isinstance(ckpt['best_mAP_sum'], np.float64)
    assert all(k.startswith('module.') for k in ckpt['model'])
    assert opt.batch_size == 5 and opt.embed_size == 16 and opt.lr_update == 50


@pytest.mark.parametrize('level', ['global', 'local'])
def test_cli_reproduces_upstream_scores_and_map(level, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the checkpoint's logger_name is ./log
    module = test_global if level == 'global' else test_local
    out_json, out_scores = tmp_path / 'r.json', tmp_path / 's.npy'
    result = module.main(['--data_path', os.path.join(UPSTREAM, level), '--vocab_path', VOCAB_DIR,
                          '--model_path', os.path.join(UPSTREAM, 'upstream_%s.pth.tar' % level),
                          '--out_json', str(out_json), '--out_scores', str(out_scores), '--device', 'cpu'])
    ref = np.load(os.path.join(UPSTREAM, 'upstream_%s_sims.npy' % level))
    sims = np.load(out_scores)
    assert sims.dtype == np.float64 and sims.shape == (12, 12)
    np.testing.assert_allclose(sims, ref, rtol=0, atol=1e-6)
    assert (sims[:, 10] == sims[:, 11]).all()  # duplicate captions tie exactly, as upstream
    assert result.i2t_mAP == pytest.approx(EXPECTED[level]['i2t_mAP'], abs=1e-12)
    assert result.t2i_mAP == pytest.approx(EXPECTED[level]['t2i_mAP'], abs=1e-12)
    payload = json.load(open(out_json))
    assert payload['n_images'] == 12 and payload['n_texts'] == 12
    assert payload['mAP_sum'] == pytest.approx(payload['i2t_mAP'] + payload['t2i_mAP'])
    out = capsys.readouterr().out
    assert 'i2t mAP %.4f' % EXPECTED[level]['i2t_mAP'] in out
    assert 'mAP_sum: %.4f' % (EXPECTED[level]['i2t_mAP'] + EXPECTED[level]['t2i_mAP']) in out
    assert 'use GPU: 0.0' in out and 'Computing results...' in out
    # --split is only the log label (upstream defaults: dev for local, test for global); test files are read
    assert open(tmp_path / 'log' / 'performance.log').read().startswith(
        'split: %s \nImage to text: %.4f ' % ('dev' if level == 'local' else 'test', EXPECTED[level]['i2t_mAP']))
    if level == 'local':
        assert 'corel5k_precomp_vocab_new_2.json not found; falling back to' in out
        assert out.count('n_im_shard: 1, n_cap_shard: 1') == 2


def test_local_exact_attention_matches_upstream_bitwise(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = test_local.main(['--data_path', os.path.join(UPSTREAM, 'local'), '--vocab_path', VOCAB_DIR,
                              '--model_path', os.path.join(UPSTREAM, 'upstream_local.pth.tar'),
                              '--attention', 'exact', '--device', 'cpu'])
    ref = np.load(os.path.join(UPSTREAM, 'upstream_local_sims.npy'))
    np.testing.assert_allclose(result.sims, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize('level', ['global', 'local'])
def test_one_training_step_loss_equals_upstream(level):
    ckpt, opt, vocab, model = _load(level)
    exp = EXPECTED[level]['step']
    dset = data.PrecompDataset(os.path.join(UPSTREAM, level, 'corel5k_precomp'), 'test', vocab, level,
                               opt.cnn_dim, opt.bovw_dim)
    cnns, targets, lengths, masks, ids, lab, bovws = data.collate_fn([dset[i] for i in range(5)])
    assert ids == exp['ids']
    sim_P, sim_A1, sim_A2 = model(cnns, targets, lengths, bovws)
    np.testing.assert_allclose(sim_P.detach().double().numpy(), exp['sim_P'], atol=1e-6)
    np.testing.assert_allclose(sim_A2.detach().double().numpy(), exp['sim_A2'], atol=1e-6)
    crit = MultiSpringBalanceLoss(opt)
    w1, w2 = (opt.alpha_1, opt.alpha_2) if level == 'global' else (opt.beta_1, opt.beta_2)
    parts = [crit(s, lab) for s in (sim_P, sim_A1, sim_A2)]
    loss = parts[0] + w1 * parts[1] + w2 * parts[2]
    assert str(loss.dtype) == exp['loss_dtype']
    for value, key in zip(parts + [loss], ('loss_P', 'loss_A1', 'loss_A2', 'loss')):
        assert value.item() == pytest.approx(exp[key], rel=1e-5), key
    loss.backward()
    grad_norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters())).item()
    assert grad_norm == pytest.approx(exp['grad_norm'], rel=1e-4)


def test_checkpoint_that_does_not_fit_the_vocab_is_explained(tmp_path):
    import json as _json
    vocab = _json.load(open(os.path.join(VOCAB_DIR, 'corel5k_precomp_vocab.json')))
    vocab['word2idx']['zzz-new-word'] = 264
    vocab['idx2word']['264'] = 'zzz-new-word'
    vocab['idx'] = 265
    (tmp_path / 'corel5k_precomp_vocab.json').write_text(_json.dumps(vocab))
    with pytest.raises(InputError, match='does not fit the model .*size mismatch'):
        test_global.main(['--data_path', os.path.join(UPSTREAM, 'global'), '--vocab_path', str(tmp_path),
                          '--model_path', os.path.join(UPSTREAM, 'upstream_global.pth.tar'), '--device', 'cpu'])
