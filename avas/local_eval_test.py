"""Ranking evaluation (AIS local_eval_test.py eval_): score both images of every val pair with the
ranking model and report RankNet loss and pairwise accuracy.

    python local_eval_test.py --image_root oss_images      # -> "Dev accuracy: 0.652..." (release)

"Dev accuracy" is accuracy_score(label, s1 > s2): pairwise accuracy, which the README and paper
call "AUC". The true ROC-AUC of s1 - s2 against the labels is printed and saved as well.
Images are read from <--image_root>/<basename(URL)> (fetch them once with download_images.py).
"""
import os
import sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import logging
import time

import numpy as np

from avas.options import add_ranking_port_args, add_upstream_ranking_args, split_index_files
from common.errors import cli_main
from common.logs import print_config, setup_logging
from common.results import save_scores, write_results
from common.safeio import check_writable, cleanup_stale_tmp

log = logging.getLogger('avas')


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    return add_ranking_port_args(add_upstream_ranking_args(p))


def prepare_outputs(args):
    """Outputs are checked writable (stale temp files removed) before the evaluation starts."""
    for path, what in ((args.out_json, '--out_json file'), (args.out_scores, '--out_scores file')):
        if path:
            cleanup_stale_tmp(path)
            check_writable(path, what)


def report(result, auc, args, argv, start):
    """Upstream's closing lines, then the honest names of the numbers; --out_json / --out_scores."""
    labels, s1, s2 = result.labels, result.s1, result.s2
    print('val all dev_labels', labels.tolist())
    print('val all dev_pre', (s1 > s2).astype(np.int32).tolist())
    print(' Dev Loss: {:.4f},  Dev accuracy: {:.6f}, Time:'.format(result.dev_loss, result.dev_accuracy))
    n_dropped = len(result.dropped)
    print('pairwise accuracy (s1 > s2 vs ctr_a > ctr_b; the paper\'s "AUC"): {:.6f}'.format(result.dev_accuracy))
    print('ROC-AUC of s1 - s2: {:.6f}   pairs scored: {}   pairs dropped: {}   ({:.1f}s)'.format(
        auc, len(labels), n_dropped, time.time() - start))
    metrics = {'dev_accuracy': result.dev_accuracy, 'dev_loss': result.dev_loss, 'roc_auc': auc,
               'n_pairs': int(len(labels)), 'n_dropped': n_dropped}
    log.info('evaluated %d pairs of %s (%d dropped)', len(labels), split_index_files(args.index_files)[1], n_dropped)
    if args.out_json:
        write_results(args.out_json, metrics, 'avas', argv=argv, seed=args.seed, checkpoint=args.ranking_ckpt,
                      data_path=split_index_files(args.index_files)[1],
                      extra={'dropped': [{'line': d.lineno, 'reason': d.reason} for d in result.dropped]})
    if args.out_scores:
        save_scores(args.out_scores, np.stack([s1, s2], axis=1))
    return metrics


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    print_config(args)
    _, val_file, _ = split_index_files(args.index_files)  # upstream also read train (quirk 11): not needed
    prepare_outputs(args)
    # heavy imports wait until the arguments are parsed: --help stays fast
    from avas.data import RankingPairs, make_pair_loader
    from avas.evaluation import evaluate_pairs, pair_roc_auc
    from avas.model_local import build_ranking_model
    from avas.poi_tables import load_poi_tables
    from common.runtime import resolve_device, seed_everything
    seed_everything(1 if args.seed is None else args.seed, args.deterministic)  # init_config seeds 1
    device = resolve_device(args.device)
    start = time.time()
    print('use norm vector.npy' if args.use_norm_vector else 'use wo norm vector.npy')  # model_local.py:55-60
    poi_tables = load_poi_tables(args.poi_tables, args.use_norm_vector)
    loader = make_pair_loader(RankingPairs(val_file, args.image_root, poi_tables), args.batch_size, args.num_workers)
    model = build_ranking_model(args.align_ckpt, args.bert_path, device, args.ranking_ckpt,
                                args.use_norm_vector, args.freeze)
    print('val_iters=', len(loader))
    print('>>> Epoch end. val_evaluate_and_save_ckpt...')
    result = evaluate_pairs(model, loader, device, softmax=args.softmax, strict=args.strict,
                            text_batch_size=args.text_batch_size, amp=args.amp, log=args.log,
                            show_progress=not args.no_progress)
    return report(result, pair_roc_auc(result.labels, result.s1, result.s2), args, argv, start)


if __name__ == '__main__':
    cli_main(main)
