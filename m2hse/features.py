"""Image features M2HSE reads, from image files (the recipe of the README/paper; upstream ships no
extractor): AlexNet (ImageNet) fc7 of the whole image and of each block of a uniform 3x3 grid, and SIFT
bag-of-visual-words histograms (whole image and per block). Used by extract_features.py."""
import os
import warnings

import numpy as np
import torch
import torchvision
from PIL import Image

from common.errors import InputError
from common.progress import progress
from common.checkpoint import load_checkpoint
from common.safeio import BadImageError, open_image, read_text_lines

ALEXNET_URL = 'https://download.pytorch.org/models/alexnet-owt-7be5be79.pth'
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GRID = 3


def read_lines(path):
    if not os.path.isfile(path):
        raise InputError('%s: missing list file' % path)
    return [line.strip() for line in read_text_lines(path)]


def read_split_lists(list_dir, split, image_dir):
    images = [ln for ln in read_lines(os.path.join(list_dir, '%s_images.txt' % split)) if ln]
    captions = read_lines(os.path.join(list_dir, '%s_caps.txt' % split))
    label_path = os.path.join(list_dir, '%s_labels.txt' % split)
    labels = []
    for lineno, text in enumerate([ln for ln in read_lines(label_path) if ln], 1):
        try:
            labels.append(int(text))
        except ValueError:
            raise InputError('%s, line %d: label %r is not an integer class id' % (label_path, lineno, text))
    if len(captions) != len(images) or len(labels) != len(images):
        raise InputError('split %s: %d images but %d captions and %d labels (one of each per image)'
                         % (split, len(images), len(captions), len(labels)))
    paths = [os.path.join(image_dir, p) for p in images]
    for lineno, p in enumerate(paths, 1):
        if not os.path.isfile(p):
            raise InputError('%s_images.txt, line %d: image not found: %s' % (split, lineno, p))
    return paths, captions, labels


def drop_bad_images(split, paths, captions, labels, strict):
    """Decode every image first: a bad one is an error with --strict, else its item is dropped (caption
    and label too, so rows stay aligned) and counted in a printed report."""
    keep = []
    bad = []
    for i, path in enumerate(paths):
        try:
            open_image(path)
            keep.append(i)
        except BadImageError as err:
            if strict:
                raise
            bad.append(str(err))
    if bad:
        print('split %s: skipped %d unreadable image(s) (with their captions and labels):' % (split, len(bad)))
        for message in bad:
            print('  ' + message)
    if not keep:
        raise InputError('split %s: none of its %d images can be read' % (split, len(paths)))
    return [paths[i] for i in keep], [captions[i] for i in keep], [labels[i] for i in keep]


def grid_boxes(width, height, grid=GRID):
    """Row-major (left, upper, right, lower) boxes of a uniform grid x grid split."""
    xs = [round(i * width / grid) for i in range(grid + 1)]
    ys = [round(j * height / grid) for j in range(grid + 1)]
    return [(xs[i], ys[j], xs[i + 1], ys[j + 1]) for j in range(grid) for i in range(grid)]


# ---------------------------------------------------------------- AlexNet fc7
def build_alexnet(weights_path, random_init, seed):
    with torch.random.fork_rng():  # the seed only matters for --random_cnn; the caller's RNG is untouched
        torch.manual_seed(seed)
        model = torchvision.models.alexnet(weights=None)
    if weights_path:
        if not os.path.isfile(weights_path):
            raise InputError('--cnn_weights file not found: %s (download %s)' % (weights_path, ALEXNET_URL))
        state = load_checkpoint(weights_path)  # allow-listed: a pickle with code in it is refused
        try:
            model.load_state_dict(state.get('state_dict', state) if isinstance(state, dict) else state)
        except (RuntimeError, TypeError, AttributeError) as err:
            raise InputError('%s: not torchvision AlexNet weights (%s); download %s'
                             % (weights_path, str(err).splitlines()[0][:200], ALEXNET_URL)) from None
    elif random_init:
        warnings.warn('--random_cnn: AlexNet has RANDOM weights; the CNN features carry no ImageNet '
                      'semantics (use only for smoke tests)', stacklevel=2)
    else:
        raise InputError('ImageNet AlexNet weights are needed: download %s and pass --cnn_weights PATH '
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


def cnn_features(model, paths, size, batch_size, device, show_progress=True):
    """(N, 4096) whole-image and (N, 9, 4096) block fc7 features."""
    whole, blocks = [], []
    for start in progress(range(0, len(paths), batch_size), desc='AlexNet fc7', unit='batch',
                          enabled=show_progress):
        crops = []
        for path in paths[start:start + batch_size]:
            image = open_image(path)
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
    import cv2  # OpenCV: only the BoVW step needs it
    gray = np.asarray(open_image(path).convert('L'))
    keypoints, desc = cv2.SIFT_create().detectAndCompute(gray, None)
    if desc is None:
        return np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32), gray.shape[::-1]
    points = np.array([kp.pt for kp in keypoints], dtype=np.float32)
    return points, desc.astype(np.float32), gray.shape[::-1]


def fit_codebook(descriptors, n_words, seed, max_descriptors):
    from sklearn.cluster import KMeans  # scikit-learn: only the codebook step needs it
    data = np.concatenate(descriptors)
    if len(data) < n_words:
        raise InputError('only %d SIFT descriptors in train for a %d-word vocabulary; use more images or '
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


def bovw_features(sift, codebook, norm, show_progress=True):
    """(N, words) whole-image and (N, 9, words) per-block histograms (keypoints binned by position)."""
    n_words = len(codebook)
    whole, blocks = [], []
    for points, desc, (w, h) in progress(sift, desc='BoVW', unit='img', enabled=show_progress):
        words = assign_words(desc, codebook)
        whole.append(histogram(words, n_words, norm))
        per_block = []
        for (x0, y0, x1, y1) in grid_boxes(w, h):
            inside = (points[:, 0] >= x0) & (points[:, 0] < x1) & (points[:, 1] >= y0) & (points[:, 1] < y1)
            per_block.append(histogram(words[inside], n_words, norm))
        blocks.append(np.stack(per_block))
    return np.stack(whole), np.stack(blocks)


