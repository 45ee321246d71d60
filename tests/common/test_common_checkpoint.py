import argparse
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch

from common.checkpoint import (CheckpointError, atomic_open, load_checkpoint, load_pickle,
                               save_checkpoint)
from common.vocab import Vocabulary


@pytest.fixture
def upstream_vocab_class():
    """A stand-in for upstream's top-level `vocab.Vocabulary`, so pickles name `vocab.Vocabulary`."""
    module = types.ModuleType('vocab')

    class Vocabulary(object):
        pass

    Vocabulary.__module__ = 'vocab'
    Vocabulary.__qualname__ = 'Vocabulary'
    module.Vocabulary = Vocabulary
    sys.modules['vocab'] = module
    yield Vocabulary
    sys.modules.pop('vocab', None)


def upstream_like_checkpoint(vocab_cls):
    vocab = vocab_cls()
    vocab.word2idx, vocab.idx2word, vocab.idx = {'<unk>': 0, 'dog': 1}, {0: '<unk>', 1: 'dog'}, 2
    opt = argparse.Namespace(lr=2e-4, margin=0.2, weights=np.array([0.5, 1.5], dtype=np.float32))
    return {'model': [{'fc.weight': torch.arange(6.).reshape(2, 3)}, {'emb': torch.ones(4, dtype=torch.float64)}],
            'opt': opt, 'best_rsum': np.float64(401.25), 'Eiters': 1234, 'vocab': vocab,
            'ids': np.arange(3, dtype=np.int64)}


def check_loaded(ckpt):
    assert torch.equal(ckpt['model'][0]['fc.weight'], torch.arange(6.).reshape(2, 3))
    assert ckpt['model'][1]['emb'].dtype == torch.float64
    assert ckpt['model'][0]['fc.weight'].device.type == 'cpu'
    assert isinstance(ckpt['opt'], argparse.Namespace) and ckpt['opt'].margin == 0.2
    np.testing.assert_array_equal(ckpt['opt'].weights, [0.5, 1.5])
    assert ckpt['best_rsum'] == 401.25 and ckpt['Eiters'] == 1234
    assert isinstance(ckpt['vocab'], Vocabulary) and ckpt['vocab']('dog') == 1 and ckpt['vocab']('x') == 0
    np.testing.assert_array_equal(ckpt['ids'], [0, 1, 2])


@pytest.mark.parametrize('legacy', [False, True])
def test_upstream_checkpoint_loads_with_alias(tmp_path, upstream_vocab_class, legacy):
    path = str(tmp_path / 'model_best.pth.tar')
    torch.save(upstream_like_checkpoint(upstream_vocab_class), path, _use_new_zipfile_serialization=not legacy)
    sys.modules.pop('vocab')  # the upstream module is not importable in the port
    check_loaded(load_checkpoint(path, aliases={'vocab.Vocabulary': Vocabulary}))


def test_legacy_checkpoint_with_cuda_storages_loads_on_cpu(tmp_path, upstream_vocab_class, legacy_cuda_save):
    path = legacy_cuda_save(upstream_like_checkpoint(upstream_vocab_class), str(tmp_path / 'old.pth.tar'))
    assert b'torch.cuda\nFloatStorage' in open(path, 'rb').read()
    sys.modules.pop('vocab')
    check_loaded(load_checkpoint(path, map_location='cpu', aliases={'vocab.Vocabulary': Vocabulary}))


def test_unknown_class_is_refused_not_unpickled(tmp_path, upstream_vocab_class):
    path = str(tmp_path / 'ckpt.pth')
    torch.save(upstream_like_checkpoint(upstream_vocab_class), path)
    with pytest.raises(CheckpointError, match='allow-list.*vocab.Vocabulary'):
        load_checkpoint(path)


