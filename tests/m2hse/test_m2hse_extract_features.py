"""extract_features.py on real photos (Taobao test images): shapes the loaders accept, determinism,
per-block BoVW consistency, and the offline behaviour without ImageNet weights."""
import os

import numpy as np
import pytest

from common.errors import InputError
from m2hse import data_provider as data
from m2hse import extract_features
from m2hse.features import grid_boxes

HERE = os.path.dirname(os.path.abspath(__file__))
IMAGES = os.path.join(HERE, 'data', 'images')


def _lists(tmp_path):
    names = sorted(os.listdir(IMAGES))
    lists = tmp_path / 'lists'
    lists.mkdir(exist_ok=True)
    for split, chosen, labels in (('train', names[:3], [0, 1, 0]), ('dev', names[3:], [1])):
        (lists / ('%s_images.txt' % split)).write_text('\n'.join(chosen) + '\n')
        (lists / ('%s_caps.txt' % split)).write_text('\r\n'.join(['sky sun', 'tree water', 'city'][:len(chosen)]))
        (lists / ('%s_labels.txt' % split)).write_text('\n'.join(map(str, labels)))
    return str(lists)


def _run(tmp_path, out, lists, norm='l1'):
    with pytest.warns(UserWarning, match='RANDOM weights'):
        extract_features.main(['--image_dir', IMAGES, '--list_dir', lists, '--splits', 'train,dev',
                               '--global_dir', str(tmp_path / out / 'g'), '--local_dir', str(tmp_path / out / 'l'),
                               '--random_cnn', '--image_size', '64', '--bovw_dim', '16', '--bovw_norm', norm])
    return tmp_path / out


def test_extract_features_shapes_determinism_and_loader_layout(tmp_path):
    lists = _lists(tmp_path)
    a = _run(tmp_path, 'a', lists)
    b = _run(tmp_path, 'b', lists)
    expected = {'g/train_cnns.npy': (3, 4096), 'g/train_bovws.npy': (3, 16), 'l/train_cnns.npy': (3, 9, 4096),
                'l/train_bovws.npy': (3, 9, 16), 'g/dev_cnns.npy': (1, 4096), 'l/dev_bovws.npy': (1, 9, 16),
                'g/train_labels.npy': (3, 1), 'l/dev_labels.npy': (1, 1)}
    for name, shape in expected.items():
        x, y = np.load(a / name), np.load(b / name)
        assert x.shape == shape, name
        assert np.array_equal(x, y), name  # deterministic
    cnn = np.load(a / 'g/train_cnns.npy')
    assert cnn.dtype == np.float32 and (cnn >= 0).all() and cnn.std() > 0  # fc7 after ReLU
    assert np.allclose(np.load(a / 'g/train_bovws.npy').sum(1), 1.0, atol=1e-5)  # l1 histograms
    assert np.load(a / 'g/train_labels.npy').ravel().tolist() == [0, 1, 0]
    assert not np.array_equal(np.load(a / 'l/train_cnns.npy')[0, 0], np.load(a / 'l/train_cnns.npy')[0, 4])
    assert data.check_split(str(a / 'g'), 'train', 'global', 4096, 16) == 3
    assert data.check_split(str(a / 'l'), 'dev', 'local', 4096, 16) == 1
    assert data.read_captions(str(a / 'l' / 'train_caps.txt')) == ['sky sun', 'tree water', 'city']
    assert np.load(a / 'g' / 'codebook_16.npy').shape == (16, 128)  # fit on train, reused for dev


def test_block_histograms_partition_the_whole_image_counts(tmp_path):
    out = _run(tmp_path, 'c', _lists(tmp_path), norm='none')
    whole, blocks = np.load(out / 'g/train_bovws.npy'), np.load(out / 'l/train_bovws.npy')
    assert whole.sum() > 100  # real photos give plenty of SIFT keypoints
    assert np.array_equal(blocks.sum(1), whole)


def test_missing_imagenet_weights_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match='alexnet-owt-7be5be79.pth and pass --cnn_weights'):
        extract_features.main(['--image_dir', IMAGES, '--list_dir', _lists(tmp_path)])
    with pytest.raises(InputError, match='--cnn_weights file not found: nope.pth'):
        extract_features.main(['--image_dir', IMAGES, '--list_dir', _lists(tmp_path), '--cnn_weights', 'nope.pth'])


def test_grid_boxes_cover_the_image_row_major():
    boxes = grid_boxes(10, 7)
    assert boxes[0] == (0, 0, 3, 2) and boxes[2] == (7, 0, 10, 2) and boxes[8] == (7, 5, 10, 7)
    assert sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in boxes) == 70
