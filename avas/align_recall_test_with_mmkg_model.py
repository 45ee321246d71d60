"""Recall inference (AIS align_recall_test_with_mmkg_model.py): embed every image of a folder,
score every (POI name, image) pair by cosine, write 'poi_id,name,image_path,score' rows.

    python align_recall_test_with_mmkg_model.py            # upstream defaults, cwd = repo root
    python align_recall@K.py                               # then recall@5 of the written CSV
"""
import os
import sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import time

import numpy as np
import torch

from common.checkpoint import CheckpointError
from avas.align_model import build_model, encode_texts
from avas.data import list_images, load_image_or_zeros, read_recall_csv, unique_pois


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
    from common.runtime import add_runtime_args
    add_runtime_args(p)
    return p


@torch.no_grad()
def embed_images(model, img_paths, batch_size, device, amp=False):
    from common.runtime import autocast
    iterations = (len(img_paths) + batch_size - 1) // batch_size
    print('iterations=', len(img_paths) // batch_size + 1)  # upstream's count (may include an empty batch)
    chunks = []
    for i in range(iterations):
        batch = img_paths[i * batch_size:(i + 1) * batch_size]
        imgs = torch.from_numpy(np.stack([load_image_or_zeros(x) for x in batch])).to(device)
        start = time.time()
        with autocast(device, amp):
            chunks.append(model.encode_image(imgs).float())
        print('batch=', batch_size, 'costs=', time.time() - start)
    return torch.cat(chunks)


def write_rows(path, pois, img_paths, scores):
    """One line per (POI, image): poi_id,name,image_path,str(np.float32 score), POIs outer."""
    from common.checkpoint import atomic_open
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    with atomic_open(path, 'w') as f:
        for i, (poi_id, name) in enumerate(pois):
            f.writelines('%s,%s,%s,%s\n' % (poi_id, name, img, str(score)) for img, score in zip(img_paths, scores[i]))


def recall_from_matrix(pois, img_paths, scores, k):
    """recall@K of align_recall@K.py computed on the score matrix: a stable descending sort keeps
    ties in listing order, exactly like sorting the written rows."""
    from avas.evaluation import image_id
    ids = np.array([image_id(p) for p in img_paths])
    by_poi = {}  # align_recall@K groups rows by poi_id only (one id may carry several names)
    for i, (poi_id, _) in enumerate(pois):
        by_poi.setdefault(poi_id, []).append(i)
    for poi_id, rows in by_poi.items():
        flat, flat_ids = scores[rows].reshape(-1), np.tile(ids, len(rows))
        by_poi[poi_id] = bool(np.any(flat_ids[np.argsort(-flat, kind='stable')[:k]] == poi_id))
    return sum(by_poi.values()) / len(by_poi)


def main(argv=None):
    args = get_parser().parse_args(argv)
    from common.runtime import resolve_device, seed_everything
    seed_everything(args.seed, args.deterministic)
    device = resolve_device(args.device)
    try:
        pois = unique_pois(read_recall_csv(args.in_csv))
        img_paths = list_images(args.image_dir)
        model = build_model(args.model_path, args.bert_path).to(device).eval()
    except (FileNotFoundError, ValueError, CheckpointError) as err:
        raise SystemExit('error: %s' % err)
    images_emb = embed_images(model, img_paths, args.batch_size, device, args.amp)
    print(images_emb.size(), len(img_paths))

    # upstream key_word line (:44,70) is a NameError as shipped and its value unused: dropped
    text_emb = encode_texts(model, [name for _, name in pois], device, batch_size=args.text_batch_size)
    scores = (images_emb @ text_emb.t()).t().cpu().numpy().astype(np.float32)  # POIs x images
    write_rows(args.out_csv, pois, img_paths, scores)
    print('wrote %d rows (%d POIs x %d images) to %s' % (len(pois) * len(img_paths), len(pois), len(img_paths),
                                                         args.out_csv))
    if args.out_scores:
        from common.results import save_scores
        save_scores(args.out_scores, scores)
    value = None
    if args.out_json:
        from common.results import write_results
        value = recall_from_matrix(pois, img_paths, scores, args.k)
        print('final recall k= {:.3f}'.format(value))
        write_results(args.out_json, {'recall@%d' % args.k: value, 'n_pois': len(pois),
                                      'n_images': len(img_paths)}, 'avas', argv=argv, seed=args.seed,
                      checkpoint=args.model_path, data_path=args.in_csv)
    return {'pois': pois, 'images': img_paths, 'scores': scores, 'recall': value}


if __name__ == '__main__':
    main()
