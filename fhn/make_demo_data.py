#!/usr/bin/env python
"""Write a tiny Polyvore-U-shaped dataset: `make_demo_data.py OUT_DIR` -> OUT_DIR/data/polyvore/...

Each user prefers one style (a colour); items are synthetic 291x291 product images
(style colour over the whole photo x category silhouette and pattern). Layout as spec section 3: tuples_N/image_list_*,
tuples_{train,val,test}_{posi,nega}, fill_in_blank_test, images/291x291, images/lmdb
(packed by fhn.image_store.pack_images, as scripts/build_polyvore.py does), sentence_vector/semantic.pkl.
"""
import os
import sys

if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402
import hashlib  # noqa: E402
import pickle  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from common.errors import cli_main  # noqa: E402
from common.safeio import check_writable_dir  # noqa: E402
from fhn.image_store import pack_images  # noqa: E402

CATES = ["top", "bottom", "shoe"]
# one colour per style, far apart in hue and brightness: even a randomly initialised CNN
# (no ImageNet weights offline) maps them to clearly different features
COLOURS = [(225, 25, 25), (20, 40, 210), (245, 245, 235), (20, 20, 20), (250, 210, 0), (0, 150, 60)]


def item_name(cate, idx, style):
    return hashlib.sha1(("%s-%d-%d" % (cate, idx, style)).encode()).hexdigest() + ".jpg"


def draw_item(cate, style, rng, size=291):
    """Style = colour of the whole photo (large flat regions); category = silhouette + its pattern."""
    colour = COLOURS[style % len(COLOURS)]
    backdrop = tuple(int(0.8 * c + 0.2 * 255) for c in colour)
    shade = tuple(int(0.6 * c + 0.4 * 128) for c in colour)
    img = Image.new("RGB", (size, size), backdrop)
    d = ImageDraw.Draw(img)
    j = int(rng.integers(-10, 11))  # position jitter
    if cate == 0:  # top: torso + sleeves, horizontal bands
        d.polygon([(70 + j, 40), (220 + j, 40), (285 + j, 120), (245 + j, 150), (220 + j, 115),
                   (220 + j, 270), (70 + j, 270), (70 + j, 115), (45 + j, 150), (5 + j, 120)],
                  fill=colour)
        for k in range(80, 260, 60):
            d.rectangle([70 + j, k, 220 + j, k + 12], fill=shade)
    elif cate == 1:  # bottom: two legs, a waistband
        d.polygon([(60 + j, 10), (230 + j, 10), (245 + j, 285), (165 + j, 285), (145 + j, 110),
                   (125 + j, 285), (45 + j, 285)], fill=colour)
        d.rectangle([60 + j, 10, 230 + j, 30], fill=shade)
    else:  # shoe: low wide shape, a sole
        d.polygon([(20 + j, 60), (120 + j, 60), (135 + j, 140), (280 + j, 170), (280 + j, 250),
                   (20 + j, 250)], fill=colour)
        d.rectangle([20 + j, 235, 280 + j, 255], fill=shade)
    return img


def sample_outfit(rng, style, items_by_style, num_slots, p_style=0.9):
    out = []
    for slot in range(num_slots):
        cate = [0, 0, 1, 2][slot] if num_slots == 4 else slot
        pool = items_by_style[cate][style] if rng.random() < p_style else \
            [i for s in items_by_style[cate] for i in s]
        out.append(int(rng.choice(pool)))
    if num_slots == 4:
        if rng.random() < 0.5:
            out[1] = -1
        elif out[1] == out[0]:
            out[1] = -1
    return out


def write_csv(path, header, rows):
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for r in rows:
            f.write(",".join(str(int(x)) for x in r) + "\n")


def make_data(out_dir, users=4, items=12, posi=(6, 2, 5), nega_ratio=(1, 1, 4),
              data_set="tuples_630", seed=0, semantic_dim=2400):
    rng = np.random.default_rng(seed)
    root = os.path.join(out_dir, "data", "polyvore")
    variable = data_set in ("tuples_519", "tuples_32")
    num_slots = 4 if variable else 3
    header = ["user"] + (["top", "top", "bottom", "shoe"] if variable else CATES)
    img_dir = os.path.join(root, "images", "291x291")
    tpl_dir = os.path.join(root, data_set)
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(tpl_dir, exist_ok=True)
    os.makedirs(os.path.join(root, "sentence_vector"), exist_ok=True)
    styles = users
    items_by_style = [[[] for _ in range(styles)] for _ in CATES]
    semantic = {}
    for c, cate in enumerate(CATES):
        names = []
        for i in range(items):
            style = i % styles
            name = item_name(cate, i, style)
            names.append(name)
            items_by_style[c][style].append(i)
            draw_item(c, style, rng).save(os.path.join(img_dir, name), quality=90)
            vec = rng.normal(0, 0.05, semantic_dim)
            vec[style * 16:(style + 1) * 16] += 1.0
            vec[semantic_dim // 2 + c] += 1.0
            semantic[name] = vec.astype(np.float64)
        with open(os.path.join(tpl_dir, "image_list_%s" % cate), "w") as f:
            f.write("\n".join(names) + "\n")
    with open(os.path.join(root, "sentence_vector", "semantic.pkl"), "wb") as f:
        pickle.dump(semantic, f)
    positives = set()
    split_rows = {}
    for phase, n_posi, ratio in zip(("train", "val", "test"), posi, nega_ratio):
        prow, nrow = [], []
        for u in range(users):
            for _ in range(n_posi):
                o = sample_outfit(rng, u, items_by_style, num_slots)
                prow.append([u] + o)
                positives.add(tuple(o))
        for row in prow:  # R negatives per positive: row i belongs to positive i // R
            for _ in range(ratio):
                while True:
                    other = int(rng.integers(styles))
                    o = sample_outfit(rng, other, items_by_style, num_slots, p_style=0.0)
                    if tuple(o) not in positives:
                        break
                nrow.append([row[0]] + o)
        write_csv(os.path.join(tpl_dir, "tuples_%s_posi" % phase), header, prow)
        write_csv(os.path.join(tpl_dir, "tuples_%s_nega" % phase), header, nrow)
        split_rows[phase] = prow
    # FITB: num_cand=4 outfits per row, first = truth, others differ in one slot
    fitb = []
    for row in split_rows["test"]:
        u, o = row[0], row[1:]
        slot = int(rng.integers(num_slots - 2, num_slots)) if variable else int(rng.integers(num_slots))
        cate = [0, 0, 1, 2][slot] if variable else slot
        cands = [i for i in range(items) if i != o[slot]]
        picks = rng.choice(cands, 3, replace=False)
        q = [u] + list(o)
        for p in picks:
            alt = list(o)
            alt[slot] = int(p)
            q += [u] + alt
        fitb.append(q)
        del cate
    write_csv(os.path.join(tpl_dir, "fill_in_blank_test"), header * 4, fitb)
    pack_images(os.path.join(root, "images", "lmdb"), img_dir, map_size=2 ** 26, strict=True)
    return root


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--items", type=int, default=12, help="items per category")
    parser.add_argument("--data_set", default="tuples_630")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    check_writable_dir(args.out_dir, "output folder")
    root = make_data(args.out_dir, args.users, args.items, data_set=args.data_set, seed=args.seed)
    print("demo data written to %s" % root)
    return 0


if __name__ == "__main__":
    cli_main(main)
