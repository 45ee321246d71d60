"""predict.py ranks a split's products for a free-text query with upstream's scores; --export."""
import csv
import os

import numpy as np
import pytest
import torch

from hsl import predict


def _predict_old_spellings(hh, tiny_root, *extra):
    data = os.path.join(tiny_root, 'data')
    return predict.main(['--resume', os.path.join(hh.DATA, 'upstream_ckpt_glove.pth.tar'),
                         '--query', 'red dress', '--data_path', data,
                         '--vocab_path', os.path.join(data, 'KDDCup2020'), '--device', 'cpu',
                         '--topn', '3'] + list(extra))


def test_predict_scores_equal_upstream_eval_scores(hh, tiny_root, capsys):
    ranked, scores = _predict_old_spellings(hh, tiny_root)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == 'rank\tproduct_id\tscore' and len(out) == 1 + 3
    assert sorted(ranked) == [11, 12, 13, 14, 15, 16] and list(scores) == sorted(scores, reverse=True)
    with open(os.path.join(hh.DATA, 'upstream_scores_A.csv')) as f:  # query 101 = 'red dress'
        want = {int(r['product_id']): float(r['score']) for r in csv.DictReader(f) if r['query_id'] == '101'}
    got = dict(zip(ranked, scores))
    for pid, score in want.items():
        assert got[pid] == pytest.approx(score, rel=1e-5, abs=1e-6)


def test_predict_export_folder_holds_embeddings_of_every_product(hh, tiny_root, tmp_path, capsys):
    _predict_old_spellings(hh, tiny_root, '--export', str(tmp_path / 'emb'))
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 + 3 + 1 and out[-1] == '=> embeddings written to %s' % (tmp_path / 'emb')
    emb = tmp_path / 'emb'
    assert np.load(emb / 'query_embeddings.npy').shape == (4, 12)
    assert np.load(emb / 'product_image_embeddings.npy').shape == (6, 2, 12)
    assert np.load(emb / 'product_object_embeddings.npy').shape == (6, 3, 2, 12)
    np.testing.assert_array_equal(np.load(emb / 'product_num_boxes.npy'), [2, 1, 3, 2, 1, 3])


def test_checkpoint_with_cuda_storages_loads_on_cpu(hh, tiny_root, tmp_path, monkeypatch, capsys):
    """A GPU-trained upstream checkpoint (storages tagged 'cuda:0') evaluates on a CPU machine."""
    from common.checkpoint import load_checkpoint
    from hsl.data import VOCAB_ALIASES
    ckpt = load_checkpoint(os.path.join(hh.DATA, 'upstream_ckpt_glove.pth.tar'), aliases=VOCAB_ALIASES)
    path = str(tmp_path / 'gpu_ckpt.pth.tar')
    monkeypatch.setattr(torch.serialization, 'location_tag', lambda storage: 'cuda:0')
    torch.save(ckpt, path)
    monkeypatch.undo()
    with open(path, 'rb') as f:
        assert b'cuda:0' in f.read()
    data = os.path.join(tiny_root, 'data')
    ranked, _ = predict.main(['--resume', path, '--query', 'bag', '--data_path', data,
                              '--vocab_path', os.path.join(data, 'KDDCup2020'), '--device', 'cpu'])
    assert len(ranked) == 6


def test_predict_unified_flags_print_product_ids_and_export_one_npz(hh, tiny_root, tmp_path, capsys):
    data = os.path.join(tiny_root, 'data')
    common = ['--query', 'red dress', '--data_path', data, '--vocab_path', os.path.join(data, 'KDDCup2020'),
              '--device', 'cpu']
    old, _ = predict.main(['--resume', os.path.join(hh.DATA, 'upstream_ckpt_glove.pth.tar'), '--topn', '2']
                          + common)
    capsys.readouterr()
    archive = tmp_path / 'emb.npz'
    ranked, scores = predict.main(['--checkpoint', os.path.join(hh.DATA, 'upstream_ckpt_glove.pth.tar'),
                                   '--top_k', '2', '--export', str(archive)] + common)
    out = capsys.readouterr().out.splitlines()
    assert ranked == old
    assert out[:3] == ['rank\tproduct_id\tscore'] + ['%d\t%d\t%r' % (i + 1, ranked[i], float(scores[i]))
                                                      for i in range(2)]
    with np.load(archive) as emb:
        assert sorted(emb.files) == sorted(predict.EXPORT_NAMES)
        assert emb['query_embeddings'].shape == (4, 12)
        assert emb['product_object_embeddings'].shape == (6, 3, 2, 12)
        np.testing.assert_array_equal(emb['product_num_boxes'], [2, 1, 3, 2, 1, 3])
        assert sorted(emb['product_ids'].tolist()) == sorted(ranked)
    assert not (tmp_path / 'emb').exists()


def test_predict_export_without_npz_suffix_keeps_the_folder_layout(hh, tiny_root, tmp_path, capsys):
    data = os.path.join(tiny_root, 'data')
    predict.main(['--checkpoint', os.path.join(hh.DATA, 'upstream_ckpt_glove.pth.tar'), '--query', 'bag',
                  '--data_path', data, '--vocab_path', os.path.join(data, 'KDDCup2020'), '--device', 'cpu',
                  '--export', str(tmp_path / 'out')])
    assert sorted(os.listdir(tmp_path / 'out')) == sorted(n + '.npy' for n in predict.EXPORT_NAMES)
