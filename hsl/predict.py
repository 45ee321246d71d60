"""Rank the products of a parsed split for a free-text query with a trained HSL checkpoint.

    python predict.py --resume runs/X/model_best.pth.tar --query "red summer dress" [--topn 10]
        [--split valid] [--export DIR]

The architecture (sizes, --glove, --no_txtnorm, --score_agg, --top_k) is read from the
checkpoint's stored `opt` (upstream checkpoints store the full Namespace). --export writes
the query and product embeddings as .npy files.
"""
import os
import sys

if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse

import numpy as np
import torch

from common.checkpoint import CheckpointError, load_checkpoint
from common.runtime import resolve_device
from hsl.data import VOCAB_ALIASES, load_records, load_vocab, vocab_file
from hsl.evaluation import encode_products, encode_texts, score_pool
from hsl.model import HSL


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--resume', required=True, help='checkpoint (upstream or port layout)')
    parser.add_argument('--query', required=True, help='free-text query')
    parser.add_argument('--data_path', default='../data')
    parser.add_argument('--data_name', default='KDDCup2020')
    parser.add_argument('--split', default='valid', help='parsed split whose products are ranked')
    parser.add_argument('--vocab_path', default='../data/KDDCup2020')
    parser.add_argument('--topn', default=10, type=int, help='how many products to print')
    parser.add_argument('--score_agg', default=None, help="override the checkpoint's --score_agg")
    parser.add_argument('--top_k', default=None, type=int, help="override the checkpoint's --top_k")
    parser.add_argument('--export', default=None, metavar='DIR', help='write embeddings (.npy) here')
    parser.add_argument('--device', default='auto')
    return parser


def load_model(path, vocab, device):
    try:
        checkpoint = load_checkpoint(path, map_location='cpu', aliases=VOCAB_ALIASES)
    except CheckpointError as err:
        raise SystemExit('error: %s' % err)
    opt = checkpoint.get('opt')
    if opt is None:
        raise SystemExit('error: %s stores no `opt`; predict.py needs it to rebuild the model' % path)
    if opt.vocab_size != len(vocab):
        raise SystemExit('error: the checkpoint was trained with %d words, the vocabulary has %d'
                         % (opt.vocab_size, len(vocab)))
    if opt.glove and getattr(opt, 'we_parameter', None) is None:
        opt.we_parameter = np.zeros((len(vocab), 300))  # shape only: weights come from the checkpoint
    opt.amp = False
    model = HSL(opt, device=device)
    model.load_state_dict(checkpoint['model'])
    return model, opt


@torch.no_grad()
def rank_products(model, vocab, prods, query, top_k):
    """(product ids sorted by score, scores sorted, query embeddings, product embeddings)."""
    model.val_start()
    product_ids = [int(p) for p in prods.product_ids]
    text = encode_texts(model, vocab, [query])
    products = encode_products(model, prods, product_ids, top_k)
    rows = torch.arange(len(product_ids), device=model.device)
    scores = score_pool(model, text, 0, products, rows)
    order = np.argsort(scores)[::-1]  # upstream's ranking convention
    return [product_ids[i] for i in order], scores[order], text, products


def export(folder, product_ids, text, products):
    os.makedirs(folder, exist_ok=True)
    x1, x2, x3, x4, num_boxes = [t.cpu().numpy() for t in products]
    np.save(os.path.join(folder, 'query_embeddings.npy'), np.stack([t[0].cpu().numpy() for t in text]))
    np.save(os.path.join(folder, 'product_ids.npy'), np.asarray(product_ids, np.int64))
    np.save(os.path.join(folder, 'product_num_boxes.npy'), num_boxes)
    np.save(os.path.join(folder, 'product_object_embeddings.npy'), np.stack([x1, x2], axis=2))
    np.save(os.path.join(folder, 'product_image_embeddings.npy'), np.stack([x3, x4], axis=1))


def main(argv=None):
    args = build_parser().parse_args(argv)
    path = vocab_file(args.vocab_path)
    if not os.path.isfile(path):
        raise SystemExit('error: vocabulary not found: %s (set --vocab_path)' % path)
    vocab = load_vocab(path)
    model, opt = load_model(args.resume, vocab, resolve_device(args.device))
    if args.score_agg:
        model.score_agg = args.score_agg
    folder = os.path.join(args.data_path, args.data_name, args.split)
    prods = load_records(os.path.join(folder, '%s.products.pkl' % args.split))
    prods.load_images(os.path.join(folder, '%s.ids.txt' % args.split),
                      os.path.join(folder, '%s.features.npy' % args.split))
    top_k = args.top_k or opt.top_k
    ranked, scores, text, products = rank_products(model, vocab, prods, args.query, top_k)
    print('rank\tproduct_id\tscore')
    for rank, (pid, score) in enumerate(zip(ranked[:args.topn], scores[:args.topn]), start=1):
        print('%d\t%d\t%r' % (rank, pid, float(score)))
    if args.export:
        export(args.export, [int(p) for p in prods.product_ids], text, products)
        print('=> embeddings written to %s' % args.export)
    return ranked, scores


if __name__ == '__main__':
    main()
