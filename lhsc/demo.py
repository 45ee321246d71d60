"""End-to-end demo on CPU: make a tiny learnable precomp dataset, train LHSC a few epochs with the
original train.py (small dims through its own flags), evaluate with evaluation.py, draw a retrieval
gallery with predict.py, and write <out_dir>/summary.json (its rows link the gallery).

    python lhsc/demo.py --out_dir /tmp/lhsc_demo
"""
import os
import sys

if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import json
import shlex
import time
from math import comb

from common.atomic import atomic_open
from common.demo import run_step
from common.errors import cli_main

HERE = os.path.dirname(os.path.abspath(__file__))


def random_rsum(n_images, per_image=5):
    """Expected rsum of a random score matrix (n_images x per_image*n_images captions)."""
    n_caps = per_image * n_images
    total = 0.0
    for k in (1, 5, 10):
        total += 100.0 * (1 - comb(n_caps - per_image, k) / comb(n_caps, k))   # i2t: any of 5 in top k
        total += 100.0 * min(k, n_images) / n_images                           # t2i: 1 image in top k
    return total


def run(cmd, cwd):
    return run_step(cmd, cwd).wall_s


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out_dir', required=True)
    parser.add_argument('--num_epochs', default=3, type=int)
    args = parser.parse_args(argv)
    out = os.path.abspath(args.out_dir)
    os.makedirs(out, exist_ok=True)
    py = sys.executable
    started = time.time()

    run([py, os.path.join(HERE, 'make_demo_data.py'), '--out_dir', 'data', '--img_dim', '32',
         '--n_train', '200', '--n_dev', '100', '--n_test', '100'], out)
    # small dims through the original flags; --max_violation is store_false: passing it switches
    # to the summed hinge loss, which escapes the early plateau of hardest negatives much faster
    train_cmd = [py, os.path.join(HERE, 'train.py'), '--data_path', 'data', '--data_name', 'f30k_precomp',
                 '--vocab_path', os.path.join(HERE, 'vocab'), '--model_name', 'runs/LHSC/checkpoint',
                 '--logger_name', 'runs/LHSC/log', '--img_dim', '32', '--word_dim', '32',
                 '--embed_size', '32', '--sim_dim', '16', '--batch_size', '40',
                 '--num_epochs', str(args.num_epochs), '--lr_update', '100', '--learning_rate', '2e-3',
                 '--max_violation', '--log_step', '10', '--device', 'cpu', '--seed', '0']
    train_s = run(train_cmd, out)
    eval_cmd = [py, os.path.join(HERE, 'evaluation.py'), '--model_path', 'runs/LHSC/checkpoint/model_best.pth.tar',
                '--data_path', 'data', '--split', 'test', '--device', 'cpu',
                '--out_json', 'eval_test.json', '--out_scores', 'sims_test.npy']
    eval_s = run(eval_cmd, out)
    # text query -> top-5 images (pictures from the demo data's id_mapping.json), image -> captions
    run([py, os.path.join(HERE, 'predict.py'), '--checkpoint', 'runs/LHSC/checkpoint/model_best.pth.tar',
         '--data_path', 'data', '--split', 'test', '--device', 'cpu', '--top_k', '5',
         '--query', 'a dog with a ball near the beach', '--image_index', '0', '--image_index', '1',
         '--gallery', 'gallery'], out)
    links = {'gallery': 'gallery/gallery.html', 'gallery_png': 'gallery/gallery.png'}

    with open(os.path.join(out, 'eval_test.json')) as f:
        metrics = json.load(f)
    baseline = random_rsum(metrics['n_images'])
    print('test rsum %.1f  (random scores: expected rsum %.1f)' % (metrics['rsum'], baseline))
    command = 'cd %s && ' % out + ' '.join(shlex.quote(c) for c in eval_cmd)
    eval_row = lambda metric, value, baseline: {'paper': 'lhsc', 'command': command, 'metric': metric,
                                                'value': value, 'baseline': baseline, 'wall_s': round(eval_s, 2)}
    rows = [
        dict(eval_row('rsum (test, %d images)' % metrics['n_images'], metrics['rsum'], baseline), links=links),
        eval_row('i2t R@1', metrics['i2t']['r1'], 100.0 / metrics['n_images']),
        eval_row('t2i R@1', metrics['t2i']['r1'], 100.0 / metrics['n_images']),
        {'paper': 'lhsc', 'command': ' '.join(shlex.quote(c) for c in train_cmd), 'metric': 'train wall_s',
         'value': round(train_s, 2), 'baseline': None, 'wall_s': round(train_s, 2)},
    ]
    with atomic_open(os.path.join(out, 'summary.json'), 'w') as f:
        json.dump(rows, f, indent=2)
    print('demo finished in %.1f s; summary: %s' % (time.time() - started, os.path.join(out, 'summary.json')))
    if metrics['rsum'] <= 2 * baseline:
        raise SystemExit('demo: rsum %.1f is not clearly above the random value %.1f' % (metrics['rsum'], baseline))
    return rows


if __name__ == "__main__":
    cli_main(main)
