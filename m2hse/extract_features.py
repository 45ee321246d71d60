"""Extract the image features M2HSE reads, from a folder of images (the recipe of the README/paper;
upstream ships no extractor).

For every split it writes, next to the captions and labels, exactly the files the loaders expect:
    <global_dir>/{split}_cnns.npy   (N, 4096)     AlexNet (ImageNet) fc7 of the whole image
    <global_dir>/{split}_bovws.npy  (N, words)    BoVW histogram of the whole image's SIFT descriptors
    <local_dir>/{split}_cnns.npy    (N, 9, 4096)  fc7 of each block of a uniform 3x3 grid (row-major)
    <local_dir>/{split}_bovws.npy   (N, 9, words) BoVW histogram of the descriptors inside each block
    both dirs: {split}_caps.txt (copied) and {split}_labels.npy (N, 1) int64
Inputs per split in --list_dir: {split}_images.txt (one image path per line, relative to --image_dir),
{split}_caps.txt (one tag line per image) and {split}_labels.txt (one integer class per line).
The k-means vocabulary (scikit-learn KMeans on SIFT descriptors from OpenCV) is fit on `train` only,
saved to --codebook and reused for dev/test.

    python extract_features.py --image_dir Corel5K/images --list_dir lists --cnn_weights alexnet-owt-7be5be79.pth
"""
import os, sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import warnings

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from common.checkpoint import atomic_open

ALEXNET_URL = 'https://download.pytorch.org/models/alexnet-owt-7be5be79.pth'
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GRID = 3


def read_lines(path):
    if not os.path.isfile(path):
        raise SystemExit('missing list file: %s' % path)
    with open(path, encoding='utf-8') as f:
        return [line.strip() for line in f.read().splitlines()]


def read_split_lists(list_dir, split, image_dir):
    images = [ln for ln in read_lines(os.path.join(list_dir, '%s_images.txt' % split)) if ln]
    captions = read_lines(os.path.join(list_dir, '%s_caps.txt' % split))
    label_path = os.path.join(list_dir, '%s_labels.txt' % split)
    labels = []
    for lineno, text in enumerate([ln for ln in read_lines(label_path) if ln], 1):
        try:
            labels.append(int(text))
        except ValueError:
            raise SystemExit('%s, line %d: label %r is not an integer class id' % (label_path, lineno, text))
    if len(captions) != len(images) or len(labels) != len(images):
        raise SystemExit('split %s: %d images but %d captions and %d labels (one of each per image)'
                         % (split, len(images), len(captions), len(labels)))
    paths = [os.path.join(image_dir, p) for p in images]
    for lineno, p in enumerate(paths, 1):
        if not os.path.isfile(p):
            raise SystemExit('%s_images.txt, line %d: image not found: %s' % (split, lineno, p))
    return paths, captions, labels


def grid_boxes(width, height, grid=GRID):
    """Row-major (left, upper, right, lower) boxes of a uniform grid x grid split."""
    xs = [round(i * width / grid) for i in range(grid + 1)]
    ys = [round(j * height / grid) for j in range(grid + 1)]
    return [(xs[i], ys[j], xs[i + 1], ys[j + 1]) for j in range(grid) for i in range(grid)]


# ---------------------------------------------------------------- AlexNet fc7
def build_alexnet(weights_path, random_init, seed):
    import torchvision
    torch.manual_seed(seed)  # only matters for --random_cnn
    model = torchvision.models.alexnet(weights=None)
    if weights_path:
        if not os.path.isfile(weights_path):
            raise SystemExit('--cnn_weights file not found: %s (download %s)' % (weights_path, ALEXNET_URL))
        state = torch.load(weights_path, map_location='cpu', weights_only=True)
        model.load_state_dict(state.get('state_dict', state) if isinstance(state, dict) else state)
    elif random_init:
        warnings.warn('--random_cnn: AlexNet has RANDOM weights; the CNN features carry no ImageNet '
                      'semantics (use only for smoke tests)', stacklevel=2)
    else:
        raise SystemExit('ImageNet AlexNet weights are needed: download %s and pass --cnn_weights PATH '
                         '(or --random_cnn for a smoke test with meaningless features)' % ALEXNET_URL)
    model.eval()
    # fc7 = output of the second 4096-d fully connected layer after its ReLU (classifier[:6])
    model.classifier = model.classifier[:6]
    return model


def to_tensor(image, size):
    image = image.resize((size, size), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def cnn_features(model, paths, size, batch_size, device):
    """(N, 4096) whole-image and (N, 9, 4096) block fc7 features."""
    whole, blocks = [], []
    for start in tqdm(range(0, len(paths), batch_size), desc='AlexNet fc7', unit='batch'):
        crops = []
        for path in paths[start:start + batch_size]:
            image = Image.open(path).convert('RGB')
            crops.append(to_tensor(image, size))
            crops.extend(to_tensor(image.crop(box), size) for box in grid_boxes(*image.size))
        with torch.no_grad():
            feats = model(torch.stack(crops).to(device)).cpu().numpy().astype(np.float32)
        feats = feats.reshape(-1, 1 + GRID * GRID, feats.shape[-1])
        whole.append(feats[:, 0])
        blocks.append(feats[:, 1:])
    return np.concatenate(whole), np.concatenate(blocks)


# ---------------------------------------------------------------- SIFT bag of visual words
def sift_descriptors(path):
    """SIFT keypoint positions (K, 2), descriptors (K, 128) and the image size (w, h)."""
    import cv2
    gray = np.asarray(Image.open(path).convert('L'))
    keypoints, desc = cv2.SIFT_create().detectAndCompute(gray, None)
    if desc is None:
        return np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32), gray.shape[::-1]
    points = np.array([kp.pt for kp in keypoints], dtype=np.float32)
    return points, desc.astype(np.float32), gray.shape[::-1]


