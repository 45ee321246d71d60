"""Benchmark HSL training throughput (samples/s) at the README config (--glove --no_txtnorm
--score_agg mean, default widths), port vs a naive baseline with upstream's Python loops
(per-image box aggregation in cal_scores, model.py:327; per-row masked means, model.py:121-134).

    python bench/hsl_train.py [--batch_size 64] [--steps 5] [--max_boxes 10] [--threads 1] [--device cpu]
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common.runtime import resolve_device  # noqa: E402
from hsl import model as hsl_model  # noqa: E402
from hsl import parser  # noqa: E402


def loop_cal_scores(img_emb, cap_emb, num_boxes, score_agg, fix_topk=False):
    """Upstream's cal_scores structure: one aggregation per image in a Python loop."""
    sims = torch.einsum('ce,jbe->jcb', cap_emb, img_emb)
    scores = []
    for i in range(sims.size(0)):
        box = sims[i][:, :num_boxes[i]]
        if score_agg == 'max':
            scores.append(box.max(dim=1)[0])
        elif score_agg == 'mean':
            scores.append(box.mean(dim=1))
        elif score_agg == 'sum':
            scores.append(box.sum(dim=1))
        else:
            k = hsl_model.topk_from_agg(score_agg, fix_topk)
            scores.append(torch.sort(box, 1, descending=True)[0][:, :k].mean(dim=1))
    return torch.stack(scores, dim=1)


def loop_masked_mean(x, mask, lengths):
    return torch.stack([x[i][:lengths[i]].mean(dim=0) for i in range(x.size(0))], dim=0)


def run(opt, device, batch, steps):
    torch.manual_seed(0)
    model = hsl_model.HSL(opt, device=device)
    model.train_start()
    model.train_emb(0, *batch)  # warm-up
    if device.type == 'cuda':
        torch.cuda.synchronize()
    start = time.time()
    losses = [model.train_emb(i, *batch) for i in range(steps)]
    if device.type == 'cuda':
        torch.cuda.synchronize()
    return batch[0].size(0) * steps / (time.time() - start), losses[-1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--batch_size', type=int, default=64)
    ap.add_argument('--steps', type=int, default=5)
    ap.add_argument('--max_boxes', type=int, default=10)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--amp', action='store_true')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    flags = ['--glove', '--no_txtnorm', '--score_agg', 'mean'] + (['--amp'] if args.amp else [])
    opt = parser.get_parser(flags)
    opt.vocab_size = 5000
    opt.we_parameter = np.random.RandomState(0).uniform(-0.1, 0.1, (opt.vocab_size, 300))
    g = torch.Generator().manual_seed(0)
    n = args.batch_size
    num_boxes = torch.randint(1, args.max_boxes + 1, (n,), generator=g)
    images = torch.rand(n, args.max_boxes, 2048, generator=g)
    images[torch.arange(args.max_boxes)[None, :] >= num_boxes[:, None]] = 0
    lengths = torch.randint(3, 9, (n,), generator=g).sort(descending=True)[0]
    caps = torch.randint(4, opt.vocab_size, (n, int(lengths[0])), generator=g)
    caps[torch.arange(caps.size(1))[None, :] >= lengths[:, None]] = 0
    batch = (images, num_boxes, caps, lengths)

    port, port_loss = run(opt, device, batch, args.steps)
    saved = hsl_model.cal_scores, hsl_model.TextEncoder.masked_mean
    hsl_model.cal_scores = loop_cal_scores
    hsl_model.TextEncoder.masked_mean = staticmethod(loop_masked_mean)
    try:
        naive, naive_loss = run(opt, device, batch, args.steps)
    finally:
        hsl_model.cal_scores, hsl_model.TextEncoder.masked_mean = saved
    print('\nREADME config, batch %d, up to %d boxes, %s, threads %d%s'
          % (n, args.max_boxes, device, args.threads, ', AMP' if args.amp else ''))
    print('%-42s %12s %14s' % ('method', 'samples/s', 'loss after'))
    print('%-42s %12.1f %14.6f' % ('naive (upstream per-image/per-row loops)', naive, naive_loss))
    print('%-42s %12.1f %14.6f' % ('port (vectorised)', port, port_loss))
    print('speed-up %.2fx' % (port / naive))


if __name__ == '__main__':
    main()
