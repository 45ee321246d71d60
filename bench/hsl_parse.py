"""Benchmark hsl/parse_dataset.py: throughput (MB/s) and peak RSS on generated competition-format
TSVs of two sizes (peak RSS must not grow with the file), against a naive whole-file pandas read
(upstream's test.py style: pd.read_csv(sep='\\t', quoting=QUOTE_NONE) + base64 decode).

    python bench/hsl_parse.py [--sizes_mb 100 500] [--naive_mb 100 500] [--workdir /tmp/hsl_bench_parse]

The generated files are deleted afterwards.
"""
import argparse
import base64
import os
import shutil
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from hsl.records import COLUMNS  # noqa: E402

NAIVE = r'''
import base64, csv, sys, time
import numpy as np, pandas as pd
start = time.time()
df = pd.read_csv(sys.argv[1], sep='\t', quoting=csv.QUOTE_NONE)
feats = [np.frombuffer(base64.b64decode(s), np.float32).reshape(n, 2048)
         for s, n in zip(df['features'], df['num_boxes'])]
np.save(sys.argv[2], np.concatenate(feats))
print('naive (%.1f s, parse MB/s)' % (time.time() - start))
'''


def generate(path, size_mb, boxes=10, blobs=40, seed=0):
    """Rows of `boxes` boxes; a few precomputed feature blobs, distinct product ids (cheap)."""
    rng = np.random.default_rng(seed)
    feats = [base64.b64encode(rng.random((boxes, 2048), dtype=np.float32).tobytes()).decode() for _ in range(blobs)]
    box = base64.b64encode(np.tile(np.array([0, 0, 50, 60], np.float32), (boxes, 1)).tobytes()).decode()
    labels = base64.b64encode(np.arange(boxes, dtype=np.int64).tobytes()).decode()
    words = ['red', 'dress', 'women', 'summer', 'shoes', 'leather', 'bag', 'phone', 'case', 'lamp']
    target, written, i = size_mb * 1e6, 0, 0
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write('\t'.join(COLUMNS) + '\n')
        while written < target:
            query = ' '.join(words[(i * k) % len(words)] for k in (1, 3, 7))
            line = '\t'.join([str(100000 + i), '800', '800', str(boxes), box, feats[i % blobs], labels,
                              query, str(i)]) + '\n'
            f.write(line)
            written += len(line)
            i += 1
    return i


def measure(cmd):
    """Wall time and peak RSS (MiB) of a command run in a fresh child process."""
    probe = ('import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]).returncode; '
             'print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r)')
    start = time.time()
    out = subprocess.run([sys.executable, '-c', probe, sys.executable] + cmd, capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS='1'))
    wall = time.time() - start
    rss_kb, code = out.stdout.split()[-2:]
    if code != '0':
        raise SystemExit('command failed: %s\n%s' % (' '.join(cmd), out.stderr[-2000:]))
    inner = [line for line in out.stdout.splitlines() if ' s, ' in line and 'MB/s' in line]
    parse_s = float(inner[0].rsplit('(', 1)[1].split(' s,')[0]) if inner else wall
    return wall, parse_s, int(rss_kb) / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes_mb', nargs='+', type=int, default=[100, 500])
    parser.add_argument('--naive_mb', nargs='*', type=int, default=[100, 500],
                        help='sizes that also run the pandas baseline')
    parser.add_argument('--workdir', default='/tmp/hsl_bench_parse')
    opt = parser.parse_args()
    rows = []
    try:
        for size in opt.sizes_mb:
            root = os.path.join(opt.workdir, 'mb%d' % size)
            tsv = os.path.join(root, 'KDDCup2020', 'train', 'train.tsv')
            t0 = time.time()
            n = generate(tsv, size)
            gen = time.time() - t0
            mb = os.path.getsize(tsv) / 1e6
            wall, parse_s, rss = measure([os.path.join(REPO, 'hsl', 'parse_dataset.py'), '--data_path', root,
                                          '--splits', 'train', '--no_progress', '--vocab_threshold', '1'])
            rows.append(('port parse_dataset.py', mb, n, wall, mb / parse_s, rss, gen))
            if size in opt.naive_mb:
                wall, parse_s, rss = measure_naive(tsv, os.path.join(root, 'naive.npy'))
                rows.append(('naive pandas whole-file', mb, n, wall, mb / wall, rss, gen))
            shutil.rmtree(root)
    finally:
        shutil.rmtree(opt.workdir, ignore_errors=True)
    print('\nMB/s: parsing only (the port times its own streaming loop; the process start, ~5 s of')
    print('importing torch via common, is in "wall s"). Peak RSS includes ~500 MiB for importing torch.')
    print('%-26s %9s %7s %8s %8s %13s' % ('method', 'TSV MB', 'rows', 'wall s', 'MB/s', 'peak RSS MiB'))
    for name, mb, n, wall, rate, rss, _ in rows:
        print('%-26s %9.0f %7d %8.1f %8.1f %13.0f' % (name, mb, n, wall, rate, rss))
    port = [r for r in rows if r[0].startswith('port')]
    naive = [r for r in rows if r[0].startswith('naive')]
    if len(port) >= 2:
        print('\nport peak RSS, largest / smallest file: %.2fx for a %.1fx larger file'
              % (port[-1][5] / port[0][5], port[-1][1] / port[0][1]))
    for nv in naive:
        same = [r for r in port if abs(r[1] - nv[1]) < 1]
        if same:
            print('naive / port at %.0f MB: peak RSS %.2fx, parse MB/s %.2fx'
                  % (nv[1], nv[5] / same[0][5], nv[4] / same[0][4]))


def measure_naive(tsv, out):
    script = os.path.join(os.path.dirname(out), 'naive_parse.py')
    with open(script, 'w') as f:
        f.write(NAIVE)
    return measure([script, tsv, out])


if __name__ == '__main__':
    main()
