#!/usr/bin/env python
"""Benchmark one recommend request of the FHN web recommender: packed-bit ranking (port) vs upstream's loop.

`python bench/fhn_serve.py [--outfits 1000000 --dim 128 --requests 30 --subset 20000 --threads 2]`
Random 128-bit outfit codes, float32 lambda_u, visitor codes in {-1, 0, 1}. A request = FHN
scores of every outfit + the top 100 (the page then draws 10 of them). Port: fhn/web/packed.py.
Upstream (web/backend.py Recommender.recommend, re-stated here): a Python loop of
`(code * lambda_u * outfit).sum()` over a list of float64 arrays, then a full sort -- timed on
`--subset` outfits and extrapolated linearly to all (said so in the table). Requests of the two
are interleaved. Top-k equality: upstream's order on the subset, and the float64 reference with
upstream's tie order on all outfits.
"""
import os
import sys

if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from fhn.web.packed import PackedCodes, top_k  # noqa: E402


def upstream_recommend(code, lambda_u, outfits, pool=100):
    """Upstream's ratings loop and sort (web/backend.py:138-155), the top `pool` ids."""
    ratings = [(code * lambda_u * outfit).sum() for outfit in outfits]
    rank_outfits = [x for _, x in sorted(zip(ratings, range(len(ratings))), reverse=True)]
    return rank_outfits[:pool]


def unpack(packed, dim, rows):
    return np.unpackbits(packed[rows], axis=1, count=dim, bitorder="little").astype(np.float64) * 2 - 1


def reference_topk(packed, dim, w, pool, chunk=65536):
    """float64 scores of all outfits (unpacked chunk by chunk), upstream's tie order, top `pool`."""
    scores = np.concatenate([unpack(packed, dim, slice(s, s + chunk)) @ w
                             for s in range(0, len(packed), chunk)])
    order = np.lexsort((-np.arange(len(scores)), -scores))
    return order[:pool]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outfits", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--subset", type=int, default=20000, help="outfits of the timed upstream loop")
    parser.add_argument("--upstream_requests", type=int, default=5)
    parser.add_argument("--pool", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--check_full", type=int, default=3, help="requests checked against the full reference")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    n, d = args.outfits, args.dim
    packed = rng.integers(0, 256, size=(n, (d + 7) // 8), dtype=np.uint8)
    lambda_u = (0.5 + rng.random(d)).astype(np.float32)
    codes = [rng.choice([-1.0, 0.0, 1.0], size=d, p=[0.45, 0.1, 0.45]) for _ in range(args.requests)]

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    port = PackedCodes.from_packed(packed, d, threads=args.threads)
    build = time.perf_counter() - t0
    sub = min(args.subset, n)
    tracemalloc.start()
    outfits = [o for o in unpack(packed, d, slice(0, sub))]  # upstream: a list of float64 arrays
    up_bytes = tracemalloc.get_traced_memory()[0] * n / sub
    tracemalloc.stop()

    port_ms, up_ms, equal_sub, equal_full = [], [], 0, 0
    for i, code in enumerate(codes):
        w = code * lambda_u
        t = time.perf_counter()
        scores = port.scores(w)
        best = top_k(scores, args.pool)
        port_ms.append(1000 * (time.perf_counter() - t))
        if i < args.upstream_requests:  # interleaved with the port's requests
            t = time.perf_counter()
            up = upstream_recommend(code, lambda_u, outfits, args.pool)
            up_ms.append(1000 * (time.perf_counter() - t) * n / sub)
            equal_sub += top_k(scores[:sub], args.pool).tolist() == up
        if i < args.check_full:
            equal_full += best.tolist() == reference_topk(packed, d, w, args.pool).tolist()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    p = lambda v, q: np.percentile(v, q)  # noqa: E731
    print("outfits %d x %d bits, %d threads, top %d; port index built in %.2f s" % (n, d, args.threads,
                                                                                    args.pool, build))
    print("| implementation | outfits | p50 ms | p95 ms | memory | top-%d equal |" % args.pool)
    print("|---|---|---|---|---|---|")
    print("| port: packed bits, 16-bit tables, torch.topk | %d | %.1f | %.1f | %.0f MB codes "
          "(+%.0f MB tables and scores per request) | %d/%d full reference, %d/%d upstream on %d |"
          % (n, p(port_ms, 50), p(port_ms, 95), port.nbytes / 2 ** 20,
             (port.words_per_row * 65536 * 8 + n * 8) / 2 ** 20, equal_full, args.check_full, equal_sub,
             len(up_ms), sub))
    print("| upstream: Python loop over float64 arrays + sort (timed on %d, x%.0f extrapolated) | %d | "
          "%.0f | %.0f | %.0f MB (extrapolated) | reference |"
          % (sub, n / sub, n, p(up_ms, 50), p(up_ms, 95), up_bytes / 2 ** 20))
    print("process peak RSS %.0f MB (start %.0f MB); speed-up p50 %.0fx"
          % (rss / 1024, rss0 / 1024, p(up_ms, 50) / p(port_ms, 50)))
    ok = equal_sub == len(up_ms) and equal_full == args.check_full
    if not ok:
        print("TOP-K MISMATCH", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
