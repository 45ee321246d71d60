"""Benchmark of the evaluation's similarity pass (lhsc/fastsim.py) against upstream's per-caption loop.

    python bench/lhsc_eval.py [--n_images 100 --n_captions 500 --threads 1 --head LHSC SAF SGR]

The baseline is a faithful copy of upstream's loop: `EncoderSimilarity.forward` in lhsc/model.py
(upstream model.py:279-318, SGRAF's `forward`: its op order, each caption at its own length
repeated against the images, SCAN_attention's transposed copies) over upstream's shards of 100
images x 100 captions (`evaluation.py --reference`). Training is timed by bench/lhsc_train.py.
At default sizes (E=1024, S=256, 36 regions), for each head on one random model and one set of
random embeddings, it times that loop and the vectorised pass at a few memory budgets with each
GEMM backend (`--gemm`: oneDNN, torch's MKL) in interleaved rounds, each timed run right after an
untimed one of the same method (`--warmup`: steady state, as inside a long evaluation), checks
the matrices agree, and compares the pass's achieved GFLOP/s with the best plain large float32
matmul of either backend timed in the same run (the machine's throughput).
FLOPs per (image, caption of n words): n * (4*36*E + 2*E*S) + 2*E*S  (~8.6 MFLOP at n = 12).
It also replays the matrix products alone (every lhsc.gemm call of the fastest oneDNN pass, same
shapes and order, nothing else; `--no_floor` skips it): a floor for any pass built on these
products here, so upstream loop / floor is the most speedup they allow on this machine.
The last lines are a table: head, loop seconds, pass seconds, speedup, max|d|, floor.
"""
import os
import sys

if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import time

import numpy as np
import torch

from lhsc import gemm as gemms
from lhsc.evaluation import shard_attn_scores
from lhsc.model import build_model
from lhsc.opts import build_parser


def pass_flops(cap_lens, n_images, embed, sim_dim, n_regions=36):
    lens = np.asarray(cap_lens, dtype=np.float64)
    per_pair = lens * (4 * n_regions * embed + 2 * embed * sim_dim) + 2 * embed * sim_dim
    return float(per_pair.sum() * n_images)


