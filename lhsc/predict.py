"""Retrieval with a trained checkpoint: free-text query -> top-k images, image -> top-k captions,
from a precomp split; --gallery writes an HTML/PNG gallery; --export writes the split's embeddings.

    python predict.py --checkpoint runs/LHSC/checkpoint/model_best.pth.tar --data_path data \
        --split test --query "a dog runs on the beach" --image_index 0 --top_k 5 \
        [--mapping dataset_flickr30k.json --image_root flickr30k-images] [--gallery out/] [--export emb.npz]

Old spellings keep working: --model_path (= --checkpoint), --caption (= --query), --topk (= --top_k).
A free-text query is encoded on its own (a text block of one caption); split captions are encoded
in upstream's blocks of 100, so their scores equal evaluation.py's.
"""
import os
import sys

if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse

from common.errors import cli_main
from common.progress import add_progress_arg


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--checkpoint', '--model_path', dest='checkpoint', required=True, help='checkpoint (.pth.tar)')
    parser.add_argument('--data_path', default=None, help="overrides the checkpoint's opt.data_path")
    parser.add_argument('--split', default='test')
    parser.add_argument('--vocab_path', default=None)
    parser.add_argument('--query', '--caption', dest='query', action='append', default=[],
                        help='free-text query (repeatable)')
    parser.add_argument('--image_index', action='append', type=int, default=[], help='image query (repeatable)')
    parser.add_argument('--top_k', '--topk', dest='top_k', default=5, type=int)
    parser.add_argument('--mapping', default=None,
                        help='image names: Karpathy dataset_*.json or id_mapping.json '
                             '(default: <data_path>/<data_name>/id_mapping.json if present)')
    parser.add_argument('--image_root', default=None, help='folder of the pictures the mapping names')
    parser.add_argument('--gallery', default=None, metavar='DIR', help='write DIR/gallery.html and gallery.png')
    parser.add_argument('--export', default=None, metavar='PATH.npz',
                        help='write img_embs, cap_embs, cap_lens to this .npz')
    parser.add_argument('--device', default='auto')
    parser.add_argument('--max_mem', default=None, type=float)
    return add_progress_arg(parser)


def main(argv=None):
    args = build_parser().parse_args(argv)
    # heavy imports after parsing, so --help is fast
    import numpy as np

    from common.gallery import write_gallery
    from common.runtime import resolve_device
    from common.safeio import check_writable, check_writable_dir, save_npz_atomic
    from lhsc.data import get_test_loader
    from lhsc.errors import LhscInputError
    from lhsc.evaluation import encode_data, load_model, shard_attn_scores
    from lhsc.names import default_mapping, load_image_names
    from lhsc.query import encode_caption

    if args.export:
        check_writable(args.export, 'embeddings export (--export)')
    if args.gallery:
        check_writable_dir(args.gallery, 'gallery folder (--gallery)')
    if args.top_k < 1:
        raise LhscInputError('--top_k %d: must be at least 1' % args.top_k)
    model, opt, vocab, _ = load_model(args.checkpoint, args.data_path, args.vocab_path, resolve_device(args.device))
    loader = get_test_loader(args.split, opt.data_name, vocab, 100, 0, opt)
    img_embs, cap_embs, cap_lens = encode_data(model, loader)
    texts = loader.dataset.captions
    mapping = args.mapping or default_mapping(opt.data_path, opt.data_name)
    names = load_image_names(mapping, args.split, len(img_embs), args.image_root) if mapping else \
        [('image %d' % i, None) for i in range(len(img_embs))]
    results = {'captions': [], 'images': []}
    rows = []

    for text in args.query:
        query, lens = encode_caption(model, vocab, text)
        scores = shard_attn_scores(model, img_embs, query, lens, max_mem=args.max_mem, progress=False)[:, 0]
        top = np.argsort(-scores, kind='stable')[:args.top_k]
        truth = {j // 5 for j, t in enumerate(texts) if t.strip().lower() == text.strip().lower()}
        print('caption: %s' % text)
        for rank, idx in enumerate(top):
            mark = '*' if idx in truth else ' '
            print('  %d.%s image %d  %s  score %.4f  (e.g. "%s")'
                  % (rank + 1, mark, idx, names[idx][0], scores[idx], texts[5 * idx]))
        results['captions'].append((text, top.tolist(), scores[top].tolist()))
        rows.append({'query': text, 'query_image': None, 'results': [
            {'image': names[i][1], 'text': None, 'score': float(scores[i]), 'gt': int(i) in truth,
             'name': names[i][0]} for i in top]})

    for index in args.image_index:
        if not 0 <= index < len(img_embs):
            raise LhscInputError('--image_index %d: the %s split has %d images' % (index, args.split, len(img_embs)))
        scores = shard_attn_scores(model, img_embs[index:index + 1], cap_embs, cap_lens,
                                   max_mem=args.max_mem, progress=False)[0]
        top = np.argsort(-scores, kind='stable')[:args.top_k]
        print('image %d (%s):' % (index, names[index][0]))
        for rank, idx in enumerate(top):
            mark = '*' if idx // 5 == index else ' '
            print('  %d.%s caption %d  score %.4f  %s' % (rank + 1, mark, idx, scores[idx], texts[idx]))
        results['images'].append((index, top.tolist(), scores[top].tolist()))
        rows.append({'query': 'image %d: %s' % (index, names[index][0]), 'query_image': names[index][1],
                     'results': [{'image': None, 'text': texts[i], 'score': float(scores[i]),
                                  'gt': bool(i // 5 == index), 'name': 'caption %d' % i} for i in top]})

    if args.gallery and rows:
        html, png = write_gallery(args.gallery, 'LHSC retrieval (%s split)' % args.split, rows)
        print('wrote %s and %s' % (html, png))
        results['gallery'] = (html, png)
    if args.export:
        save_npz_atomic(args.export, img_embs=img_embs, cap_embs=cap_embs, cap_lens=np.asarray(cap_lens))
        print('wrote %s (img_embs %s, cap_embs %s)' % (args.export, img_embs.shape, cap_embs.shape))
    return results


if __name__ == "__main__":
    cli_main(main)
