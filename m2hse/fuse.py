"""Fuse the global and local score matrices of one split and report the fused mAPs.

The paper fuses the primary similarities of its two subnetworks for retrieval; the released code
never does (each subnetwork is tested alone). This opt-in extra makes the complementarity claim
runnable on the `--out_scores` files of test_global.py and test_local.py:
    S = weight * S_global + (1 - weight) * S_local
    python fuse.py --global_scores g.npy --local_scores l.npy --labels DATA/test_labels.npy --weight .5
"""
import os, sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse

import numpy as np

from common.errors import InputError, cli_main
from common.results import save_scores, write_results
from common.safeio import check_writable, load_npy
from m2hse.metrics import i2t_mAP, random_mAP_sum, t2i_mAP


def fuse(global_scores, local_scores, weight):
    return weight * global_scores + (1.0 - weight) * local_scores


def report(name, sims, labels):
    mAP_i2t, mAP_t2i = i2t_mAP(sims, labels), t2i_mAP(sims, labels)
    print("%s: i2t mAP %.4f  t2i mAP %.4f  mAP_sum: %.4f" % (name, mAP_i2t, mAP_t2i, mAP_i2t + mAP_t2i))
    return {'i2t_mAP': float(mAP_i2t), 't2i_mAP': float(mAP_t2i), 'mAP_sum': float(mAP_i2t + mAP_t2i)}


def load_matrix(path, what):
    if not os.path.isfile(path):
        raise InputError('%s file not found: %s (write it with test_*.py --out_scores)' % (what, path))
    array = load_npy(path, what=what)
    if array.size and not np.isfinite(array).all():
        raise InputError('%s: the %s hold NaN or inf values; recompute them' % (path, what))
    return array


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--global_scores', required=True, help='.npy image x text scores of test_global.py')
    parser.add_argument('--local_scores', required=True, help='.npy image x text scores of test_local.py')
    parser.add_argument('--labels', required=True, help='{split}_labels.npy of the same split')
    parser.add_argument('--weight', type=float, default=0.5, help='weight of the global scores (0..1)')
    parser.add_argument('--out_json', default=None, help='fused metrics + each subnetwork\'s + chance level')
    parser.add_argument('--out_scores', default=None, help='save the fused score matrix (.npy, float64)')
    args = parser.parse_args(argv)
    for path, what in ((args.out_json, '--out_json file'), (args.out_scores, '--out_scores file')):
        if path:
            check_writable(path, what)
    if len(load_npy(args.labels, what='labels').reshape(-1)) == 0:
        raise InputError('%s: no labels (empty split)' % args.labels)

    g = load_matrix(args.global_scores, 'global scores')
    l = load_matrix(args.local_scores, 'local scores')
    labels = load_matrix(args.labels, 'labels').reshape(-1).astype(np.float64)
    if g.shape != l.shape or g.shape != (len(labels), len(labels)):
        raise InputError('shape mismatch: global %s, local %s, %d labels (expected both (N, N) for the '
                         'same split, N = number of labels)' % (g.shape, l.shape, len(labels)))
    if not 0.0 <= args.weight <= 1.0:
        raise InputError('--weight must be in [0, 1], got %g' % args.weight)
    results = {'global': report('global', g, labels), 'local': report('local', l, labels)}
    fused = fuse(g, l, args.weight)
    results['fused'] = report('fused (weight %.2f)' % args.weight, fused, labels)
    baseline = random_mAP_sum(labels)
    print("random scores: mAP_sum %.4f" % baseline)
    metrics = dict(results['fused'], n_images=int(fused.shape[0]), n_texts=int(fused.shape[1]), weight=args.weight,
                   global_mAP_sum=results['global']['mAP_sum'], local_mAP_sum=results['local']['mAP_sum'],
                   random_mAP_sum=baseline)
    if args.out_json:
        write_results(args.out_json, metrics, 'm2hse', argv=[sys.argv[0]] + list(sys.argv[1:] if argv is None else argv))
    if args.out_scores:
        save_scores(args.out_scores, fused)
    return metrics


if __name__ == '__main__':
    cli_main(main)
