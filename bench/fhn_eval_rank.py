#!/usr/bin/env python
"""Benchmark evaluate-rank: cached item codes (port) vs upstream's per-outfit CNN passes.

`python bench/fhn_eval_rank.py [--users 4 --items 8 --posi 6 --nega_ratio 4 --threads 2]`
Same net (FHN-T3, AlexNet, random weights), same data: prints scores equality, wall
time, CNN forward counts and the ratio.
"""
import os
import sys

if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--items", type=int, default=8, help="items per category")
    parser.add_argument("--posi", type=int, default=6, help="test positives per user")
    parser.add_argument("--nega_ratio", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--image_size", type=int, default=224)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from fhn.evaluation import rank_metrics, rank_scores
    from fhn.scoring import CNNCounter
    from fhn.make_demo_data import make_data
    from fhn.model import FashionNetDeploy
    from fhn.param import FashionParam, NetParam

    tmp = tempfile.mkdtemp(prefix="fhn_bench_")
    root = make_data(tmp, users=args.users, items=args.items, posi=(2, 2, args.posi),
                     nega_ratio=(1, 1, args.nega_ratio))
    cfg = FashionParam(data_param=dict(phase="test", data_root=root, batch_size=32, num_workers=0,
                                       nega_mode="RandomFix", use_visual=True,
                                       image_size=args.image_size))
    torch.manual_seed(0)
    net = FashionNetDeploy(NetParam(name="FashionNetDeploy", num_users=args.users, dim=16,
                                    hash_types=3, use_visual=True), pretrained=False)
    net.init_weights()
    for m in net.modules():
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.normal_(m.weight, std=0.02)
    net.eval()
    rows = []
    out = {}
    for name, per_outfit in (("per-outfit (upstream)", True), ("cached codes (port)", False)):
        counter = CNNCounter(net)
        t0 = time.perf_counter()
        (p, n), _ = rank_scores(cfg, net, "cpu", per_outfit=per_outfit)
        wall = time.perf_counter() - t0
        counter.close()
        out[name] = (p, n)
        res = rank_metrics(p[0], p[1], n[0], n[1])
        rows.append((name, wall, counter.count, res["mean_auc"], res["mean_auc_binary"],
                     res["mean_ndcg"].mean()))
    (bp, bn), (cp, cn) = out["per-outfit (upstream)"], out["cached codes (port)"]
    flat = lambda lists: np.array([s for u in lists for s in u])  # noqa: E731
    max_diff = max(np.abs(flat(bp[0]) - flat(cp[0])).max(), np.abs(flat(bn[0]) - flat(cn[0])).max())
    binary_equal = flat(bp[1]).tolist() == flat(cp[1]).tolist() and \
        flat(bn[1]).tolist() == flat(cn[1]).tolist()
    num_outfits = len(flat(bp[0])) + len(flat(bn[0]))
    print("evaluate-rank, %d outfits (%d users), AlexNet %dpx, %d threads"
          % (num_outfits, args.users, args.image_size, args.threads))
    print("%-24s %10s %12s %10s %12s %10s" % ("path", "wall_s", "CNN images", "mean_auc",
                                               "auc(binary)", "ndcg"))
    for r in rows:
        print("%-24s %10.2f %12d %10.6f %12.6f %10.6f" % r)
    print("speed-up (per-outfit / cached): %.1fx wall, %.1fx fewer CNN images"
          % (rows[0][1] / rows[1][1], rows[0][2] / max(rows[1][2], 1)))
    print("binary scores identical: %s; max |relaxed score diff|: %.2e" % (binary_equal, max_diff))
    return 0 if binary_equal and max_diff < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