def matmul_gflops(device, gemm, size=2048, min_seconds=3.0):
    """Sustained float32 matmul throughput: total FLOPs / total time over >= min_seconds (on a
    shared, time-sliced machine a best-of-few short timing would overstate what a long pass gets)."""
    a = torch.randn(size, size, device=device)
    b = gemm.pack(torch.randn(size, size, device=device))
    gemm.linear(a, b)
    sync(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_seconds:
        gemm.linear(a, b)
        count += 1
    sync(device)
    return 2 * size ** 3 * count / (time.perf_counter() - start) / 1e9


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--n_images', default=100, type=int)
    parser.add_argument('--n_captions', default=500, type=int)
    parser.add_argument('--embed_size', default=1024, type=int)
    parser.add_argument('--sim_dim', default=256, type=int)
    parser.add_argument('--head', default=['LHSC', 'SAF', 'SGR'], nargs='+', choices=['LHSC', 'SAF', 'SGR'])
    parser.add_argument('--threads', default=1, type=int, help='torch CPU threads')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--max_mem', default=[64, 256], type=float, nargs='+',
                        help='memory budgets (MiB) of the vectorised pass to time')
    parser.add_argument('--gemm', default=list(gemms.CHOICES), nargs='+', choices=gemms.CHOICES,
                        help='GEMM backends of the vectorised pass to time (lhsc/gemm.py)')
    parser.add_argument('--repeats', default=3, type=int, help='rounds over all methods (best time of each)')
    parser.add_argument('--warmup', default=1, type=int,
                        help='untimed runs of a method right before each timed one (steady state, as inside a long '
                             'evaluation; the first pass right after the loop was measured 0.4-0.5 s slower)')
    parser.add_argument('--skip_reference', action='store_true', help='(GPU, large sizes) no loop')
    parser.add_argument('--no_floor', action='store_true', help='do not replay the products alone')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    rng = np.random.RandomState(0)
    img = rng.rand(args.n_images, 36, args.embed_size).astype(np.float32)
    img /= np.linalg.norm(img, axis=-1, keepdims=True)
    cap_lens = [int(n) for n in rng.randint(7, 18, size=args.n_captions)]   # mean 12 words
    cap = np.zeros((args.n_captions, max(cap_lens), args.embed_size), np.float32)
    for j, n in enumerate(cap_lens):
        w = rng.randn(n, args.embed_size).astype(np.float32)
        cap[j, :n] = w / np.linalg.norm(w, axis=-1, keepdims=True)
    flops = pass_flops(cap_lens, args.n_images, args.embed_size, args.sim_dim)
    print('LHSC similarity pass: %d images x %d captions (mean %.1f words), E=%d S=%d, device=%s threads=%d'
          % (args.n_images, args.n_captions, np.mean(cap_lens), args.embed_size, args.sim_dim, device, args.threads))
    print('%.1f GFLOP in total (%.2f MFLOP per pair, local alignments; SGR adds its graph steps)'
          % (flops / 1e9, flops / 1e6 / args.n_images / args.n_captions))
    backends = {name: gemms.select(name, device) for name in args.gemm}
    peaks = {b.name: matmul_gflops(device, b) for b in set(backends.values())}
    summary = [bench_head(args, head, device, img, cap, cap_lens, flops, backends, peaks) for head in args.head]
    print()
    # CPU-time speedup: robust to other processes time-slicing a shared machine (wall time is not)
    print('%-6s %16s %14s %14s %14s %10s %16s %14s' % ('head', 'upstream loop s', 'port pass s', 'speedup wall',
                                                      'speedup CPU', 'max|d|', 'products alone s',
                                                      'most speedup'))
    for head, t_ref, t_best, diff, cpu_speedup, floor in summary:
        print('%-6s %16.2f %14.2f %13.2fx %13.2fx %10.2e %16.2f %13.2fx' % (
            head, t_ref, t_best, t_ref / t_best, cpu_speedup, diff, floor, t_ref / floor))


