"""AVAS demo: score every image of a folder against one keyword with the ALIGN (AVAS
demo/align_model_test_with_mkg.py) and write '<abs image path>,<score>' rows.

    cd avas/avas_page && python align_model_test_with_mkg.py      # upstream defaults (AVAS: cwd = demo/)

Unreadable images are skipped and counted (--strict: an error), never scored as a zeros image.
"""
import os
import sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import argparse
import logging

from avas.formats import list_images
from avas.options import add_common_args
from common.atomic import atomic_open
from common.errors import cli_main
from common.logs import print_config, setup_logging
from common.safeio import check_writable, cleanup_stale_tmp

log = logging.getLogger('avas')
WEIGHTS = './../weights/commodity_poi_mml_20211221_with_MKG_withMKG_iteration_200000_0.4215_0.407_0.018.pth'


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model_path', default=WEIGHTS)
    p.add_argument('--bert_path', default='./../weights/bert')
    p.add_argument('--image_dir', default='./../src/images_test')
    p.add_argument('--key_word', default='普陀山')
    p.add_argument('--batch_size', default=8, type=int)
    p.add_argument('--out_csv', default=None, help="default 'align_<key_word>图片_with_MKG.csv'")
    return add_common_args(p)


def write_scores(path, rows):
    with atomic_open(path, 'w') as f:
        for img_path, score in rows:
            f.write(','.join([str(img_path), str(score)]) + '\n')


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    print_config(args)
    out_csv = args.out_csv or 'align_{}图片_with_MKG.csv'.format(args.key_word)
    cleanup_stale_tmp(out_csv)
    check_writable(out_csv, 'score CSV')
    # heavy imports wait until the arguments are parsed: --help stays fast
    from avas.align_model import build_model, encode_texts
    from avas.recall import embed_images
    from common.runtime import resolve_device
    device = resolve_device(args.device)
    model = build_model(args.model_path, args.bert_path).to(device).eval()
    img_paths = [os.path.abspath(p) for p in list_images(args.image_dir)]
    text_emb = encode_texts(model, [args.key_word], device)
    print('iterations=', (len(img_paths) + args.batch_size - 1) // args.batch_size)
    images = embed_images(model, img_paths, args.batch_size, device, args.amp, args.strict,
                          show_progress=not args.no_progress, upstream_prints=False)
    res = (images.embeddings @ text_emb.t()).cpu().numpy().reshape(-1)  # not squeeze (quirk 9)
    print(res)
    write_scores(out_csv, zip(images.paths, res))
    log.info('wrote %d scores to %s', len(images.paths), out_csv)
    return out_csv


if __name__ == '__main__':
    cli_main(main)