def test_malicious_global_is_refused(tmp_path):
    class Evil(object):
        def __reduce__(self):
            return (os.system, ('echo pwned > %s' % (tmp_path / 'pwned'),))
    path = str(tmp_path / 'evil.pth')
    torch.save({'x': Evil()}, path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not (tmp_path / 'pwned').exists()


@pytest.mark.parametrize('damage', ['truncated_zip', 'truncated_legacy', 'text', 'empty', 'missing'])
def test_damaged_files_give_clear_errors(tmp_path, damage):
    good = str(tmp_path / 'good.pth')
    torch.save({'w': torch.ones(100)}, good, _use_new_zipfile_serialization=(damage != 'truncated_legacy'))
    bad = tmp_path / 'bad.pth'
    if damage.startswith('truncated'):
        bad.write_bytes(open(good, 'rb').read()[:200])
    elif damage == 'text':
        bad.write_text('this is not a checkpoint\n')
    elif damage == 'empty':
        bad.write_bytes(b'')
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(str(bad))
    message = str(info.value)
    assert 'bad.pth' in message
    expected = {'truncated_zip': 'truncated or corrupt', 'truncated_legacy': 'truncated or corrupt',
                'text': 'not a PyTorch checkpoint', 'empty': 'empty', 'missing': 'not found'}
    assert expected[damage] in message


def test_save_checkpoint_is_atomic_and_round_trips(tmp_path):
    path = tmp_path / 'sub' / 'checkpoint.pth.tar'
    save_checkpoint({'epoch': 3, 'w': torch.arange(4)}, str(path))
    assert load_checkpoint(str(path))['epoch'] == 3
    assert [p.name for p in path.parent.iterdir()] == ['checkpoint.pth.tar']  # no temp left behind


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / 'model_best.pth.tar'
    save_checkpoint({'epoch': 1}, str(path))
    with pytest.raises(RuntimeError):
        with atomic_open(str(path), 'wb') as f:
            f.write(b'partial')
            raise RuntimeError('killed mid-write')
    assert load_checkpoint(str(path)) == {'epoch': 1}
    assert len(list(tmp_path.iterdir())) == 1


def test_load_pickle_maps_upstream_vocab(tmp_path, upstream_vocab_class):
    vocab = upstream_like_checkpoint(upstream_vocab_class)['vocab']
    path = tmp_path / 'kddcup_vocab.pkl'
    with open(path, 'wb') as f:
        pickle.dump(vocab, f, protocol=2)
    sys.modules.pop('vocab')
    loaded = load_pickle(str(path), aliases={'vocab.Vocabulary': Vocabulary})
    assert isinstance(loaded, Vocabulary) and loaded('dog') == 1
    with pytest.raises(CheckpointError, match='vocab.Vocabulary'):
        load_pickle(str(path))


def test_atomic_files_get_the_umask_mode_not_0600(tmp_path):
    import os
    path = tmp_path / 'vocab.json'
    with atomic_open(str(path), 'w') as f:
        f.write('{}')
    mask = os.umask(0)
    os.umask(mask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~mask)


class _RunsAShellCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ('touch %s' % self.marker,))


def test_malicious_checkpoint_names_the_global_and_gives_no_unsafe_advice(tmp_path):
    marker = tmp_path / 'ran'
    path = tmp_path / 'evil.pth'
    torch.save({'x': _RunsAShellCommand(marker)}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert 'posix.system' in message and str(path) in message
    assert 'weights_only' not in message
    assert not marker.exists()


def test_copy_to_best_copies_bytes_and_a_failed_copy_keeps_the_old_best(tmp_path, monkeypatch):
    from common import atomic
    from common.checkpoint import copy_to_best, save_checkpoint
    src, best = tmp_path / 'checkpoint_3.pth.tar', tmp_path / 'model_best.pth.tar'
    save_checkpoint({'epoch': 3, 'w': torch.arange(300000)}, src)
    best.write_bytes(b'old best')
    real_replace = os.replace
    monkeypatch.setattr(atomic.os, 'replace', lambda a, b: (_ for _ in ()).throw(OSError('disk gone')))
    with pytest.raises(OSError):
        copy_to_best(src, best)
    assert best.read_bytes() == b'old best' and [p.name for p in tmp_path.iterdir() if p.name.endswith('.tmp')] == []
    monkeypatch.setattr(atomic.os, 'replace', real_replace)
    copy_to_best(src, best)
    assert best.read_bytes() == src.read_bytes() and load_checkpoint(str(best))['epoch'] == 3
