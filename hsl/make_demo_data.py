"""Write a small, learnable synthetic dataset in the exact KDD Cup 2020 competition format.

Each product shows one main object (its colour + item) and a few smaller distractor boxes; a box
feature is the sum of its concepts' random prototype vectors plus noise. Queries name the main
object ("red dress for women"), so the words relate to the box features. Layout (as upstream):
  OUT/KDDCup2020/train/train.tsv, OUT/KDDCup2020/valid/valid.tsv,
  OUT/kddcup/valid/valid_answer.json, OUT/glove_model.bin (tiny word2vec-binary, 300-d)
"""
import os
import sys

if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import base64

import numpy as np

from common.atomic import atomic_open
from common.errors import cli_main
from common.safeio import write_json_atomic
from hsl.records import COLUMNS

COLOURS = ['red', 'blue', 'green', 'black', 'white', 'pink', 'yellow', 'grey']
ITEMS = ['dress', 'shoes', 'bag', 'watch', 'hat', 'shirt', 'lamp', 'phone', 'cup', 'sofa']
FILLERS = ['', '', 'for women', 'for men', 'new', 'summer', 'cheap', 'fashion']


def b64(array):
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode('ascii')


class World(object):
    def __init__(self, rng, feature_dim):
        self.rng, self.dim = rng, feature_dim
        self.proto = {w: rng.normal(0, 1, feature_dim).astype(np.float32) for w in COLOURS + ITEMS}

    def product(self, colour, item):
        """(boxes, features, labels): main box first-largest, distractors smaller."""
        n = int(self.rng.integers(1, 5))
        boxes, feats, labels = [], [], []
        for b in range(n):
            if b == 0:
                c, it, size = colour, item, self.rng.uniform(200, 300)
            else:
                c, it = self.rng.choice(COLOURS), self.rng.choice(ITEMS)
                size = self.rng.uniform(20, 120)
            top, left = self.rng.uniform(0, 200, 2)
            boxes.append([top, left, top + size, left + size * self.rng.uniform(0.7, 1.3)])
            feat = self.proto[c] + self.proto[it] + self.rng.normal(0, 0.5, self.dim)
            feats.append(np.maximum(feat, 0))  # ReLU-like detector features
            labels.append(ITEMS.index(it))
        order = self.rng.permutation(n)  # box order in the file is arbitrary
        return (np.array(boxes, np.float32)[order], np.array(feats, np.float32)[order],
                np.array(labels, np.int64)[order])


def query_text(rng, colour, item):
    filler = FILLERS[rng.integers(len(FILLERS))]
    return ' '.join(w for w in (colour, item, filler) if w)


def row(pid, product, query, qid):
    boxes, feats, labels = product
    return '\t'.join([str(pid), '800', '800', str(len(boxes)), b64(boxes), b64(feats), b64(labels),
                      query, str(qid)]) + '\n'


def write_tsv(path, rows):
    with atomic_open(path, 'w') as f:
        f.write('\t'.join(COLUMNS) + '\n')
        f.writelines(rows)


def write_glove(path, rng):
    from gensim.models import KeyedVectors  # here: gensim takes seconds to import (fast --help)
    words = COLOURS + ITEMS + [w for f in FILLERS for w in f.split()] + ['<unk>']
    words = list(dict.fromkeys(words))
    kv = KeyedVectors(vector_size=300)
    kv.add_vectors(words, rng.normal(0, 0.3, (len(words), 300)).astype(np.float32))
    kv.save_word2vec_format(path, binary=True)


def make(out_dir, seed=0, train_rows=800, valid_queries=40, pool=10, feature_dim=2048):
    rng = np.random.default_rng(seed)
    world = World(rng, feature_dim)
    concepts = [(c, i) for c in COLOURS for i in ITEMS]

    # train: 300 products, rows pair each with a query naming its main object
    products = {}
    for pid in range(1000, 1300):
        c, i = concepts[rng.integers(len(concepts))]
        products[pid] = (c, i, world.product(c, i))
    rows, qid = [], 1
    pids = list(products)
    for _ in range(train_rows):
        pid = pids[rng.integers(len(pids))]
        c, i, prod = products[pid]
        rows.append(row(pid, prod, query_text(rng, c, i), qid))
        qid += 1
    write_tsv(os.path.join(out_dir, 'KDDCup2020', 'train', 'train.tsv'), rows)

    # valid: new products; each query's pool has 1-2 matches and same-item/other distractors
    valid_rows, answer, next_pid = [], {}, 5000
    for q in range(valid_queries):
        c, i = concepts[rng.integers(len(concepts))]
        text = query_text(rng, c, i)
        qid = 90000 + q
        n_pos = int(rng.integers(1, 3))
        cand = []
        for k in range(pool):
            if k < n_pos:
                cc, ii = c, i
            elif k < n_pos + 3:
                cc, ii = rng.choice([x for x in COLOURS if x != c]), i  # hard: same item
            else:
                cc, ii = concepts[rng.integers(len(concepts))]
                if (cc, ii) == (c, i):
                    cc = rng.choice([x for x in COLOURS if x != c])
            cand.append((next_pid, cc, ii))
            next_pid += 1
        answer[str(qid)] = [p for p, cc, ii in cand[:n_pos]]
        for k in rng.permutation(pool):
            p, cc, ii = cand[k]
            valid_rows.append(row(p, world.product(cc, ii), text, qid))
    write_tsv(os.path.join(out_dir, 'KDDCup2020', 'valid', 'valid.tsv'), valid_rows)
    answer_path = os.path.join(out_dir, 'kddcup', 'valid', 'valid_answer.json')
    write_json_atomic(answer_path, answer, indent=None)
    write_glove(os.path.join(out_dir, 'glove_model.bin'), rng)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out_dir', default='../data', help='data root (main.py --data_path)')
    parser.add_argument('--seed', default=0, type=int)
    parser.add_argument('--train_rows', default=800, type=int)
    parser.add_argument('--valid_queries', default=40, type=int)
    parser.add_argument('--pool', default=10, type=int, help='candidates per valid query')
    parser.add_argument('--feature_dim', default=2048, type=int)
    opt = parser.parse_args(argv)
    make(opt.out_dir, opt.seed, opt.train_rows, opt.valid_queries, opt.pool, opt.feature_dim)
    print('=> demo data written under %s' % opt.out_dir)


if __name__ == '__main__':
    cli_main(main)
