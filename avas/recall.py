"""Recall-stage inference shared by the recall script, the AVAS keyword scorer and predict.py:
embed a folder of images (bad images skipped and counted, or an error with --strict), score them
against texts by cosine, write upstream's result rows."""
import time
from collections import namedtuple

import numpy as np
import torch

from avas.formats import load_image, report_bad_images
from common.atomic import atomic_open
from common.errors import InputError
from common.progress import progress
from common.runtime import autocast
from common.safeio import BadImageError

ImageEmbeddings = namedtuple('ImageEmbeddings', 'embeddings paths bad')


def _load_batch(paths, strict):
    arrays, kept, bad = [], [], []
    for path in paths:
        try:
            arrays.append(load_image(path))
            kept.append(path)
        except BadImageError as err:
            if strict:
                raise BadImageError('%s (--strict)' % err) from None
            bad.append((path, str(err).split(': ', 1)[-1]))
    return arrays, kept, bad


@torch.no_grad()
def embed_images(model, img_paths, batch_size, device, amp=False, strict=False, show_progress=True,
                 upstream_prints=True):
    """Embed the images batch by batch (upstream's 'iterations=' / 'batch= costs=' lines kept).
    Returns ImageEmbeddings(embeddings (N, 512), the N kept paths, [(path, reason)] skipped)."""
    iterations = (len(img_paths) + batch_size - 1) // batch_size
    if upstream_prints:
        print('iterations=', len(img_paths) // batch_size + 1)  # upstream's count (may include an empty batch)
    chunks, kept, bad = [], [], []
    for i in progress(range(iterations), desc='embed images', unit='batch', enabled=show_progress):
        arrays, batch_kept, batch_bad = _load_batch(img_paths[i * batch_size:(i + 1) * batch_size], strict)
        bad.extend(batch_bad)
        if not arrays:
            continue
        start = time.time()
        with autocast(device, amp):
            chunks.append(model.encode_image(torch.from_numpy(np.stack(arrays)).to(device)).float())
        kept.extend(batch_kept)
        if upstream_prints:
            print('batch=', batch_size, 'costs=', time.time() - start)
    report_bad_images(bad, len(img_paths))
    if not kept:
        raise InputError('none of the %d images could be read (first: %s); check the image folder'
                         % (len(img_paths), img_paths[0] if img_paths else '-'))
    return ImageEmbeddings(torch.cat(chunks), kept, bad)


def score_matrix(image_emb, text_emb):
    """Cosine scores, texts x images, float32 (one matmul instead of upstream's per-POI products)."""
    return (image_emb @ text_emb.t()).t().cpu().numpy().astype(np.float32)


def write_rows(path, pois, img_paths, scores):
    """One line per (POI, image): poi_id,name,image_path,str(np.float32 score), POIs outer."""
    with atomic_open(path, 'w') as f:
        for i, (poi_id, name) in enumerate(pois):
            f.writelines('%s,%s,%s,%s\n' % (poi_id, name, img, str(score)) for img, score in zip(img_paths, scores[i]))
