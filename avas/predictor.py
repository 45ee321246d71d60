"""What predict.py computes: a text query against a folder of images (recall), and the ranking
model's verdict on two candidate images of one item."""
import os
from types import SimpleNamespace

import torch

from avas.align_model import encode_texts
from avas.data import poi_inputs
from avas.formats import list_images, load_image, poi_text, read_recall_csv, recall_image_name
from avas.recall import embed_images


@torch.no_grad()
def recall(model, title, image_dir, device, batch_size=16, strict=False, show_progress=True):
    """[(image path, cosine score)] sorted by descending score (ties keep file order); unreadable
    images are skipped and reported (strict: an error)."""
    images = embed_images(model, list_images(image_dir), batch_size, device, strict=strict,
                          show_progress=show_progress, upstream_prints=False)
    scores = (images.embeddings @ encode_texts(model, [title], device).t()).reshape(-1).tolist()
    return sorted(zip(images.paths, scores), key=lambda x: -x[1])


def image_names(mapping_csv):
    """{'<poi_id>_<rank>.jpg': (poi name, rank)} from a recall-format CSV."""
    return {recall_image_name(r): (r.name, r.rank_number) for r in read_recall_csv(mapping_csv)}


def describe(path, names):
    """(display name, POI name or None) of one image."""
    base = os.path.basename(path)
    if base in names:
        poi, rank = names[base]
        return '%s #%s (%s)' % (poi, rank, base), poi
    return base, None


@torch.no_grad()
def rank_pair(ranking, title, poi_names, image_a, image_b, tables, device):
    """(s1, s2, P(a beats b) = sigmoid(s1 - s2)) of the ranking model for one item."""
    pic_num, img_vecs, name_vecs = tables
    m, t, n = poi_inputs(poi_names, pic_num, img_vecs, name_vecs)
    feat = encode_texts(ranking.align_model, [poi_text(SimpleNamespace(title=title, poi_names=poi_names))], device, norm=bool(ranking.use_norm))
    args = (feat, m[None].to(device), t[None].to(device), torch.tensor([[float(n)]], device=device))
    imgs = [torch.from_numpy(load_image(p))[None].to(device) for p in (image_a, image_b)]
    s1, s2 = ranking(imgs[0], *args).item(), ranking(imgs[1], *args).item()
    return s1, s2, float(torch.sigmoid(torch.tensor(s1 - s2)))
