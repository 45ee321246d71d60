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
import time

import numpy as np
from torch.utils.data import DataLoader

from common.checkpoint import CheckpointError
from avas.model_local import RANKING_CKPT

DEFAULT_INDEX_FILES = ('data/dwd_mml_train_dataset_1007_urls_train_with_poi_tuomin.csv,'
                       'data/dwd_mml_train_dataset_1007_urls_val_with_poi_tuomin.csv,'
                       'dwd_mml_train_dataset_1007_urls_train_with_poi_tuomin.csv')
ALIGN_PTH = ('youyi/models/align_相关性模型权重/align_with_mkg_0106/'
             'commodity_poi_mml_20211221_with_MKG_withMKG_iteration_200000_0.4215_0.407_0.018.pth')


def add_upstream_args(p):
    """local_eval_test.py's argparse, every flag and default as shipped (many unused, spec §2.1)."""
    p.add_argument("--tables", default="", type=str, help="unused (ODPS)")
    p.add_argument("--index_files", default=DEFAULT_INDEX_FILES, type=str,
                   help="train,val,test ranking CSVs; val is evaluated (train/test unused here)")
    p.add_argument("--outputs", default="", type=str, help="unused (ODPS)")
    p.add_argument("--task_name", default="shoucai_siamese", type=str, help="run name")
    p.add_argument("--note_txt", default="", type=str, help="unused")
    p.add_argument("--save_test", default=0, type=int, help="unused")
    p.add_argument("--batch_size", default=16, type=int, help="pairs per batch")
    p.add_argument("--epoch", default=32, type=int, help="training epochs (train_ranking.py)")
    p.add_argument("--eval_per_step", default=32, type=int, help="unused by upstream")
    p.add_argument("--margin", default=0.5, type=float, help="MarginRankingLoss margin (unused)")
    p.add_argument("--aug", default=1, type=int, help="train-mode augmentation (train_ranking.py)")
    p.add_argument("--lr", default=1e-3, type=float, help="learning rate (train_ranking.py)")
    p.add_argument("--log", default=0, type=int, help="extra per-pair prints")
    p.add_argument("--softmax", default=0, type=int, help="1: softmax over (s1, s2) before the loss")
    p.add_argument("--freeze", default=1, type=int, help="freeze the ALIGN inside the ranking model")
    p.add_argument("--use_norm_vector", default=1, type=int,
                   help="1: L2-normalised embeddings + ..._imgs_avg10_vector.npy; 0: raw + ..._wo_norm.npy")
    p.add_argument("--align_pth", default=ALIGN_PTH, type=str, help="unused (OSS path of the ALIGN)")
    return p


def add_port_args(p):
    p.add_argument('--align_ckpt', default='align_model.pth', help='ALIGN checkpoint (align_model.pth)')
    p.add_argument('--ranking_ckpt', default=RANKING_CKPT, help='bare Multimodal_Model state_dict')
    p.add_argument('--bert_path', default='bert-base-chinese', help='folder with config.json + vocab.txt')
    p.add_argument('--poi_tables', default='.', help='folder holding the POI side tables (.npy)')
    p.add_argument('--image_root', default='oss_images', help='local images named <basename(URL)>')
    p.add_argument('--text_batch_size', default=64, type=int, help='texts per padded BERT batch')
    p.add_argument('--num_workers', default=0, type=int)
    p.add_argument('--strict', action='store_true', help='a missing/unreadable image is an error')
    p.add_argument('--out_json', default=None, help='write dev_accuracy/dev_loss/roc_auc/n_pairs/n_dropped')
    p.add_argument('--out_scores', default=None, help='save the (n_pairs, 2) s1/s2 matrix (.npy)')
    from common.runtime import add_runtime_args
    add_runtime_args(p)
    return p


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    return add_port_args(add_upstream_args(p))


def split_index_files(index_files):
    parts = index_files.split(',')
    if len(parts) != 3:
        raise SystemExit('error: --index_files needs 3 comma-separated paths (train,val,test), got %d'
                         % len(parts))
    return parts