def fit_codebook(descriptors, n_words, seed, max_descriptors):
    from sklearn.cluster import KMeans
    data = np.concatenate(descriptors)
    if len(data) < n_words:
        raise SystemExit('only %d SIFT descriptors in train for a %d-word vocabulary; use more images or '
                         'a smaller --bovw_dim' % (len(data), n_words))
    if len(data) > max_descriptors:
        data = data[np.random.RandomState(seed).choice(len(data), max_descriptors, replace=False)]
    print('k-means: %d words from %d SIFT descriptors' % (n_words, len(data)))
    return KMeans(n_clusters=n_words, n_init=1, random_state=seed).fit(data).cluster_centers_.astype(np.float32)


def assign_words(desc, codebook):
    if len(desc) == 0:
        return np.zeros(0, dtype=np.int64)
    d2 = (desc ** 2).sum(1, keepdims=True) - 2 * desc @ codebook.T + (codebook ** 2).sum(1)[None]
    return d2.argmin(1)


def histogram(words, n_words, norm):
    h = np.bincount(words, minlength=n_words).astype(np.float32)
    if norm == 'l1' and h.sum() > 0:
        h /= h.sum()
    return h


def bovw_features(sift, codebook, norm):
    """(N, words) whole-image and (N, 9, words) per-block histograms (keypoints binned by position)."""
    n_words = len(codebook)
    whole, blocks = [], []
    for points, desc, (w, h) in tqdm(sift, desc='BoVW', unit='img'):
        words = assign_words(desc, codebook)
        whole.append(histogram(words, n_words, norm))
        per_block = []
        for (x0, y0, x1, y1) in grid_boxes(w, h):
            inside = (points[:, 0] >= x0) & (points[:, 0] < x1) & (points[:, 1] >= y0) & (points[:, 1] < y1)
            per_block.append(histogram(words[inside], n_words, norm))
        blocks.append(np.stack(per_block))
    return np.stack(whole), np.stack(blocks)


def save_npy(path, array):
    with atomic_open(path, 'wb') as f:
        np.save(f, array)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--image_dir', required=True, help='folder the image paths are relative to')
    parser.add_argument('--list_dir', required=True, help='folder with {split}_images/_caps/_labels.txt')
    parser.add_argument('--splits', default='train,dev,test', help='comma-separated; train must come first '
                        'unless --codebook already exists')
    parser.add_argument('--global_dir', default='./data/coarse-grained-data/corel5k_precomp')
    parser.add_argument('--local_dir', default='./data/fine-grained-data/corel5k_precomp')
    parser.add_argument('--cnn_weights', default='', help='torchvision AlexNet ImageNet weights (%s)' % ALEXNET_URL)
    parser.add_argument('--random_cnn', action='store_true', help='allow random AlexNet weights (warns)')
    parser.add_argument('--image_size', type=int, default=224, help='AlexNet input side (whole image and blocks)')
    parser.add_argument('--bovw_dim', type=int, default=500, help='number of visual words')
    parser.add_argument('--bovw_norm', default='l1', choices=['l1', 'none'], help='histogram normalisation')
    parser.add_argument('--codebook', default='', help='k-means centres .npy (default: <global_dir>/codebook_<words>.npy)')
    parser.add_argument('--kmeans_max_descriptors', type=int, default=200000)
    parser.add_argument('--batch_size', type=int, default=8, help='images per AlexNet batch')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)

    splits = [s for s in args.splits.split(',') if s]
    codebook_path = args.codebook or os.path.join(args.global_dir, 'codebook_%d.npy' % args.bovw_dim)
    model = build_alexnet(args.cnn_weights, args.random_cnn, args.seed).to(args.device)
    codebook = np.load(codebook_path) if os.path.isfile(codebook_path) and 'train' not in splits else None
    for split in splits:
        paths, captions, labels = read_split_lists(args.list_dir, split, args.image_dir)
        print('split %s: %d images' % (split, len(paths)))
        sift = [sift_descriptors(p) for p in tqdm(paths, desc='SIFT', unit='img')]
        if split == 'train':
            codebook = fit_codebook([d for _, d, _ in sift], args.bovw_dim, args.seed, args.kmeans_max_descriptors)
            os.makedirs(os.path.dirname(os.path.abspath(codebook_path)), exist_ok=True)
            save_npy(codebook_path, codebook)
        elif codebook is None:
            raise SystemExit('no k-means vocabulary for split %s: extract train first or pass --codebook' % split)
        cnn_whole, cnn_blocks = cnn_features(model, paths, args.image_size, args.batch_size, args.device)
        bovw_whole, bovw_blocks = bovw_features(sift, codebook, args.bovw_norm)
        for folder, cnns, bovws in ((args.global_dir, cnn_whole, bovw_whole), (args.local_dir, cnn_blocks, bovw_blocks)):
            os.makedirs(folder, exist_ok=True)
            save_npy(os.path.join(folder, '%s_cnns.npy' % split), cnns)
            save_npy(os.path.join(folder, '%s_bovws.npy' % split), bovws)
            save_npy(os.path.join(folder, '%s_labels.npy' % split), np.array(labels, dtype=np.int64).reshape(-1, 1))
            with atomic_open(os.path.join(folder, '%s_caps.txt' % split), 'w') as f:
                f.write('\n'.join(captions))
        print('wrote %s features: global %s / %s, local %s / %s' % (split, cnn_whole.shape, bovw_whole.shape,
                                                                     cnn_blocks.shape, bovw_blocks.shape))


if __name__ == '__main__':
    main()
