"""Checkpoints in the original torch 0.4.1 / Python 2 format (non-zip, CUDA storages, py2 str,
opt Namespace, [img, txt, sim] list) load; num_batches_tracked may be absent; bad files and a
vocabulary of the wrong size give clear errors."""
import os

import pytest
import torch

from common.checkpoint import load_checkpoint
from lhsc import evaluation
from lhsc.model import build_model

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')
UPSTREAM = os.path.join(DATA, 'upstream')
VOCAB = os.path.join(DATA, 'vocab')


def test_fixture_is_really_legacy_format_with_cuda_storages():
    raw = open(os.path.join(UPSTREAM, 'lhsc_legacy.pth.tar'), 'rb').read()
    assert not raw.startswith(b'PK')                       # not the zip format of torch >= 1.6
    assert b'torch.cuda\nFloatStorage' in raw and b'cuda:0' in raw
    assert b'argparse\nNamespace' in raw


def test_legacy_checkpoint_loads_with_opt_and_list_state(make_opt):
    ckpt = load_checkpoint(os.path.join(UPSTREAM, 'lhsc_legacy.pth.tar'))
    assert ckpt['epoch'] == 5 and ckpt['Eiters'] == 40 and ckpt['best_rsum'] == 12.5
    assert ckpt['opt'].embed_size == 16 and ckpt['opt'].device == '1' and ckpt['opt'].max_violation is True
    img, txt, sim = ckpt['model']
    assert img['IM_GCN_1.W.1.num_batches_tracked'].item() == 7
    model, opt, vocab, epoch = evaluation.load_model(os.path.join(UPSTREAM, 'lhsc_legacy.pth.tar'),
                                                     DATA, VOCAB)
    assert epoch == 5 and opt.model == 'LHSC' and len(vocab) == 35
    for ours, theirs in zip(model.state_dict(), ckpt['model']):
        assert list(ours) == list(theirs)
        for k in ours:
            assert torch.equal(ours[k], theirs[k])


def test_sgraf_checkpoint_is_recognised_by_its_opt():
    model, opt, _, _ = evaluation.load_model(os.path.join(UPSTREAM, 'sgraf_sgr_legacy.pth.tar'), DATA, VOCAB)
    assert opt.model == 'SGRAF' and opt.module_name == 'SGR' and model.loss_name == 'Loss'
    assert not hasattr(model.img_enc, 'IM_GCN_1') and len(model.sim_enc.SGR_module) == 3


def test_checkpoint_without_num_batches_tracked_loads(tmp_path, legacy_save):
    ckpt = load_checkpoint(os.path.join(UPSTREAM, 'lhsc_legacy.pth.tar'))
    path = tmp_path / 'old.pth.tar'
    legacy_save(ckpt, str(path), keep_batches_tracked=False, metadata=False)
    assert b'num_batches_tracked' not in open(path, 'rb').read()
    model, _, _, _ = evaluation.load_model(str(path), DATA, VOCAB)
    expected = ckpt['model'][2]['v_global_w.embedding_local.1.running_var']
    assert torch.equal(model.sim_enc.state_dict()['v_global_w.embedding_local.1.running_var'], expected)


def test_own_checkpoint_roundtrip(tmp_path, make_opt):
    from common.checkpoint import save_checkpoint
    opt = make_opt()
    model = build_model(opt)
    save_checkpoint({'epoch': 1, 'model': model.state_dict(), 'best_rsum': 0, 'opt': opt, 'Eiters': 3}, tmp_path / 'c.pth.tar')
    loaded, _, _, _ = evaluation.load_model(str(tmp_path / 'c.pth.tar'), DATA, VOCAB)
    for a, b in zip(model.state_dict(), loaded.state_dict()):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_vocab_size_mismatch_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match='embeds 35 words but the vocabulary'):
        evaluation.load_model(os.path.join(UPSTREAM, 'lhsc_legacy.pth.tar'), DATA,
                              os.path.join(os.path.dirname(DATA), '..', '..', 'lhsc', 'vocab'))


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    raw = open(os.path.join(UPSTREAM, 'lhsc_legacy.pth.tar'), 'rb').read()
    path = tmp_path / 'cut.pth.tar'
    path.write_bytes(raw[:len(raw) // 2])
    with pytest.raises(SystemExit, match='cut.pth.tar'):
        evaluation.load_model(str(path), DATA, VOCAB)