def build_ranking_model(args, device, ranking_ckpt=None):
    """model_local.Config + Multimodal_Model: ALIGN from --align_ckpt, then (optionally) the
    ranking checkpoint, whose align_model.* weights replace it (quirk 16)."""
    from avas.align_model import build_model
    from avas.model_local import Multimodal_Model, load_ranking_state_dict, read_ranking_checkpoint
    align = build_model(args.align_ckpt, args.bert_path)
    model = Multimodal_Model(align, use_norm=args.use_norm_vector, dropout=0.1, freeze=args.freeze)
    if ranking_ckpt:
        load_ranking_state_dict(model, read_ranking_checkpoint(ranking_ckpt), ranking_ckpt)
        print('Load Multimodal_Model success~')
    return model.to(device)


def make_loader(path, args, poi_tables, transform=None, shuffle=False, sampler=None, generator=None):
    from avas.data import RankingPairs, collate_pairs
    dataset = RankingPairs(path, args.image_root, poi_tables, transform=transform)
    return DataLoader(dataset, batch_size=args.batch_size, shuffle=shuffle and sampler is None,
                      sampler=sampler, num_workers=args.num_workers, collate_fn=collate_pairs,
                      generator=generator)


def report(result, args, argv, start):
    from common.metrics import roc_auc
    labels, s1, s2 = result['labels'], result['s1'], result['s2']
    print('val all dev_labels', labels.tolist())
    print('val all dev_pre', (s1 > s2).astype(np.int32).tolist())
    print(' Dev Loss: {:.4f},  Dev accuracy: {:.6f}, Time:'.format(result['dev_loss'], result['dev_accuracy']))
    has_both = len(set(labels.tolist())) == 2
    auc = roc_auc(labels, s1 - s2) if has_both else float('nan')
    n_dropped = len(result['dropped'])
    print('pairwise accuracy (s1 > s2 vs ctr_a > ctr_b; the paper\'s "AUC"): {:.6f}'.format(result['dev_accuracy']))
    print('ROC-AUC of s1 - s2: {:.6f}   pairs scored: {}   pairs dropped: {}   ({:.1f}s)'.format(
        auc, len(labels), n_dropped, time.time() - start))
    metrics = {'dev_accuracy': result['dev_accuracy'], 'dev_loss': result['dev_loss'], 'roc_auc': auc,
               'n_pairs': int(len(labels)), 'n_dropped': n_dropped}
    if args.out_json:
        from common.results import write_results
        write_results(args.out_json, metrics, 'avas', argv=argv, seed=args.seed, checkpoint=args.ranking_ckpt,
                      data_path=split_index_files(args.index_files)[1],
                      extra={'dropped': [{'line': d.lineno, 'reason': d.reason} for d in result['dropped']]})
    if args.out_scores:
        from common.results import save_scores
        save_scores(args.out_scores, np.stack([s1, s2], axis=1))
    return metrics


def main(argv=None):
    args = get_parser().parse_args(argv)
    from avas.data import load_poi_tables
    from avas.evaluation import evaluate_pairs
    from common.runtime import resolve_device, seed_everything
    seed_everything(1 if args.seed is None else args.seed, args.deterministic)  # init_config seeds 1
    device = resolve_device(args.device)
    start = time.time()
    _, val_file, _ = split_index_files(args.index_files)  # upstream also read train (quirk 11): not needed
    print('use norm vector.npy' if args.use_norm_vector else 'use wo norm vector.npy')  # model_local.py:55-60
    try:
        poi_tables = load_poi_tables(args.poi_tables, args.use_norm_vector)
        loader = make_loader(val_file, args, poi_tables)
        model = build_ranking_model(args, device, args.ranking_ckpt)
    except (FileNotFoundError, ValueError, CheckpointError) as err:
        raise SystemExit('error: %s' % err)
    print('val_iters=', len(loader))
    print('>>> Epoch end. val_evaluate_and_save_ckpt...')
    try:
        result = evaluate_pairs(model, loader, device, softmax=args.softmax, strict=args.strict,
                                text_batch_size=args.text_batch_size, amp=args.amp, log=args.log)
    except RuntimeError as err:
        if '--strict' in str(err):
            raise SystemExit('error: %s' % err)
        raise
    return report(result, args, argv, start)


if __name__ == '__main__':
    main()
