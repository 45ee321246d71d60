"""Write a small, learnable SCAN-style precomp dataset for the demo and the tests.

    python make_demo_data.py --out_dir demo_data [--img_dim 32 --n_train 300 --n_dev 100 --n_test 100]

Each image shows 3 "concepts" (real Flickr30K vocabulary words); its 36 region features are noisy
copies of the concepts' random prototype vectors (non-negative, like bottom-up features), and its 5
captions name the concepts with filler words. Layout: <out_dir>/<data_name>/{train,dev,test}_ims.npy
(N, 36, img_dim) float32 and *_caps.txt (5N lines), plus id_mapping.json ({split: [picture file]})
and images/ with a few small real photos (copied from the repository's avas/data/images_test), so
predict.py's gallery shows pictures. The photos are stand-ins: they do not show the concepts.
"""
import os
import sys

if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import glob
import shutil

import numpy as np

from common.atomic import atomic_open
from common.errors import cli_main
from common.safeio import check_writable_dir, write_json_atomic
from common.vocab import deserialize_vocab

HERE = os.path.dirname(os.path.abspath(__file__))
N_PHOTOS = 8
PHOTOS = os.path.join(os.path.dirname(HERE), 'avas', 'data', 'images_test')  # small real photos
CONCEPTS = ['dog', 'cat', 'horse', 'bicycle', 'car', 'boat', 'tree', 'beach', 'snow', 'guitar',
            'ball', 'bench', 'bridge', 'building', 'child', 'woman', 'man', 'girl', 'boy', 'bird',
            'flowers', 'mountain', 'river', 'street', 'table', 'umbrella', 'train', 'hat', 'kite', 'fountain']
TEMPLATES = ['a {0} with a {1} near the {2}', 'the {1} and a {0} by a {2}', 'a {2} behind a {0} and a {1}',
             'there is a {0} , a {1} and a {2}', 'a {1} next to the {2} and a {0}']


def make_split(rng, prototypes, n_images, img_dim):
    n_concepts = len(CONCEPTS)
    images = np.empty((n_images, 36, img_dim), dtype=np.float32)
    captions = []
    for i in range(n_images):
        chosen = rng.choice(n_concepts, 3, replace=False)
        for r in range(36):
            if r < 30:
                base = prototypes[chosen[r % 3]]
            else:
                base = prototypes[rng.randint(n_concepts)] * 0.3  # background clutter
            images[i, r] = np.maximum(base + 0.3 * rng.randn(img_dim), 0)
        words = [CONCEPTS[c] for c in chosen]
        for k in range(5):
            order = rng.permutation(3)
            captions.append(TEMPLATES[k].format(*[words[o] for o in order]))
    return images, captions


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out_dir', required=True, help='data root (use it as --data_path)')
    parser.add_argument('--data_name', default='f30k_precomp')
    parser.add_argument('--vocab_path', default=os.path.join(HERE, 'vocab'),
                        help='folder with <data_name>_vocab.json: concepts must be in it')
    parser.add_argument('--img_dim', default=32, type=int)
    parser.add_argument('--n_train', default=300, type=int)
    parser.add_argument('--n_dev', default=100, type=int)
    parser.add_argument('--n_test', default=100, type=int)
    parser.add_argument('--seed', default=0, type=int)
    parser.add_argument('--photos', default=PHOTOS,
                        help='folder of .jpg photos copied in as the pictures of the mapping ("" = none)')
    args = parser.parse_args(argv)
    check_writable_dir(args.out_dir, 'data folder (--out_dir)')

    vocab = deserialize_vocab(os.path.join(args.vocab_path, '%s_vocab.json' % args.data_name))
    missing = [w for w in CONCEPTS if w not in vocab.word2idx]
    if missing:
        raise SystemExit('concept words missing from the vocabulary: %s' % ', '.join(missing))
    rng = np.random.RandomState(args.seed)
    prototypes = np.abs(rng.randn(len(CONCEPTS), args.img_dim)) * (rng.rand(len(CONCEPTS), args.img_dim) < 0.4)
    folder = os.path.join(args.out_dir, args.data_name)
    os.makedirs(folder, exist_ok=True)
    for split, n in (('train', args.n_train), ('dev', args.n_dev), ('test', args.n_test)):
        images, captions = make_split(rng, prototypes, n, args.img_dim)
        with atomic_open(os.path.join(folder, '%s_ims.npy' % split), 'wb') as f:
            np.save(f, images)
        with atomic_open(os.path.join(folder, '%s_caps.txt' % split), 'w') as f:
            f.write('\n'.join(captions) + '\n')
        print('wrote %s: %d images, %d captions' % (split, n, len(captions)))
    write_mapping(folder, args.photos, {'train': args.n_train, 'dev': args.n_dev, 'test': args.n_test})
    return folder


def write_mapping(folder, photos, sizes):
    """id_mapping.json naming a picture for every image (photos reused in turn) and the photos."""
    files = sorted(glob.glob(os.path.join(photos, '*.jpg'))) if photos else []
    files = sorted(sorted(files, key=os.path.getsize)[:N_PHOTOS])  # the smallest few: ~0.5 MB in all
    if not files:
        return None
    os.makedirs(os.path.join(folder, 'images'), exist_ok=True)
    for path in files:
        target = os.path.join(folder, 'images', os.path.basename(path))
        if not os.path.exists(target):
            shutil.copyfile(path, target)
    names = ['images/' + os.path.basename(path) for path in files]
    mapping = {split: [names[i % len(names)] for i in range(n)] for split, n in sizes.items()}
    write_json_atomic(os.path.join(folder, 'id_mapping.json'), mapping)
    print('wrote id_mapping.json (%d photos)' % len(files))
    return mapping


if __name__ == "__main__":
    cli_main(main)
