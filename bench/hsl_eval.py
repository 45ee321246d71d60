"""Benchmark HSL evaluation: queries/s of hsl.evaluation_fast.evaluate (each product encoded once
per chunk of queries) vs hsl.evaluation.evaluate (upstream's loop: every query re-encodes its
whole pool, batches of 4 queries), same model and data; checks the scores and nDCG agree.

    python bench/hsl_eval.py [--queries 60] [--products 600] [--pool 30] [--threads 1]

Model: README config (--glove --no_txtnorm --score_agg mean), default widths (d_model 512,
embed 1024), random weights; data: a synthetic parsed valid split (2048-d box features).
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common.vocab import Vocabulary  # noqa: E402
from hsl import parser  # noqa: E402
from hsl import evaluation, evaluation_fast  # noqa: E402
from hsl.data import EvalDataset, eval_loader  # noqa: E402
from hsl.model import HSL  # noqa: E402
from hsl.records import Product, Query, save_records  # noqa: E402

WORDS = ['red', 'dress', 'women', 'summer', 'shoes', 'leather', 'bag', 'phone', 'case', 'lamp']


def write_split(folder, n_queries, n_products, pool, rng):
    os.makedirs(folder)
    nboxes = rng.integers(1, 11, n_products)
    feats = rng.random((int(nboxes.sum()), 2048), dtype=np.float32)
    np.save(os.path.join(folder, 'valid.features.npy'), feats)
    pids = np.arange(1000, 1000 + n_products)
    with open(os.path.join(folder, 'valid.ids.txt'), 'w') as f:
        f.writelines('%d\n' % p for p in pids)
    sizes = rng.uniform(10, 100, (int(nboxes.sum()), 1)).astype(np.float32)
    boxes = np.concatenate([np.zeros_like(sizes), np.zeros_like(sizes), sizes, sizes], axis=1)
    save_records(Product(pids, nboxes, boxes, np.zeros(len(boxes), np.int64), nboxes * 0 + 800, nboxes * 0 + 800),
         os.path.join(folder, 'valid.products.pkl'))
    texts = [' '.join(rng.choice(WORDS, 3)) for _ in range(n_queries)]
    pools = [rng.choice(pids, pool, replace=False) for _ in range(n_queries)]
    offsets = np.concatenate([[0], np.cumsum([pool] * n_queries)])
    save_records(Query('valid', texts, np.arange(n_queries), np.concatenate(pools), [str(i) for i in range(n_queries)],
               offsets), os.path.join(folder, 'valid.queries.pkl'))
    return {str(i): [int(p[0])] for i, p in enumerate(pools)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--queries', type=int, default=60)
    ap.add_argument('--products', type=int, default=600)
    ap.add_argument('--pool', type=int, default=30)
    ap.add_argument('--threads', type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    tmp = tempfile.mkdtemp(prefix='hsl_bench_eval_')
    try:
        answer = write_split(os.path.join(tmp, 'KDDCup2020', 'valid'), args.queries, args.products,
                             args.pool, rng)
        vocab = Vocabulary()
        for w in ['<pad>', '<start>', '<end>', '<unk>'] + WORDS:
            vocab.add_word(w)
        opt = parser.get_parser(['--data_path', tmp, '--glove', '--no_txtnorm', '--score_agg', 'mean',
                                 '--num_workers', '0', '--device', 'cpu'])
        opt.vocab_size, opt.we_parameter = len(vocab), rng.uniform(-0.1, 0.1, (len(vocab), 300))
        torch.manual_seed(0)
        model = HSL(opt)
        val_set = EvalDataset(opt, vocab, 'valid')
        quiet = lambda *a: None  # noqa: E731
        t0 = time.time()
        fast = evaluation_fast.evaluate(model, eval_loader(val_set), answer, logging=quiet,
                                        show_progress=False)
        t_fast = time.time() - t0
        t0 = time.time()
        naive = evaluation.evaluate(model, eval_loader(val_set), answer, logging=quiet, show_progress=False)
        t_naive = time.time() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    diff = max(float(np.abs(fast.scores[q] - naive.scores[q]).max()) for q in fast.scores)
    print('\n%d queries x %d candidates, %d distinct products, torch threads %d'
          % (args.queries, args.pool, args.products, args.threads))
    print('%-40s %9s %10s %14s' % ('method', 'wall s', 'queries/s', 'nDCG'))
    print('%-40s %9.2f %10.2f %14.10f' % ('naive per-query loop (upstream)', t_naive, args.queries / t_naive, naive.nDCG))
    print('%-40s %9.2f %10.2f %14.10f' % ('port evaluate (products encoded once)', t_fast, args.queries / t_fast, fast.nDCG))
    print('speed-up %.2fx; max |score difference| %.2e; same nDCG: %s'
          % (t_naive / t_fast, diff, fast.nDCG == naive.nDCG))


if __name__ == '__main__':
    main()
