"""SCAN "precomp" data: region features (memory-mapped .npy) + captions, dataset, collate and loaders.

Layout: <data_path>/<data_name>/<split>_ims.npy (N, 36, img_dim) float32 and <split>_caps.txt
(5N or N lines, caption j belongs to image j // im_div).
"""
import os

import numpy as np
import torch
import torch.utils.data as data

from common.errors import InputError
from common.runtime import distributed_sampler, make_generator
from common.safeio import load_npy
from common.text import tokenize
from common.vocab import caption_to_ids, pad_captions, sort_by_caption_length

N_REGIONS = 36
DEV_CAPTIONS = 5000  # upstream data.py:38-39 validates on the first 5000 dev captions only


class DataError(InputError, ValueError):
    """Bad or missing data files; the message names the file and what is wrong."""


def _need(path, what):
    if not os.path.isfile(path):
        raise DataError('%s: %s not found (expected SCAN precomp layout '
                        '<data_path>/<data_name>/<split>_ims.npy and <split>_caps.txt)' % (path, what))


def read_captions(path):
    """Captions as text, one per line, stripped like upstream (read as bytes, line.strip())."""
    _need(path, 'caption file')
    captions = []
    with open(path, 'rb') as f:
        for lineno, line in enumerate(f, 1):
            try:
                captions.append(line.strip().decode('utf-8'))
            except UnicodeDecodeError as err:
                raise DataError('%s:%d: caption is not valid UTF-8 (%s)' % (path, lineno, err)) from None
    return captions


def load_region_features(path, img_dim=None):
    """Memory-map `path` (never loads COCO's 33 GB train features) and check (N, 36, img_dim)."""
    _need(path, 'region feature file')
    try:  # refuses object arrays (pickles) and names truncated files
        images = load_npy(path, mmap_mode='r', what='region feature')
    except InputError as err:
        raise DataError('not a numpy .npy array, or a damaged one: %s' % err) from None
    if images.ndim != 3:
        raise DataError('%s: region features must be 3-d (images, regions, dim), got shape %s'
                        % (path, images.shape))
    if images.shape[1] != N_REGIONS:
        raise DataError('%s: each image must have exactly %d regions (BatchNorm1d(36) in VisualSA), '
                        'got %d' % (path, N_REGIONS, images.shape[1]))
    if img_dim is not None and images.shape[2] != img_dim:
        raise DataError('%s: region feature dim is %d but --img_dim is %d'
                        % (path, images.shape[2], img_dim))
    return images


class PrecompDataset(data.Dataset):
    """Items (image (36, img_dim) float32, caption ids float tensor, index, img_id) as upstream."""

    def __init__(self, data_path, data_split, vocab, img_dim=None):
        self.vocab = vocab
        loc = os.path.join(data_path, '')
        caps_path = loc + '%s_caps.txt' % data_split
        ims_path = loc + '%s_ims.npy' % data_split
        _need(caps_path, 'caption file')
        _need(ims_path, 'region feature file')
        self.captions = read_captions(caps_path)
        self.images = load_region_features(ims_path, img_dim)
        n_img, n_cap = self.images.shape[0], len(self.captions)
        if n_cap == n_img:
            self.im_div = 1
        elif n_cap == 5 * n_img:
            self.im_div = 5
        else:
            raise DataError('%s has %d captions for %d images in %s: need 5 per image (or 1)'
                            % (caps_path, n_cap, n_img, ims_path))
        if n_img == 0 or n_cap == 0:
            raise DataError('%s / %s: the %s split is empty (%d images, %d captions); it needs at least '
                            'one image with its captions' % (ims_path, caps_path, data_split, n_img, n_cap))
        self.length = n_cap
        if data_split == 'dev':
            # upstream forces 5000 (IndexError on a smaller dev set); min() keeps its numbers
            self.length = min(DEV_CAPTIONS, n_cap)

    def __getitem__(self, index):
        img_id = index // self.im_div  # upstream data.py:43 py2 `/`
        image = torch.from_numpy(np.array(self.images[img_id], dtype=np.float32))
        caption = caption_to_ids(self.vocab, self.captions[index], tokenize)
        return image, torch.Tensor(caption), index, img_id

    def __len__(self):
        return self.length


def collate_fn(batch):
    """Sort by caption length (descending, stable), stack images, pad ids with 0 (<pad>)."""
    images, captions, ids, img_ids = zip(*sort_by_caption_length(batch))
    images = torch.stack(images, 0)
    targets, lengths = pad_captions(captions)
    # upstream returns the tuple `ids`; indexing numpy with it fails off torch 0.4 (quirk 7)
    return images, targets, lengths, list(ids)


def get_precomp_loader(data_path, data_split, vocab, opt, batch_size=100, shuffle=True,
                       num_workers=2, img_dim=None, sampler=None, seed=None):
    """DataLoader as upstream: `num_workers` is accepted but not used (upstream never passes it)."""
    dset = PrecompDataset(data_path, data_split, vocab, img_dim=img_dim)
    return torch.utils.data.DataLoader(dataset=dset, batch_size=batch_size,
                                       shuffle=shuffle and sampler is None, sampler=sampler,
                                       pin_memory=torch.cuda.is_available(), collate_fn=collate_fn,
                                       generator=make_generator(seed) if shuffle else None)


def get_loaders(data_name, vocab, batch_size, workers, opt, world_size=1):
    """Train loader (shuffled; under torchrun a DistributedSampler and batch_size // world_size
    per rank, so the global batch stays batch_size) and the dev loader (batch 100)."""
    dpath = os.path.join(opt.data_path, data_name)
    img_dim = getattr(opt, 'img_dim', None)
    train_set = PrecompDataset(dpath, 'train', vocab, img_dim=img_dim)
    seed = getattr(opt, 'seed', None)
    sampler = distributed_sampler(train_set, shuffle=True, seed=seed or 0)
    per_rank = max(batch_size // world_size, 1)
    train_loader = torch.utils.data.DataLoader(
        dataset=train_set, batch_size=per_rank, shuffle=sampler is None, sampler=sampler,
        pin_memory=torch.cuda.is_available(), collate_fn=collate_fn,
        generator=make_generator(seed) if sampler is None else None)
    val_loader = get_precomp_loader(dpath, 'dev', vocab, opt, 100, False, workers, img_dim=img_dim)
    return train_loader, val_loader


def get_test_loader(split_name, data_name, vocab, batch_size, workers, opt):
    """Test loader: batch 100 regardless of `batch_size` (upstream quirk 2, needed for its numbers)."""
    dpath = os.path.join(opt.data_path, data_name)
    return get_precomp_loader(dpath, split_name, vocab, opt, 100, False, workers,
                              img_dim=getattr(opt, 'img_dim', None))
