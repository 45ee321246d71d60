"""Recall inference (AIS align_recall_test_with_mmkg_model.py): embed every image of a folder,
score every (POI name, image) pair by cosine, write 'poi_id,name,image_path,score' rows.

    python align_recall_test_with_mmkg_model.py            # upstream defaults, cwd = repo root
    python align_recall@K.py                               # then recall@5 of the written CSV

Unreadable images are skipped and counted (--strict: an error), never scored as a zeros image.
"""
import os
import sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import logging

from avas.formats import list_images, read_recall_csv, unique_pois
from avas.options import add_common_args
from common.errors import cli_main
from common.logs import print_config, setup_logging
from common.safeio import check_writable, cleanup_stale_tmp

log = logging.getLogger('avas')


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model_path', default='align_model.pth', help='ALIGN checkpoint ({"state_dict": ...})')
    p.add_argument('--bert_path', default='bert-base-chinese', help='folder with config.json + vocab.txt')
    p.add_argument('--image_dir', default='temp_recall_biztype0_fc5_imagern_500')
    p.add_argument('--in_csv', default='data/temp_recall_biztype0_fc5_imagern_500.csv')
    p.add_argument('--out_csv', default='data/align_recall@k_with_MKG_20221021_poi_500.csv')
    p.add_argument('--batch_size', default=16, type=int, help='images per forward pass')
    p.add_argument('--text_batch_size', default=64, type=int,
                   help='POI names per padded text batch (1 = upstream one-string-per-call path)')
    p.add_argument('--k', default=5, type=int, help='K of the recall@K written to --out_json')
    p.add_argument('--out_json', default=None, help='write {"recall@<K>": ...} here')
    p.add_argument('--out_scores', default=None, help='save the POI x image cosine matrix (.npy)')
    return add_common_args(p)


def prepare_outputs(args):
    """Every output is checked writable (and stale temp files removed) before any work."""
    for path, what in ((args.out_csv, 'result CSV'), (args.out_json, '--out_json file'),
                       (args.out_scores, '--out_scores file')):
        if path:
            cleanup_stale_tmp(path)
            check_writable(path, what)


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    print_config(args)
    prepare_outputs(args)
    # heavy imports wait until the arguments are parsed: --help stays fast
    from avas.align_model import build_model, encode_texts
    from avas.evaluation import recall_from_matrix
    from avas.recall import embed_images, score_matrix, write_rows
    from common.results import save_scores, write_results
    from common.runtime import resolve_device, seed_everything
    seed_everything(args.seed, args.deterministic)
    device = resolve_device(args.device)
    pois = unique_pois(read_recall_csv(args.in_csv))
    img_paths = list_images(args.image_dir)
    model = build_model(args.model_path, args.bert_path).to(device).eval()

    images = embed_images(model, img_paths, args.batch_size, device, args.amp, args.strict,
                          show_progress=not args.no_progress)
    print(images.embeddings.size(), len(images.paths))
    # upstream key_word line (:44,70) is a NameError as shipped and its value unused: dropped
    text_emb = encode_texts(model, [name for _, name in pois], device, batch_size=args.text_batch_size)
    scores = score_matrix(images.embeddings, text_emb)  # POIs x images
    write_rows(args.out_csv, pois, images.paths, scores)
    log.info('wrote %d rows (%d POIs x %d images) to %s', len(pois) * len(images.paths), len(pois),
             len(images.paths), args.out_csv)
    if args.out_scores:
        save_scores(args.out_scores, scores)
    value = None
    if args.out_json:
        value = recall_from_matrix(pois, images.paths, scores, args.k)
        print('final recall k= {:.3f}'.format(value))
        write_results(args.out_json, {'recall@%d' % args.k: value, 'n_pois': len(pois),
                                      'n_images': len(images.paths), 'n_images_skipped': len(images.bad)},
                      'avas', argv=argv, seed=args.seed, checkpoint=args.model_path, data_path=args.in_csv)
    return {'pois': pois, 'images': images.paths, 'scores': scores, 'recall': value}


if __name__ == '__main__':
    cli_main(main)
