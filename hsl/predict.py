"""Rank the products of a parsed split for a free-text query with a trained HSL checkpoint.

    python predict.py --checkpoint runs/X/model_best.pth.tar --query "red summer dress" [--top_k 10]
        [--split valid] [--export embeddings.npz | --export DIR]

Old spellings still work: --resume (= --checkpoint), --topn (= --top_k). The box count that the
old `--top_k` overrode is now --box_top_k. The architecture (sizes, --glove, --no_txtnorm,
--score_agg, boxes) is read from the checkpoint's stored `opt`. Results print product ids.
--export PATH.npz writes the query and product embeddings in one archive; a PATH without the
.npz suffix (or an existing folder) is a folder of .npy files, as before.
"""
import os
import sys

if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import copy

import numpy as np

from common.errors import InputError, cli_main
from common.progress import add_progress_arg
from common.safeio import (check_writable, check_writable_dir, cleanup_stale_tmp, save_npy_atomic,
                           save_npz_atomic)

EXPORT_NAMES = ('query_embeddings', 'product_ids', 'product_num_boxes', 'product_object_embeddings',
                'product_image_embeddings')


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--checkpoint', '--resume', dest='checkpoint', required=True,
                        help='checkpoint (upstream or port layout); --resume is the old spelling')
    parser.add_argument('--query', required=True, help='free-text query')
    parser.add_argument('--top_k', '--topn', dest='top_k', default=10, type=int,
                        help='how many products to print (--topn is the old spelling)')
    parser.add_argument('--data_path', default='../data')
    parser.add_argument('--data_name', default='KDDCup2020')
    parser.add_argument('--split', default='valid', help='parsed split whose products are ranked')
    parser.add_argument('--vocab_path', default='../data/KDDCup2020')
    parser.add_argument('--score_agg', default=None, help="override the checkpoint's --score_agg")
    parser.add_argument('--box_top_k', default=None, type=int,
                        help="override the checkpoint's --top_k (boxes per product)")
    parser.add_argument('--export', default=None, metavar='PATH.npz',
                        help='write the embeddings: one .npz archive, or a folder of .npy files '
                             'when PATH does not end in .npz')
    parser.add_argument('--device', default='auto')
    add_progress_arg(parser)
    return parser


def export_is_folder(path):
    return os.path.isdir(path) or not path.endswith('.npz')


def load_model(path, vocab, device):
    """(model, opt) from the checkpoint's stored opt; the vocabulary must be the training one."""
    # torch-heavy modules: imported where used (only after parsing) so that `--help` is fast
    from hsl import engine
    from hsl.model import HSL
    checkpoint = engine.read_checkpoint(path)
    if checkpoint.get('opt') is None:
        raise InputError('%s stores no `opt`; predict.py needs it to rebuild the model' % path)
    engine.check_vocabulary(checkpoint, vocab, path)
    opt = copy.copy(checkpoint['opt'])
    if opt.vocab_size != len(vocab):
        raise InputError('%s: the checkpoint was trained with %d words, the vocabulary has %d'
                         % (path, opt.vocab_size, len(vocab)))
    if opt.glove and getattr(opt, 'we_parameter', None) is None:
        opt.we_parameter = np.zeros((len(vocab), 300))  # shape only: weights come from the checkpoint
    opt.amp = False
    model = HSL(opt, device=device)
    model.load_state_dict(checkpoint['model'])
    return model, opt


def rank_products(model, vocab, prods, query, top_k, show_progress=False):
    """(product ids sorted by score, scores sorted, query embeddings, product embeddings)."""
    # torch-heavy modules: imported where used (only after parsing) so that `--help` is fast
    import torch
    from hsl.evaluation_fast import encode_products, encode_texts, score_pool
    with torch.no_grad():
        model.val_start()
        product_ids = [int(p) for p in prods.product_ids]
        text = encode_texts(model, vocab, [query])
        products = encode_products(model, prods, product_ids, top_k, show_progress=show_progress)
        rows = torch.arange(len(product_ids), device=model.device)
        scores = score_pool(model, text, 0, products, rows)
    order = np.argsort(scores)[::-1]  # upstream's ranking convention
    return [product_ids[i] for i in order], scores[order], text, products


def export(path, product_ids, text, products):
    """PATH.npz: one archive; otherwise PATH is a folder of .npy files (the original layout)."""
    x1, x2, x3, x4, num_boxes = [t.cpu().numpy() for t in products]
    arrays = dict(zip(EXPORT_NAMES, (np.stack([t[0].cpu().numpy() for t in text]),
                                     np.asarray(product_ids, np.int64), num_boxes,
                                     np.stack([x1, x2], axis=2), np.stack([x3, x4], axis=1))))
    if export_is_folder(path):
        for name, array in arrays.items():
            save_npy_atomic(os.path.join(path, name + '.npy'), array)
    else:
        save_npz_atomic(path, **arrays)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.export:
        cleanup_stale_tmp(args.export)
        if export_is_folder(args.export):
            check_writable_dir(args.export, 'export folder (--export)')
        else:
            check_writable(args.export, 'export archive (--export)')
    # torch and the model load only now, so that `--help` answers at once
    from common.runtime import resolve_device
    from hsl.data import load_products_files, load_vocab, vocab_file
    path = vocab_file(args.vocab_path)
    if not os.path.isfile(path):
        raise InputError('%s: vocabulary not found (set --vocab_path)' % path)
    vocab = load_vocab(path)
    model, opt = load_model(args.checkpoint, vocab, resolve_device(args.device))
    if args.score_agg:
        model.score_agg = args.score_agg
    prods = load_products_files(os.path.join(args.data_path, args.data_name, args.split), args.split)
    if len(prods) == 0:
        raise InputError('%s split under %s has no products to rank'
                         % (args.split, os.path.join(args.data_path, args.data_name)))
    box_top_k = args.box_top_k or opt.top_k
    ranked, scores, text, products = rank_products(model, vocab, prods, args.query, box_top_k,
                                                   show_progress=not args.no_progress)
    print('rank\tproduct_id\tscore')
    for rank, (pid, score) in enumerate(zip(ranked[:args.top_k], scores[:args.top_k]), start=1):
        print('%d\t%d\t%r' % (rank, pid, float(score)))
    if args.export:
        export(args.export, [int(p) for p in prods.product_ids], text, products)
        print('=> embeddings written to %s' % args.export)
    return ranked, scores


if __name__ == '__main__':
    cli_main(main)
