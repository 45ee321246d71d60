"""Real Corel5K captions/vocab, the up-front layout check, collate, and the CLI spellings of opts.py."""
import os

import numpy as np
import pytest
import torch

from common.text import tokenize
from common.vocab import build_vocab, deserialize_vocab
from m2hse import data_provider as data
from m2hse import opts
from m2hse import vocab as vocab_script

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CAPS = os.path.join(REPO, 'm2hse', 'data', 'coarse-grained-data', 'corel5k_precomp')
VOCAB = os.path.join(REPO, 'm2hse', 'vocab', 'corel5k_precomp_vocab.json')


def test_real_caption_files_crlf_and_trailing_blanks():
    train = data.read_captions(os.path.join(CAPS, 'train_caps.txt'))
    dev = data.read_captions(os.path.join(CAPS, 'dev_caps.txt'))
    assert len(train) == 4493 and len(dev) == 499
    assert b'\r\n' in open(os.path.join(CAPS, 'dev_caps.txt'), 'rb').read()
    assert dev[0] == 'mountain sky sun water' and dev[10] == dev[11] == 'sky jet plane'
    assert not any(c != c.strip() or '\r' in c for c in train + dev)
    assert {len(c.split()) for c in train + dev} == {1, 2, 3, 4, 5}


def test_real_vocab_has_no_unk_and_rebuilds_identically(tmp_path, monkeypatch):
    vocab = deserialize_vocab(VOCAB)
    assert len(vocab) == 264 and [vocab.idx2word[i] for i in range(4)] == ['<pad>', '<start>', '<end>', '<unk>']
    captions = data.read_captions(os.path.join(CAPS, 'train_caps.txt')) + \
        data.read_captions(os.path.join(CAPS, 'dev_caps.txt'))
    tokens = [t for c in captions for t in tokenize(c)]
    assert sum(vocab(t) == vocab('<unk>') for t in tokens) == 0
    assert all(tokenize(c) == c.split() for c in captions)  # hyphenated tags (f-16) stay whole
    assert build_vocab(captions, 2).word2idx == vocab.word2idx
    monkeypatch.chdir(tmp_path)  # the script writes ./vocab/<data_name>_vocab.json, as upstream
    os.makedirs('vocab')
    rebuilt = vocab_script.main(['--data_path', os.path.dirname(CAPS), '--data_name', 'corel5k_precomp'])
    assert deserialize_vocab('vocab/corel5k_precomp_vocab.json').word2idx == vocab.word2idx == rebuilt.word2idx


def _write_split(folder, n=4, level='global', label_shape=(4, 1), cnn_dim=6, bovw_dim=5):
    os.makedirs(folder, exist_ok=True)
    regions = (9,) if level == 'local' else ()
    with open(os.path.join(folder, 'test_caps.txt'), 'w') as f:
        f.write('sky sun\r\ntree\r\nsky jet plane \r\nwater')
    np.save(os.path.join(folder, 'test_cnns.npy'), np.random.rand(n, *regions, cnn_dim).astype(np.float64))
    np.save(os.path.join(folder, 'test_bovws.npy'), np.random.rand(n, *regions, bovw_dim))
    np.save(os.path.join(folder, 'test_labels.npy'), np.arange(4).reshape(label_shape))


def test_layout_check_names_file_and_expected_shape(tmp_path):
    _write_split(str(tmp_path))
    assert data.check_split(str(tmp_path), 'test', 'global', 6, 5) == 4
    with pytest.raises(data.DataLayoutError, match=r'test_cnns.npy has shape \(4, 6\), expected \(4, 9, 6\)'):
        data.check_split(str(tmp_path), 'test', 'local', 6, 5)
    with pytest.raises(data.DataLayoutError, match=r'test_bovws.npy has shape \(4, 5\), expected \(4, 500\)'):
        data.check_split(str(tmp_path), 'test', 'global', 6, 500)
    os.remove(tmp_path / 'test_labels.npy')
    with pytest.raises(data.DataLayoutError, match=r'missing file .*test_labels.npy .*\(4,\) or \(4, 1\)'):
        data.check_split(str(tmp_path), 'test', 'global', 6, 5)
    np.save(tmp_path / 'test_labels.npy', np.zeros((4, 2)))
    with pytest.raises(data.DataLayoutError, match=r'test_labels.npy has shape \(4, 2\)'):
        data.check_split(str(tmp_path), 'test', 'global', 6, 5)
    with pytest.raises(data.DataLayoutError, match=r'missing caption file .*dev_caps.txt'):
        data.check_split(str(tmp_path), 'dev', 'global', 6, 5)


