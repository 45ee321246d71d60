"""Benchmark: M2HSE local-level attention, port (vectorised) vs a straightforward per-pair
implementation of upstream's loops, on the same inputs, at the README config (batch 100, 9 regions,
embed 1024, word_dim 300, AlexNet 4096 / BoVW 500).

    python bench/m2hse_local_attention.py [--threads 1] [--n_eval 499] [--skip_reference_eval]

Rows: one local training step (forward + 3 MSB losses + backward) and the local evaluation scoring of
a Corel5K-sized test set (499 images x 499 captions, 128-shards). For each: seconds, the speed-up
ratio, and the largest score / loss difference (the two must agree).
"""
import os, sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import time
import zlib

import numpy as np
import torch

from common.vocab import deserialize_vocab
from m2hse import opts
from m2hse.data_provider import read_captions
from m2hse.evaluation import shard_xattn
from m2hse.model import MMHSE_local, MultiSpringBalanceLoss
from m2hse.xattn import l2norm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAPS = os.path.join(REPO, 'm2hse', 'data', 'fine-grained-data', 'corel5k_precomp')


def real_batch(vocab, n, seed):
    """n real Corel5K train captions (sorted by length as collate does) + random features/labels."""
    caps = read_captions(os.path.join(CAPS, 'train_caps.txt'))[:n]
    ids = [[1] + [vocab(w) for w in c.split()] + [2] for c in caps]
    ids.sort(key=len, reverse=True)
    lengths = torch.tensor([len(x) for x in ids])
    targets = torch.zeros(n, int(lengths.max()), dtype=torch.long)
    for i, x in enumerate(ids):
        targets[i, :len(x)] = torch.tensor(x)
    g = torch.Generator().manual_seed(seed)
    cnns = torch.relu(torch.randn(n, 9, 4096, generator=g))
    bovws = torch.rand(n, 9, 500, generator=g)
    labels = torch.randint(0, 20, (n,), generator=g).float()
    return cnns, targets, lengths, bovws, labels


def train_step(model, batch, opt):
    cnns, targets, lengths, bovws, labels = batch
    model.zero_grad()
    start = time.perf_counter()
    sims = model(cnns, targets, lengths, bovws)
    crit = MultiSpringBalanceLoss(opt)
    loss = crit(sims[0], labels) + opt.beta_1 * crit(sims[1], labels) + opt.beta_2 * crit(sims[2], labels)
    loss.backward()
    elapsed = time.perf_counter() - start
    grads = torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])
    return elapsed, loss.item(), sims, grads


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--batch_size', type=int, default=100)
    parser.add_argument('--n_eval', type=int, default=499)
    parser.add_argument('--skip_reference_eval', action='store_true', help='time only the port on eval')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    vocab = deserialize_vocab(os.path.join(REPO, 'm2hse', 'vocab', 'corel5k_precomp_vocab.json'))
    opt = opts.parse_opt([])
    opt.vocab_size = len(vocab)
    torch.manual_seed(0)
    fast = MMHSE_local(opt, attention='fast')
    reference = MMHSE_local(opt, attention='reference')
    reference.load_state_dict(fast.state_dict())
    batch = real_batch(vocab, args.batch_size, seed=1)
    rows = []

    t_fast, loss_fast, sims_fast, g_fast = train_step(fast, batch, opt)
    t_ref, loss_ref, sims_ref, g_ref = train_step(reference, batch, opt)
    score_diff = max((a - b).abs().max().item() for a, b in zip(sims_fast, sims_ref))
    grad_rel = ((g_fast - g_ref).norm() / g_ref.norm()).item()
    rows.append(('train step (B=%d, fwd+loss+bwd)' % args.batch_size, t_ref, t_fast, score_diff,
                 'loss %.6f vs %.6f, grad rel.diff %.1e' % (loss_ref, loss_fast, grad_rel)))

    # evaluation scoring on precomputed (encoded) embeddings of a test-sized split
    n = args.n_eval
    g = torch.Generator().manual_seed(2)
    images = l2norm(torch.randn(n, 9, opt.embed_size, generator=g), -1).double().numpy()
    caps = read_captions(os.path.join(CAPS, 'dev_caps.txt'))[:n]
    lens = [len(c.split()) + 2 for c in caps]
    words = np.zeros((n, max(lens), opt.embed_size))
    for j, c in enumerate(caps):
        # identical captions get identical word features, as the real encoder would give them
        g_cap = torch.Generator().manual_seed(zlib.crc32(c.encode()))
        words[j, :lens[j]] = l2norm(torch.randn(lens[j], opt.embed_size, generator=g_cap), -1).numpy()
    start = time.perf_counter()
    s_fast = shard_xattn(images, words, lens, opt, attention='fast')
    t_fast = time.perf_counter() - start
    if args.skip_reference_eval:
        t_ref, diff = float('nan'), float('nan')
    else:
        start = time.perf_counter()
        s_ref = shard_xattn(images, words, lens, opt, attention='reference')
        t_ref = time.perf_counter() - start
        diff = float(np.abs(s_fast - s_ref).max())
    rows.append(('local eval scoring (%d x %d)' % (n, n), t_ref, t_fast, diff, ''))

    print('\nM2HSE local attention, torch %s, %d thread(s)' % (torch.__version__, args.threads))
    print('%-34s %14s %10s %8s %12s  %s' % ('case', 'per-pair (s)', 'port (s)', 'ratio', 'max |diff|', 'notes'))
    for name, t_ref, t_fast, diff, note in rows:
        print('%-34s %14.2f %10.2f %7.1fx %12.2e  %s' % (name, t_ref, t_fast, t_ref / t_fast, diff, note))
    return rows


if __name__ == '__main__':
    main()
