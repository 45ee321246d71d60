"""Benchmark of one LHSC / SGRAF training step: the port (lhsc/fasttrain.py) against upstream's loop.

    python bench/lhsc_train.py [--batch_size 128 --head LHSC --threads 2 --rounds 1 --warmup 1]

"Upstream" is a faithful copy of upstream's training step: the same weights, IM_GCN as upstream's
Conv1d calls (upstream libs/img_gcn.py; the port's block runs the same ops, this copy keeps the
baseline independent of it), and the similarity head as upstream's per-caption loop (EncoderSimilarity.forward in lhsc/model.py, upstream
model.py:279-318: each caption at its own length, repeated against all images, SCAN_attention with
its transposed copies), run through the wrapper with `reference=True`. Each step runs in its own
subprocess (random batch, seed 0, dropout off so the losses can be compared), which runs `--warmup`
untimed steps (first-call set-up) and then one timed step on the same batch, and reports that
step's wall and CPU seconds (CPU time is what to compare on a shared, time-sliced machine), the
first step's loss (equal weights: comparable exactly) and the peak resident memory (getrusage); methods alternate round by
round, so the machine's slow drifts hit both alike. Default sizes are upstream's defaults
(batch 128, 36 x 2048 regions, word_dim 300, E 1024, S 256) with captions of 7-17 words (mean 12).
The last line reads: speedup <ratio>x (wall) <ratio>x (CPU time) memory <ratio>x max|dloss| <value>
"""
import os
import sys

if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import json
import resource
import subprocess
import time

import numpy as np
import torch

from lhsc.libs.img_gcn import IM_GCN
from lhsc.model import build_model
from lhsc.opts import build_parser

def upstream_im_gcn(block):
    """Upstream IM_GCN.forward (libs/img_gcn.py) on the port's block: its op order, one Conv1d per head."""
    def forward(v):
        batch, quarter = v.size(0), block.inter_channels // 4
        g_v = block.g(v).view(batch, block.inter_channels, -1).permute(0, 2, 1)
        a = torch.cat([c(v).view(batch, quarter, -1) for c in (block.theta, block.theta1, block.theta2, block.theta3)], 1)
        a = block.fc1(a.permute(0, 2, 1))
        b = torch.cat([c(v).view(batch, quarter, -1) for c in (block.phi, block.phi1, block.phi2, block.phi3)], 1)
        b = block.fc2(b.permute(0, 2, 1)).permute(0, 2, 1)
        relation = torch.matmul(a, b)
        y = torch.matmul(relation / relation.size(-1), g_v).permute(0, 2, 1).contiguous()
        return block.W(y.view(batch, block.inter_channels, *v.size()[2:])) + v
    return forward


METHODS = {'upstream': 'upstream loop (faithful copy)', 'port': 'port (lhsc/fasttrain.py)'}


def worker(args):
    """One training step in this process; prints a JSON line."""
    torch.set_num_threads(args.threads)
    opt = build_parser().parse_args([])
    opt.img_dim, opt.word_dim, opt.embed_size, opt.sim_dim = args.img_dim, args.word_dim, args.embed_size, args.sim_dim
    opt.vocab_size = 8481
    opt.model, opt.module_name = ('LHSC', 'SAF') if args.head == 'LHSC' else ('SGRAF', args.head)
    torch.manual_seed(0)
    model = build_model(opt, reference=args.worker == 'upstream')
    if args.worker == 'upstream':
        for m in model.img_enc.modules():
            if isinstance(m, IM_GCN):
                m.forward = upstream_im_gcn(m)
    for enc in (model.img_enc, model.txt_enc, model.sim_enc):
        for m in enc.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
    rng = np.random.RandomState(0)
    images = torch.from_numpy(rng.gamma(0.6, 1.0, size=(args.batch_size, 36, args.img_dim)).astype(np.float32))
    lengths = sorted((int(n) for n in rng.randint(7, 18, size=args.batch_size)), reverse=True)
    captions = torch.zeros(args.batch_size, lengths[0], dtype=torch.int64)
    for j, n in enumerate(lengths):
        captions[j, :n] = torch.from_numpy(rng.randint(4, opt.vocab_size, size=n))
    model.train_start()
    losses = []
    for _ in range(args.warmup + 1):  # the last step is timed: steady state, as in a long training run
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        losses.append(float(model.train_emb(images, captions, lengths)))
        seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    print(json.dumps({'seconds': seconds, 'cpu_seconds': cpu, 'loss': losses[0], 'last_loss': losses[-1],
                      'peak_gib': after.ru_maxrss / 2 ** 20}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batch_size', default=128, type=int)
    parser.add_argument('--img_dim', default=2048, type=int)
    parser.add_argument('--word_dim', default=300, type=int)
    parser.add_argument('--embed_size', default=1024, type=int)
    parser.add_argument('--sim_dim', default=256, type=int)
    parser.add_argument('--head', default='LHSC', choices=['LHSC', 'SAF', 'SGR'])
    parser.add_argument('--threads', default=2, type=int)
    parser.add_argument('--rounds', default=1, type=int, help='alternating rounds (best of each)')
    parser.add_argument('--warmup', default=1, type=int,
                        help='untimed steps first (first-call set-up: allocator, oneDNN primitives)')
    parser.add_argument('--worker', choices=sorted(METHODS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    cmd = [sys.executable, os.path.abspath(__file__)] + [a for a in (argv if argv is not None else sys.argv[1:])]
    print('%s training step: batch %d, regions 36x%d, word_dim %d, E=%d, S=%d, CPU threads=%d, dropout off, '
          '%d warm-up step(s)' % (args.head, args.batch_size, args.img_dim, args.word_dim, args.embed_size,
                                  args.sim_dim, args.threads, args.warmup))
    results = {name: [] for name in METHODS}
    for _ in range(args.rounds):
        for name in METHODS:
            out = subprocess.run(cmd + ['--worker', name], check=True, capture_output=True, text=True).stdout
            results[name].append(json.loads(out.strip().splitlines()[-1]))
    best = {name: min(runs, key=lambda r: r['seconds']) for name, runs in results.items()}
    peak = {name: max(r['peak_gib'] for r in runs) for name, runs in results.items()}
    cpu = {name: min(r['cpu_seconds'] for r in runs) for name, runs in results.items()}
    print('%-32s %9s %12s %9s %14s %12s' % ('method', 'wall s', 'samples/s', 'CPU s', 'peak RSS GiB', 'loss'))
    for name, label in METHODS.items():
        r = best[name]
        print('%-32s %9.2f %12.2f %9.2f %14.2f %12.6f' % (label, r['seconds'], args.batch_size / r['seconds'],
                                                          cpu[name], peak[name], r['loss']))
    dloss = max(abs(a['loss'] - b['loss']) for a in results['port'] for b in results['upstream'])
    # CPU seconds: robust to other processes time-slicing a shared machine (wall time is not)
    print('speedup %.2fx (wall) %.2fx (CPU time) memory %.2fx max|dloss| %.2e' % (
        best['upstream']['seconds'] / best['port']['seconds'], cpu['upstream'] / cpu['port'],
        peak['port'] / peak['upstream'], dloss))


if __name__ == "__main__":
    main()
