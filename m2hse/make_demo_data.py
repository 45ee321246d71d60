"""Make a small, learnable synthetic feature set aligned with the real Corel5K captions and vocabulary.

The real image features were never published. This writes the exact layout the loaders read, for
both levels, with class-dependent features so that training has something to learn:
    OUT/data/coarse-grained-data/corel5k_precomp/{train,dev,test}_{caps.txt,cnns.npy,bovws.npy,labels.npy}
    OUT/data/fine-grained-data/corel5k_precomp/...   (same captions, (N, 9, D) features)
    OUT/vocab/corel5k_precomp_vocab.json             (the real vocabulary)
The class of an image is derived from its first tag (vocab id mod --n_classes); features are a
class prototype plus noise (CNN: non-negative like fc7; BoVW: Poisson word counts).
The test split is the dev split, as in Corel5K where upstream's dev and test are the same 499 images.
Each split folder also gets `{split}_images.txt` (the image-name list predict.py reads) naming one of
the stand-in photos of demo_images/ per class, copied to `images/`, so predict.py --gallery shows pictures.
"""
import os, sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import shutil

import numpy as np

from common.errors import cli_main
from common.safeio import check_writable_dir, save_npy_atomic, write_text_atomic

HERE = os.path.dirname(os.path.abspath(__file__))
DATA_NAME = 'corel5k_precomp'
N_REGIONS = 9  # as data_provider.N_REGIONS (not imported: it pulls in torch, and --help must be fast)
PHOTOS = os.path.join(HERE, 'demo_images')


def caption_labels(captions, vocab, n_classes):
    """Class id of each caption: vocab id of its first tag, modulo n_classes."""
    from common.text import tokenize  # nltk: imported on use so that --help answers at once
    return np.array([vocab(tokenize(c)[0]) % n_classes if tokenize(c) else 0 for c in captions], dtype=np.int64)


def make_features(labels, dim, rng, regions, kind, prototypes):
    """(N, dim) or (N, 9, dim) float32 features around the class prototypes."""
    n = len(labels)
    shape = (n, N_REGIONS, dim) if regions else (n, dim)
    base = prototypes[labels]
    if regions:
        region_shift = rng.gamma(1.0, 0.5, size=(N_REGIONS, dim)).astype(np.float32)
        base = base[:, None, :] * (0.5 + region_shift[None])
    if kind == 'cnn':
        return np.maximum(base + rng.normal(0, 1.0, size=shape), 0).astype(np.float32)
    return rng.poisson(base).astype(np.float32)


def photo_names():
    return sorted(n for n in os.listdir(PHOTOS) if n.endswith('.jpg'))


def write_image_list(folder, split, labels):
    """`{split}_images.txt`: one stand-in photo per class (copied to images/), one line per item."""
    photos = photo_names()
    os.makedirs(os.path.join(folder, 'images'), exist_ok=True)
    for name in photos:
        shutil.copyfile(os.path.join(PHOTOS, name), os.path.join(folder, 'images', name))
    write_text_atomic(os.path.join(folder, '%s_images.txt' % split),
                      ''.join('images/%s\n' % photos[int(label) % len(photos)] for label in labels))


def write_split(folder, split, captions, labels, level, dims, rng, prototypes):
    regions = level == 'local'
    write_text_atomic(os.path.join(folder, '%s_caps.txt' % split), '\n'.join(captions))
    save_npy_atomic(os.path.join(folder, '%s_cnns.npy' % split),
                    make_features(labels, dims['cnn'], rng, regions, 'cnn', prototypes['cnn']))
    save_npy_atomic(os.path.join(folder, '%s_bovws.npy' % split),
                    make_features(labels, dims['bovw'], rng, regions, 'bovw', prototypes['bovw']))
    save_npy_atomic(os.path.join(folder, '%s_labels.npy' % split), labels.reshape(-1, 1))
    write_image_list(folder, split, labels)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out_dir', required=True)
    parser.add_argument('--captions_dir', default=os.path.join(HERE, 'data', 'coarse-grained-data', DATA_NAME),
                        help='folder with the real train_caps.txt and dev_caps.txt')
    parser.add_argument('--vocab_file', default=os.path.join(HERE, 'vocab', DATA_NAME + '_vocab.json'))
    parser.add_argument('--n_train', type=int, default=800, help='first N train captions (4493 max)')
    parser.add_argument('--n_dev', type=int, default=200, help='first N dev captions (499 max)')
    parser.add_argument('--n_classes', type=int, default=8)
    parser.add_argument('--cnn_dim', type=int, default=4096)
    parser.add_argument('--bovw_dim', type=int, default=500)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    from common.vocab import deserialize_vocab  # nltk: imported after parsing so that --help is fast
    from m2hse.data_provider import read_captions  # torch, likewise
    check_writable_dir(args.out_dir, '--out_dir')

    vocab = deserialize_vocab(args.vocab_file)
    train_caps = read_captions(os.path.join(args.captions_dir, 'train_caps.txt'))[:args.n_train]
    dev_caps = read_captions(os.path.join(args.captions_dir, 'dev_caps.txt'))[:args.n_dev]
    rng = np.random.RandomState(args.seed)
    dims = {'cnn': args.cnn_dim, 'bovw': args.bovw_dim}
    prototypes = {
        'cnn': (rng.rand(args.n_classes, args.cnn_dim) < 0.2) * rng.gamma(2.0, 1.0, (args.n_classes, args.cnn_dim)),
        'bovw': rng.gamma(0.3, 2.0, (args.n_classes, args.bovw_dim)),
    }
    splits = {'train': train_caps, 'dev': dev_caps, 'test': dev_caps}
    for grain, level in (('coarse', 'global'), ('fine', 'local')):
        folder = os.path.join(args.out_dir, 'data', '%s-grained-data' % grain, DATA_NAME)
        os.makedirs(folder, exist_ok=True)
        for split, caps in splits.items():
            write_split(folder, split, caps, caption_labels(caps, vocab, args.n_classes), level, dims,
                        rng, prototypes)
    os.makedirs(os.path.join(args.out_dir, 'vocab'), exist_ok=True)
    shutil.copyfile(args.vocab_file, os.path.join(args.out_dir, 'vocab', DATA_NAME + '_vocab.json'))
    counts = np.bincount(caption_labels(train_caps, vocab, args.n_classes), minlength=args.n_classes)
    print('wrote %d train / %d dev / %d test items (%d classes, train class sizes %s) under %s'
          % (len(train_caps), len(dev_caps), len(dev_caps), args.n_classes, counts.tolist(), args.out_dir))


if __name__ == '__main__':
    cli_main(main)
