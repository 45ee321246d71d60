"""Build the POI side tables the ranking model reads (upstream ships them as release files, two of
them too large for the mirror; how they were made is not in the code). Port's recipe: the name
vector is the ALIGN text embedding of the POI name; the image vector is the mean of the ALIGN image
embeddings of the POI's images (normalised embeddings with use_norm=1, raw ones with 0)."""
import os

import numpy as np
import torch

from avas.align_model import encode_texts
from avas.data import (IMG_VEC_TABLE, IMG_VEC_TABLE_WO_NORM, NAME_VEC_TABLE, load_image_or_zeros)


def save_table(path, table):
    from common.checkpoint import atomic_open
    with atomic_open(path, 'wb') as f:
        np.save(f, np.array(table, dtype=object), allow_pickle=True)


@torch.no_grad()
def build_poi_vector_tables(model, poi_images, out_dir, device, use_norm=1):
    """poi_images: {poi name: [image paths]} -> writes the image and name vector tables."""
    model.eval()
    names = list(poi_images)
    name_vecs = encode_texts(model, names, device, norm=bool(use_norm)).cpu().numpy()
    paths = sorted({p for ps in poi_images.values() for p in ps})
    embedded = {}
    for start in range(0, len(paths), 16):  # each distinct image is embedded once
        chunk = paths[start:start + 16]
        imgs = torch.from_numpy(np.stack([load_image_or_zeros(p) for p in chunk])).to(device)
        embedded.update(zip(chunk, model.encode_image(imgs, norm=bool(use_norm)).cpu()))
    img_table = {name: torch.stack([embedded[p] for p in poi_images[name]]).mean(0).numpy().astype(np.float32)
                 for name in names}
    os.makedirs(out_dir, exist_ok=True)
    save_table(os.path.join(out_dir, IMG_VEC_TABLE if use_norm else IMG_VEC_TABLE_WO_NORM), img_table)
    save_table(os.path.join(out_dir, NAME_VEC_TABLE), {n: v.astype(np.float32) for n, v in zip(names, name_vecs)})
    return img_table
