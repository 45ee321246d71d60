"""Use the two stages on your own inputs.

Recall -- rank the images of a folder for a title / POI name:
    python avas/predict.py --model_path align_model.pth --bert_path bert-base-chinese \
        --title 普陀山 --image_dir my_images [--top 10]
Ranking -- which of two candidate images of an item gets more clicks:
    python avas/predict.py --model_path align_model.pth --bert_path bert-base-chinese \
        --ranking_ckpt shoucai_siamese_train_concat_poi_020_0.6520.ckpt --title "<item title>" \
        --poi_names "普陀山,南海观音" --poi_tables . --image_a a.jpg --image_b b.jpg
prints s1, s2 and P(a beats b) = sigmoid(s1 - s2), the RankNet probability the model is trained on.
"""
import os
import sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse

import numpy as np
import torch

from avas.align_model import build_model, encode_texts
from avas.data import list_images, load_image_or_zeros
from common.checkpoint import CheckpointError


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model_path', default='align_model.pth')
    p.add_argument('--bert_path', default='bert-base-chinese')
    p.add_argument('--title', required=True, help='item title or POI name')
    p.add_argument('--image_dir', default=None, help='recall: rank the .jpg/.png images of this folder')
    p.add_argument('--top', default=10, type=int)
    p.add_argument('--batch_size', default=16, type=int)
    p.add_argument('--ranking_ckpt', default=None, help='ranking: Multimodal_Model state_dict')
    p.add_argument('--image_a', default=None)
    p.add_argument('--image_b', default=None)
    p.add_argument('--poi_names', default='', help="the item's POI names, comma-separated")
    p.add_argument('--poi_tables', default=None, help='folder with the POI side tables (else zero vectors)')
    p.add_argument('--use_norm_vector', default=1, type=int)
    p.add_argument('--device', default='auto')
    return p


@torch.no_grad()
def recall(model, title, image_dir, device, batch_size=16):
    """[(image path, cosine score)] sorted by descending score (ties keep file order)."""
    paths = list_images(image_dir)
    text = encode_texts(model, [title], device)
    scores = []
    for i in range(0, len(paths), batch_size):
        imgs = torch.from_numpy(np.stack([load_image_or_zeros(p) for p in paths[i:i + batch_size]])).to(device)
        scores.extend((model.encode_image(imgs) @ text.t()).reshape(-1).tolist())
    return sorted(zip(paths, scores), key=lambda x: -x[1])


@torch.no_grad()
def rank_pair(ranking, title, poi_names, image_a, image_b, tables, device):
    from avas.data import poi_inputs
    pic_num, img_vecs, name_vecs = tables
    m, t, n = poi_inputs(poi_names, pic_num, img_vecs, name_vecs)
    text = title if len(poi_names.strip()) < 1 else poi_names
    feat = encode_texts(ranking.align_model, [text], device, norm=bool(ranking.use_norm))
    args = (feat, m[None].to(device), t[None].to(device), torch.tensor([[float(n)]], device=device))
    imgs = [torch.from_numpy(load_image_or_zeros(p))[None].to(device) for p in (image_a, image_b)]
    s1, s2 = ranking(imgs[0], *args).item(), ranking(imgs[1], *args).item()
    return s1, s2, float(torch.sigmoid(torch.tensor(s1 - s2)))


def main(argv=None):
    args = get_parser().parse_args(argv)
    from common.runtime import resolve_device
    device = resolve_device(args.device)
    try:
        model = build_model(args.model_path, args.bert_path).to(device).eval()
        result = {}
        if args.image_dir:
            ranked = recall(model, args.title, args.image_dir, device, args.batch_size)
            for path, score in ranked[:args.top]:
                print('%.6f  %s' % (score, path))
            result['recall'] = ranked
        if args.ranking_ckpt:
            if not (args.image_a and args.image_b):
                raise SystemExit('error: --ranking_ckpt needs --image_a and --image_b')
            from avas.data import load_poi_tables
            from avas.model_local import Multimodal_Model, load_ranking_state_dict, read_ranking_checkpoint
            ranking = Multimodal_Model(model, use_norm=args.use_norm_vector)
            load_ranking_state_dict(ranking, read_ranking_checkpoint(args.ranking_ckpt), args.ranking_ckpt)
            ranking.to(device).eval()
            tables = load_poi_tables(args.poi_tables, args.use_norm_vector) if args.poi_tables else ({}, {}, {})
            s1, s2, p = rank_pair(ranking, args.title, args.poi_names, args.image_a, args.image_b, tables, device)
            print('s1 (a) = %.6f   s2 (b) = %.6f   P(a beats b) = %.4f' % (s1, s2, p))
            result['pair'] = (s1, s2, p)
    except (FileNotFoundError, ValueError, CheckpointError) as err:
        raise SystemExit('error: %s' % err)
    if not result:
        raise SystemExit('error: give --image_dir (recall) and/or --ranking_ckpt with --image_a/--image_b')
    return result


if __name__ == '__main__':
    main()
