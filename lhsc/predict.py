"""Retrieval with a trained checkpoint: free-text caption -> top-k images, image -> top-k captions,
from a precomp split; --export writes the split's embeddings.

    python predict.py --model_path runs/LHSC/checkpoint/model_best.pth.tar --data_path data \
        --split test --caption "a dog runs on the beach" --image_index 0 --topk 5 [--export emb.npz]

A free-text query is encoded on its own (a text block of one caption); split captions are encoded
in upstream's blocks of 100, so their scores equal evaluation.py's.
"""
import os
import sys

if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse

import numpy as np
import torch

from common.checkpoint import atomic_open
from common.runtime import resolve_device
from common.text import tokenize
from lhsc.data import DataError, collate_fn, get_test_loader
from lhsc.evaluation import encode_data, load_model, shard_attn_scores


def encode_caption(model, vocab, text):
    ids = [vocab('<start>')] + [vocab(t) for t in tokenize(text)] + [vocab('<end>')]
    _, captions, lengths, _ = collate_fn([(torch.zeros(1), torch.Tensor(ids), 0, 0)])
    with torch.no_grad():
        return model.txt_enc(captions.to(model.device), lengths).float().cpu().numpy(), lengths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model_path', required=True)
    parser.add_argument('--data_path', default=None, help="overrides the checkpoint's opt.data_path")
    parser.add_argument('--split', default='test')
    parser.add_argument('--vocab_path', default=None)
    parser.add_argument('--caption', action='append', default=[], help='free-text query (repeatable)')
    parser.add_argument('--image_index', action='append', type=int, default=[], help='image query (repeatable)')
    parser.add_argument('--topk', default=5, type=int)
    parser.add_argument('--export', default=None, help='write img_embs, cap_embs, cap_lens to this .npz')
    parser.add_argument('--device', default='auto')
    parser.add_argument('--max_mem', default=None, type=float)
    args = parser.parse_args(argv)

    model, opt, vocab, _ = load_model(args.model_path, args.data_path, args.vocab_path, resolve_device(args.device))
    try:
        loader = get_test_loader(args.split, opt.data_name, vocab, 100, 0, opt)
    except DataError as err:
        raise SystemExit(str(err))
    img_embs, cap_embs, cap_lens = encode_data(model, loader)
    texts = loader.dataset.captions
    results = {'captions': [], 'images': []}

    for text in args.caption:
        query, lens = encode_caption(model, vocab, text)
        scores = shard_attn_scores(model, img_embs, query, lens, max_mem=args.max_mem, progress=False)[:, 0]
        top = np.argsort(-scores, kind='stable')[:args.topk]
        print('caption: %s' % text)
        for rank, idx in enumerate(top):
            print('  %d. image %d  score %.4f  (e.g. "%s")' % (rank + 1, idx, scores[idx], texts[5 * idx]))
        results['captions'].append((text, top.tolist(), scores[top].tolist()))

    for index in args.image_index:
        if not 0 <= index < len(img_embs):
            raise SystemExit('--image_index %d: the %s split has %d images' % (index, args.split, len(img_embs)))
        scores = shard_attn_scores(model, img_embs[index:index + 1], cap_embs, cap_lens,
                                   max_mem=args.max_mem, progress=False)[0]
        top = np.argsort(-scores, kind='stable')[:args.topk]
        print('image %d:' % index)
        for rank, idx in enumerate(top):
            mark = '*' if idx // 5 == index else ' '
            print('  %d.%s caption %d  score %.4f  %s' % (rank + 1, mark, idx, scores[idx], texts[idx]))
        results['images'].append((index, top.tolist(), scores[top].tolist()))

    if args.export:
        with atomic_open(args.export, 'wb') as f:
            np.savez(f, img_embs=img_embs, cap_embs=cap_embs, cap_lens=np.asarray(cap_lens))
        print('wrote %s (img_embs %s, cap_embs %s)' % (args.export, img_embs.shape, cap_embs.shape))
    return results


if __name__ == "__main__":
    main()
