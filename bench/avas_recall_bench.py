"""Recall inference speed of the avas port vs upstream's path, on one random-weight ALIGN with the
real bert-base-chinese config (4 layers, H=768) and vocabulary.

Texts: the fast path (avas/text_batches.py) embeds POI names in padded batches with attention
masks; the reference (avas.align_model.encode_texts_reference) tokenises and embeds one string per
call as upstream does (align_recall_test_with_mmkg_model.py:123-126). Images: both embed
batches of 16 preprocessed photos (same code path). Embeddings must agree to 1e-5.

    python bench/avas_recall_bench.py [--n_texts 200] [--n_images 32] [--threads 1]
"""
import os
import sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import time

import numpy as np
import torch

from avas.align_model import ALIGN, encode_texts_reference
from avas.formats import list_images, load_image, read_recall_csv, unique_pois
from avas.text_batches import encode_texts_batched

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(os.path.dirname(HERE), 'avas', 'data')


def timed(fn, repeat):
    best, result = float('inf'), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--n_texts', default=200, type=int)
    p.add_argument('--n_images', default=32, type=int)
    p.add_argument('--text_batch_size', default=64, type=int)
    p.add_argument('--threads', default=1, type=int)
    p.add_argument('--repeat', default=2, type=int)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = ALIGN(bert_path=os.path.join(DATA, 'bert')).eval()
    texts = [n for _, n in unique_pois(read_recall_csv(os.path.join(DATA, 'temp_recall_biztype0_fc5_imagern_500.csv')))]
    texts = texts[:args.n_texts]
    device = torch.device('cpu')

    t_up, e_up = timed(lambda: encode_texts_reference(model, texts, device), args.repeat)
    t_port, e_port = timed(lambda: encode_texts_batched(model, texts, device, batch_size=args.text_batch_size),
                           args.repeat)
    diff = (e_up - e_port).abs().max().item()

    paths = (list_images(os.path.join(DATA, 'images_test')) * 4)[:args.n_images]

    @torch.no_grad()
    def images():
        out = []
        for i in range(0, len(paths), 16):
            batch = torch.from_numpy(np.stack([load_image(x) for x in paths[i:i + 16]]))
            out.append(model.encode_image(batch))
        return torch.cat(out)

    t_img, _ = timed(images, 1)
    print('avas recall inference (CPU, %d thread(s), random weights, bert-base config with 4 layers)' % args.threads)
    print('%-44s %10s %12s' % ('path', 'seconds', 'items/s'))
    print('%-44s %10.3f %12.1f' % ('texts: upstream one string per call', t_up, len(texts) / t_up))
    print('%-44s %10.3f %12.1f' % ('texts: port, padded batches of %d' % args.text_batch_size, t_port, len(texts) / t_port))
    print('%-44s %10.3f %12.1f' % ('images: batches of 16 (both)', t_img, len(paths) / t_img))
    print('text speed-up (port / upstream): %.2fx' % (t_up / t_port))
    print('max |embedding difference|: %.2e  (%s 1e-5)' % (diff, 'within' if diff <= 1e-5 else 'EXCEEDS'))
    if diff > 1e-5:
        raise SystemExit(1)
    return {'texts_per_s_upstream': len(texts) / t_up, 'texts_per_s_port': len(texts) / t_port,
            'images_per_s': len(paths) / t_img, 'ratio': t_up / t_port, 'max_diff': diff}


if __name__ == '__main__':
    main()
