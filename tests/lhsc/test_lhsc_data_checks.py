"""Bad data gives clear errors naming the file: region count, feature dim, caption count, missing
split files, invalid UTF-8; and a correct dataset yields upstream's items."""
import os

import numpy as np
import pytest
import torch

from common.vocab import deserialize_vocab
from lhsc import data

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')
VOCAB = deserialize_vocab(os.path.join(DATA, 'vocab', 'f30k_precomp_vocab.json'))


def write_split(folder, ims, captions, split='test'):
    os.makedirs(folder, exist_ok=True)
    np.save(os.path.join(folder, '%s_ims.npy' % split), ims)
    with open(os.path.join(folder, '%s_caps.txt' % split), 'wb') as f:
        f.write(b''.join(c + b'\n' for c in captions))


def test_items_match_upstream_format(tmp_path):
    ims = np.arange(2 * 36 * 4, dtype=np.float32).reshape(2, 36, 4)
    write_split(tmp_path, ims, [b'A Man  on the Grass .\r', b'two dogs'] + [b'a cat'] * 8)
    dset = data.PrecompDataset(str(tmp_path), 'test', VOCAB, img_dim=4)
    assert dset.im_div == 5 and len(dset) == 10 and isinstance(dset.images, np.memmap)
    image, caption, index, img_id = dset[6]
    assert img_id == 1 and index == 6 and torch.equal(image, torch.from_numpy(ims[1]))
    _, caption, _, _ = dset[0]
    w = VOCAB.word2idx
    assert caption.tolist() == [1, w['a'], w['man'], w['on'], w['the'], w['grass'], 3, 2]  # '.' is <unk> here
    assert dset[1][1].tolist() == [1, w['two'], 3, 2]  # 'dogs' is not in the fixture vocab -> <unk>
    images, targets, lengths, ids = data.collate_fn([dset[1], dset[0], dset[2]])
    assert lengths == [8, 4, 4] and ids == [0, 1, 2] and targets.dtype == torch.int64
    assert targets[1, 4:].tolist() == [0, 0, 0, 0]


def test_dev_split_is_capped_at_5000_captions(tmp_path):
    write_split(tmp_path, np.zeros((2, 36, 4), np.float32), [b'a'] * 10, split='dev')
    assert len(data.PrecompDataset(str(tmp_path), 'dev', VOCAB)) == 10  # upstream: IndexError


@pytest.mark.parametrize('shape,caps,message', [
    ((2, 35, 4), 10, 'exactly 36 regions'),
    ((2, 36, 5), 10, 'region feature dim is 5 but --img_dim is 4'),
    ((2, 36, 4), 7, 'has 7 captions for 2 images'),
    ((2, 36), 10, 'must be 3-d'),
])
def test_bad_shapes_are_clear_errors(tmp_path, shape, caps, message):
    write_split(tmp_path, np.zeros(shape, np.float32), [b'a'] * caps)
    with pytest.raises(data.DataError, match=message) as err:
        data.PrecompDataset(str(tmp_path), 'test', VOCAB, img_dim=4)
    assert 'test_' in str(err.value)


def test_missing_split_files_are_clear_errors(tmp_path):
    with pytest.raises(data.DataError, match='test_caps.txt: caption file not found'):
        data.PrecompDataset(str(tmp_path), 'test', VOCAB)
    with open(tmp_path / 'test_caps.txt', 'w') as f:
        f.write('a\n')
    with pytest.raises(data.DataError, match='test_ims.npy: region feature file not found'):
        data.PrecompDataset(str(tmp_path), 'test', VOCAB)


def test_invalid_utf8_names_file_and_line(tmp_path):
    write_split(tmp_path, np.zeros((1, 36, 4), np.float32), [b'ok', b'bad \xff byte'])
    with pytest.raises(data.DataError, match=r'test_caps.txt:2: caption is not valid UTF-8'):
        data.PrecompDataset(str(tmp_path), 'test', VOCAB)


def test_not_an_npy_file(tmp_path):
    write_split(tmp_path, np.zeros((1, 36, 4), np.float32), [b'a'])
    (tmp_path / 'test_ims.npy').write_bytes(b'garbage')
    with pytest.raises(data.DataError, match='not a numpy .npy array'):
        data.PrecompDataset(str(tmp_path), 'test', VOCAB)