@pytest.mark.parametrize('label_shape', [(4,), (4, 1)])
def test_labels_of_shape_n_or_n1_and_collate(tmp_path, label_shape):
    _write_split(str(tmp_path), level='local', label_shape=label_shape)
    vocab = deserialize_vocab(VOCAB)
    dset = data.PrecompDataset(str(tmp_path), 'test', vocab, 'local', 6, 5)
    image, target, index, lab, bovw = dset[2]
    assert image.dtype == torch.float32 and image.shape == (9, 6) and lab == 2.0
    assert target.tolist() == [1, vocab('sky'), vocab('jet'), vocab('plane'), 2]
    cnns, targets, lengths, masks, ids, labs, bovws = data.collate_fn([dset[i] for i in range(4)])
    assert ids == [2, 0, 1, 3]  # by length, descending, stable among equal lengths
    assert lengths.tolist() == [5, 4, 3, 3] and targets.shape == (4, 5) and masks.sum() == 15
    assert labs.dtype == torch.float32 and labs.tolist() == [2., 0., 1., 3.]


README_GLOBAL = ('--data_path ./data/coarse-grained-data --data_name corel5k_precomp --vocab_path ./vocab '
                 '--logger_name ./checkpoint/M2HSE/Global/Corel5K --model_name ./checkpoint/M2HSE/Global/Corel5K '
                 '--num_epochs 100 --lr_updata 50 --batchsize 100 --gamma_1 1 --gamma_2 .5 --alpha_1 .8 --alpha_2 .8')


def test_readme_and_upstream_spellings_map_to_upstream_names():
    opt = opts.parse_opt(README_GLOBAL.split())
    assert opt.lr_update == 50 and opt.batch_size == 100 and opt.alpha_1 == 0.8 and opt.gamma_2 == 0.5
    assert not hasattr(opt, 'lr_updata') and not hasattr(opt, 'batchsize')
    assert opts.parse_opt(['--lr_update', '7', '--batch_size', '3']).lr_update == 7
    opt = opts.parse_opt(['--lr_updata', '9', '--batchsize', '4'])
    assert (opt.lr_update, opt.batch_size) == (9, 4)
    opt = opts.parse_opt(['--lr_up', '7', '--batch', '3'])  # unambiguous prefixes, as upstream
    assert (opt.lr_update, opt.batch_size) == (7, 3)


def test_upstream_defaults_and_quirks():
    opt = opts.parse_opt([])
    expected = dict(num_epochs=100, lr_update=50, batch_size=100, log_step=10, logger_name='./runs/runX/log',
                    model_name='./runs/runX/checkpoint', gamma_1=1, gamma_2=0.5, alpha_1=0.4, alpha_2=0.4,
                    beta_1=0.4, beta_2=0.4, data_path='./data/', data_name='pascal_precomp', vocab_path='./vocab/',
                    word_dim=300, embed_size=1024, grad_clip=2.0, num_layers=1, cnn_dim=4096, bovw_dim=500,
                    bi_gru=True, raw_feature_norm='clipped_l2norm', lambda_softmax=9.0, Delta=0.1, gpuid=0,
                    learning_rate=0.0002)
    assert {k: getattr(opt, k) for k in expected} == expected
    assert list(vars(opt))[:len(expected)] == list(expected)  # pickled in upstream's order
    assert opts.parse_opt(['--bi_gru', 'False']).bi_gru == 'False'  # a truthy string, as upstream


def test_upstream_caption_location_gets_a_hint(tmp_path):
    (tmp_path / 'train_caps.txt').write_text('sky\n')
    with pytest.raises(data.DataLayoutError, match='move the split files into'):
        data.check_split(str(tmp_path / 'corel5k_precomp'), 'train', 'global', 4096, 500)


def test_gpuid_is_exported_only_when_given(monkeypatch):
    from m2hse.train import apply_gpuid
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES', raising=False)
    apply_gpuid(opts.parse_opt([]), [], distributed=False)
    assert 'CUDA_VISIBLE_DEVICES' not in os.environ
    apply_gpuid(opts.parse_opt(['--gpuid', '1']), ['--gpuid', '1'], distributed=True)
    assert 'CUDA_VISIBLE_DEVICES' not in os.environ  # torchrun assigns devices itself
    apply_gpuid(opts.parse_opt(['--gpuid', '1']), ['--gpuid', '1'], distributed=False)
    assert os.environ['CUDA_VISIBLE_DEVICES'] == '1'
