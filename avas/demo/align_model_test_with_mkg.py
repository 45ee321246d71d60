"""AVAS demo: score every image of a folder against one keyword with the ALIGN (AVAS
demo/align_model_test_with_mkg.py) and write '<abs image path>,<score>' rows.

    cd avas/demo && python align_model_test_with_mkg.py      # upstream defaults (cwd = demo/)
"""
import os
import sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import argparse

import numpy as np
import torch

from common.checkpoint import CheckpointError
from avas.align_model import build_model, encode_texts
from avas.data import list_images, load_image_or_zeros

WEIGHTS = './../weights/commodity_poi_mml_20211221_with_MKG_withMKG_iteration_200000_0.4215_0.407_0.018.pth'


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model_path', default=WEIGHTS)
    p.add_argument('--bert_path', default='./../weights/bert')
    p.add_argument('--image_dir', default='./../src/images_test')
    p.add_argument('--key_word', default='普陀山')
    p.add_argument('--batch_size', default=8, type=int)
    p.add_argument('--out_csv', default=None, help="default 'align_<key_word>图片_with_MKG.csv'")
    from common.runtime import add_runtime_args
    add_runtime_args(p)
    return p


@torch.no_grad()
def main(argv=None):
    args = get_parser().parse_args(argv)
    from common.checkpoint import atomic_open
    from common.runtime import resolve_device
    device = resolve_device(args.device)
    try:
        model = build_model(args.model_path, args.bert_path).to(device).eval()
        img_paths = [os.path.abspath(p) for p in list_images(args.image_dir)]
    except (FileNotFoundError, ValueError, CheckpointError) as err:
        raise SystemExit('error: %s' % err)
    text_emb = encode_texts(model, [args.key_word], device)
    rows = []
    iterations = (len(img_paths) + args.batch_size - 1) // args.batch_size
    print('iterations=', iterations)
    for i in range(iterations):
        batch = img_paths[i * args.batch_size:(i + 1) * args.batch_size]
        imgs = torch.from_numpy(np.stack([load_image_or_zeros(x) for x in batch])).to(device)
        res = (model.encode_image(imgs) @ text_emb.t()).cpu().numpy().reshape(-1)  # not squeeze (quirk 9)
        print(res)
        rows.extend(zip(batch, res))
    out_csv = args.out_csv or 'align_{}图片_with_MKG.csv'.format(args.key_word)
    with atomic_open(out_csv, 'w') as f:
        for path, score in rows:
            f.write(','.join([str(path), str(score)]) + '\n')
    print('wrote', out_csv)
    return out_csv


if __name__ == '__main__':
    main()
