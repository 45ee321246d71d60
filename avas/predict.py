"""Use the two stages on your own inputs.

Recall -- rank the images of a folder for a text query (title / POI name):
    python avas/predict.py --checkpoint align_model.pth --bert_path bert-base-chinese \
        --query 普陀山 --image_dir my_images [--top_k 10] [--mapping recall.csv] [--gallery out/]
    [--export result.npz]
Ranking -- which of two candidate images of an item gets more clicks:
    python avas/predict.py --checkpoint align_model.pth --bert_path bert-base-chinese \
        --ranking_ckpt shoucai_siamese_train_concat_poi_020_0.6520.ckpt --query "<item title>" \
        --poi_names "普陀山,南海观音" --poi_tables . --image_a a.jpg --image_b b.jpg
prints s1, s2 and P(a beats b) = sigmoid(s1 - s2), the RankNet probability the model is trained on.

--mapping: a recall-format CSV (poi_id,poi_name,image_url,rank_number,...) naming the images
<poi_id>_<rank_number>.jpg: results print the POI name, and the gallery marks as ground truth the
images whose POI name is the query. --gallery DIR writes DIR/gallery.html (relative paths) and
DIR/gallery.png. Old spellings --model_path, --title, --top still work.
"""
import os
import sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse

import numpy as np

from avas.options import add_common_args
from common.errors import InputError, cli_main
from common.safeio import check_writable, check_writable_dir, save_npz_atomic


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--checkpoint', '--model_path', dest='model_path', default='align_model.pth',
                   help='ALIGN checkpoint (align_model.pth)')
    p.add_argument('--bert_path', default='bert-base-chinese')
    p.add_argument('--query', '--title', dest='title', required=True, help='item title or POI name')
    p.add_argument('--image_dir', default=None, help='recall: rank the .jpg/.png images of this folder')
    p.add_argument('--top_k', '--top', dest='top', default=10, type=int, help='results printed / in the gallery')
    p.add_argument('--batch_size', default=16, type=int)
    p.add_argument('--mapping', default=None, help='recall-format CSV naming the images <poi_id>_<rank>.jpg')
    p.add_argument('--gallery', default=None, help='write a retrieval gallery (HTML + PNG) into this folder')
    p.add_argument('--export', default=None, help='save the results as PATH.npz (names, paths, scores / s1, s2, p)')
    p.add_argument('--ranking_ckpt', default=None, help='ranking: Multimodal_Model state_dict')
    p.add_argument('--image_a', default=None)
    p.add_argument('--image_b', default=None)
    p.add_argument('--poi_names', default='', help="the item's POI names, comma-separated")
    p.add_argument('--poi_tables', default=None, help='folder with the POI side tables (else zero vectors)')
    p.add_argument('--use_norm_vector', default=1, type=int)
    return add_common_args(p)


def check_args(args):
    if not (args.image_dir or args.ranking_ckpt):
        raise InputError('give --image_dir (recall) and/or --ranking_ckpt with --image_a/--image_b')
    if args.ranking_ckpt and not (args.image_a and args.image_b):
        raise InputError('--ranking_ckpt needs --image_a and --image_b')
    if args.export:
        if not args.export.endswith('.npz'):
            raise InputError('--export %s: give a file name ending in .npz' % args.export)
        check_writable(args.export, '--export file')
    if args.gallery:
        check_writable_dir(args.gallery, '--gallery folder')


def print_and_gallery(args, described):
    """Print the top-k as 'score  name'; --gallery: the HTML + PNG gallery of the same rows."""
    rows = []
    for path, score, name, poi in described[:args.top]:
        print('%.6f  %s' % (score, name))
        rows.append({'image': path, 'text': None, 'score': float(score), 'gt': poi == args.title, 'name': name})
    if args.gallery:
        # imported only when a gallery is asked for (it loads the imaging/plotting stack)
        from common.gallery import write_gallery
        html, png = write_gallery(args.gallery, 'avas: %s' % args.title,
                                  [{'query': args.title, 'query_image': None, 'results': rows}])
        print('gallery: %s  %s' % (html, png))
    return rows


def main(argv=None):
    args = get_parser().parse_args(argv)
    check_args(args)
    # heavy imports wait until the arguments are parsed: --help stays fast
    from avas.align_model import build_model
    from avas.model_local import Multimodal_Model, load_ranking_state_dict, read_ranking_checkpoint
    from avas.poi_tables import load_poi_tables
    from avas.predictor import describe, image_names, rank_pair, recall
    from common.runtime import resolve_device
    names = image_names(args.mapping) if args.mapping else {}
    device = resolve_device(args.device)
    model = build_model(args.model_path, args.bert_path).to(device).eval()
    result, export = {}, {}
    if args.image_dir:
        ranked = recall(model, args.title, args.image_dir, device, args.batch_size, args.strict, not args.no_progress)
        result['recall'] = ranked
        described = [(p, s) + describe(p, names) for p, s in ranked]
        result['gallery_rows'] = print_and_gallery(args, described)
        export.update(query=np.array(args.title), paths=np.array([d[0] for d in described], dtype=str),
                      names=np.array([d[2] for d in described], dtype=str),
                      scores=np.array([d[1] for d in described], dtype=np.float64))
    if args.ranking_ckpt:
        ranking = Multimodal_Model(model, use_norm=args.use_norm_vector)
        load_ranking_state_dict(ranking, read_ranking_checkpoint(args.ranking_ckpt), args.ranking_ckpt)
        ranking.to(device).eval()
        tables = load_poi_tables(args.poi_tables, args.use_norm_vector) if args.poi_tables else ({}, {}, {})
        s1, s2, p = rank_pair(ranking, args.title, args.poi_names, args.image_a, args.image_b, tables, device)
        print('s1 (a) = %.6f   s2 (b) = %.6f   P(a beats b) = %.4f' % (s1, s2, p))
        result['pair'] = (s1, s2, p)
        export.update(s1=np.array(s1), s2=np.array(s2), p_a_beats_b=np.array(p))
    if args.export:
        save_npz_atomic(args.export, **export)
        print('exported', args.export)
    return result


if __name__ == '__main__':
    cli_main(main)