def bench_head(args, head, device, img, cap, cap_lens, flops, backends, peaks):
    """Times one head (interleaved rounds), prints its table; returns (head, loop s, best pass s, max|d|)."""
    opt = build_parser().parse_args([])
    opt.embed_size, opt.sim_dim, opt.vocab_size = args.embed_size, args.sim_dim, 8481
    opt.model, opt.module_name = ('LHSC', 'SAF') if head == 'LHSC' else ('SGRAF', head)
    torch.manual_seed(0)
    model = build_model(opt, device=device)
    model.val_start()
    peak = max(peaks.values())
    print('\n-- head %s' % head)
    rows = [('plain float32 matmul 2048^3, %s' % name, None, gflops, None) for name, gflops in sorted(peaks.items())]

    methods = []  # (label, gemm or None for the reference loop, max_mem)
    if not args.skip_reference:
        methods.append(("upstream's per-caption loop (faithful copy)", None, None))
    for name in args.gemm:
        for budget in args.max_mem:
            methods.append(('vectorised, %s GEMM, max_mem %g MiB' % (backends[name].name, budget), name, budget))

    def run(gemm, budget):
        if gemm is None:
            return shard_attn_scores(model, img, cap, cap_lens, reference=True, progress=False)
        return shard_attn_scores(model, img, cap, cap_lens, shard_size=100, max_mem=budget, progress=False,
                                 gemm=backends.get(gemm, gemm))  # a backend's name, or record_products' class

    # rounds over all methods, best time of each: slow drifts of a shared machine hit all alike
    seconds, cpu, outputs = {}, {}, {}
    for _ in range(args.repeats):
        for label, gemm, budget in methods:
            for _ in range(args.warmup):
                run(gemm, budget)
            start, start_cpu = time.perf_counter(), time.process_time()
            outputs[label] = run(gemm, budget)
            seconds[label] = min(seconds.get(label, float('inf')), time.perf_counter() - start)
            cpu[label] = min(cpu.get(label, float('inf')), time.process_time() - start_cpu)
    reference = None if args.skip_reference else outputs[methods[0][0]]
    best = None
    for label, gemm, budget in methods:
        t = seconds[label]
        diff = float(np.abs(outputs[label] - reference).max()) if reference is not None else float('nan')
        rows.append((label, t, flops / t / 1e9, diff))
        if gemm is not None and (best is None or t < best[0]):
            best = (t, diff, cpu[label])
    t_ref = None if args.skip_reference else seconds[methods[0][0]]

    print('%-46s %10s %10s %12s %10s' % ('method', 'seconds', 'GFLOP/s', 'vs matmul', 'max|d|'))
    for name, secs, gflops, diff in rows:
        print('%-46s %10s %10.2f %11.1f%% %10s' % (
            name, '-' if secs is None else '%.3f' % secs, gflops, 100 * gflops / peak,
            '-' if diff is None else '%.2e' % diff))

    t_best, diff, cpu_best = best
    speedup = t_ref / t_best if reference is not None else float('nan')
    efficiency = 100 * flops / t_best / 1e9 / peak
    print('%s: speedup %.2fx max|d| %.2e efficiency %.1f%%' % (head, speedup, diff, efficiency))
    floor = float('nan')
    # the oneDNN pass sends every large product through lhsc.gemm (torch's pass calls modules and bmm directly)
    onednn = [(label, gemm, budget) for label, gemm, budget in methods if gemm and backends[gemm].per_image]
    if not args.no_floor and onednn:
        label, gemm, budget = min(onednn, key=lambda m: seconds[m[0]])
        calls = record_products(lambda recording: run(recording, budget), backends[gemm])
        floor = replay_products(calls, backends[gemm], device, args.repeats)
        product_flops = sum(2.0 * m * n * k for (m, k), (n, _), _ in calls)
        print('%s: products alone (the %d lhsc.gemm calls of the %s pass, replayed): %.3f s, %.1f GFLOP, '
              '%.1f GFLOP/s; upstream loop / products alone = %.2fx'
              % (head, len(calls), label.split(', ', 1)[1], floor, product_flops / 1e9,
                 product_flops / floor / 1e9, (t_ref if t_ref is not None else float('nan')) / floor))
    cpu_ref = cpu[methods[0][0]] if t_ref is not None else float('nan')
    return head, t_ref if t_ref is not None else float('nan'), t_best, diff, cpu_ref / cpu_best, floor


def record_products(run, backend):
    """The (x shape, weight shape, has bias) of every product `run(gemm)` makes through `backend`."""
    calls = []

    class Recording(backend):
        @staticmethod
        def linear(x, weight, bias=None):
            calls.append((tuple(x.shape), tuple(weight.shape), bias is not None))
            return backend.linear(x, weight, bias)
    run(Recording)
    return calls


def replay_products(calls, backend, device, repeats):
    """Best-of-`repeats` seconds of the recorded products alone, in order, on random operands."""
    torch.manual_seed(0)
    operands = {}
    for x_shape, w_shape, has_bias in calls:
        if (x_shape, w_shape) not in operands:
            operands[x_shape, w_shape] = (torch.rand(x_shape, device=device),
                                          backend.pack(torch.rand(w_shape, device=device)),
                                          torch.rand(w_shape[0], device=device))
    best = float('inf')
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        for x_shape, w_shape, has_bias in calls:
            x, w, b = operands[x_shape, w_shape]
            backend.linear(x, w, b if has_bias else None)
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


if __name__ == "__main__":
    main()
