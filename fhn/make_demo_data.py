#!/usr/bin/env python
"""Write a tiny Polyvore-U-shaped dataset: `make_demo_data.py OUT_DIR` -> OUT_DIR/data/polyvore/...

Each user prefers one style (colour + pattern); items are synthetic 291x291 product
images (category shape x style pattern). Layout as spec section 3: tuples_N/image_list_*,
tuples_{train,val,test}_{posi,nega}, fill_in_blank_test, images/291x291, images/lmdb
(built with scripts/build_polyvore.py), sentence_vector/semantic.pkl.
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

CATES = ["top", "bottom", "shoe"]
COLOURS = [(200, 30, 30), (30, 60, 200), (30, 160, 60), (230, 180, 20), (140, 40, 160),
           (20, 170, 170), (120, 80, 40), (40, 40, 40)]


def item_name(cate, idx, style):
    return hashlib.sha1(("%s-%d-%d" % (cate, idx, style)).encode()).hexdigest() + ".jpg"


def draw_item(cate, style, rng, size=291):
    """Style = colour + pattern over the whole product photo; category = silhouette shape."""
    colour = COLOURS[style % len(COLOURS)]
    img = Image.new("RGB", (size, size), colour)
    d = ImageDraw.Draw(img)
    pattern = style % 4
    light = tuple(min(255, c + 90) for c in colour)
    dark = tuple(max(0, c - 90) for c in colour)
    for k in range(0, size, 24):
        if pattern == 0:  # vertical stripes
            d.rectangle([k, 0, k + 9, size], fill=light)
        elif pattern == 1:  # dots
            for m in range(0, size, 24):
                d.ellipse([k + 4, m + 4, k + 14, m + 14], fill=light)
        elif pattern == 2:  # horizontal stripes
            d.rectangle([0, k, size, k + 9], fill=dark)
        else:  # checks
            for m in range(0, size, 48):
                d.rectangle([k, m + (k // 24 % 2) * 24, k + 23, m + 23 + (k // 24 % 2) * 24], fill=dark)
    jitter = int(rng.integers(-12, 13))
    outline = (255, 255, 255)
    if cate == 0:  # top: torso + sleeves
        d.polygon([(90 + jitter, 80), (200 + jitter, 80), (250 + jitter, 140), (225 + jitter, 160),
                   (200 + jitter, 130), (200 + jitter, 230), (90 + jitter, 230), (90 + jitter, 130),
                   (65 + jitter, 160), (40 + jitter, 140)], outline=outline, width=6)
    elif cate == 1:  # bottom: two legs
        d.polygon([(100 + jitter, 40), (190 + jitter, 40), (200 + jitter, 260), (155 + jitter, 260),
                   (145 + jitter, 120), (135 + jitter, 260), (90 + jitter, 260)], outline=outline, width=6)
    else:  # shoe: low wide shape
        d.polygon([(60 + jitter, 120), (110 + jitter, 120), (120 + jitter, 170), (240 + jitter, 190),
                   (240 + jitter, 215), (60 + jitter, 215)], outline=outline, width=6)
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
    from fhn.scripts.build_polyvore import create_lmdb
    create_lmdb(os.path.join(root, "images", "lmdb"), img_dir, map_size=2 ** 26)
    return root


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--items", type=int, default=12, help="items per category")
    parser.add_argument("--data_set", default="tuples_630")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root = make_data(args.out_dir, args.users, args.items, data_set=args.data_set, seed=args.seed)
    print("demo data written to %s" % root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
