"""Torch side of the data: the ranking pair dataset (local image files) with the POI inputs of each
pair, the recall training pairs, their collate functions and loaders. The file formats they read
are in avas/formats.py (re-exported here)."""
import os
from collections import namedtuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from avas.errors import DataFormatError, MissingFileError  # noqa: F401  (re-exported)
from avas.formats import (IMAGE_SIZE, MEAN, OSS_PREFIX, RECORD_SEP, STD, RankingRecord, RecallRow,  # noqa: F401
                          check_images, list_images, load_image, load_image_or_zeros, normalize_image, open_rgb,
                          pair_label, parse_ranking_line, poi_priority, poi_text, read_ranking_lines, read_recall_csv,
                          read_recall_results, recall_image_name, report_bad_images, unique_pois, url_to_local)
from common.errors import InputError
from common.progress import progress
from common.safeio import BadImageError

MAX_POIS = 5


def poi_inputs(poi_names, pic_num, img_vectors, name_vectors, dim=512):
    """datasets_attention_local.py:133-158. Kept quirks: 'no POI' means len(strip) <= 1 (17); names
    are split without strip, the priority lookup strips but the vector lookups do not (18);
    missing keys give zero vectors; stable sort by descending priority; at most 5 POIs."""
    mean_poi_img_vec = torch.zeros((MAX_POIS, dim), dtype=torch.float)
    poi_text_vec = torch.zeros((MAX_POIS, dim), dtype=torch.float)
    if len(poi_names.strip()) <= 1:
        return mean_poi_img_vec, poi_text_vec, 0
    names = poi_names.split(',')
    names.sort(key=lambda x: -poi_priority(pic_num.get(x.strip(), [0, 0, 0])))
    for i, name in enumerate(names[:MAX_POIS]):
        if name in img_vectors:
            mean_poi_img_vec[i] = torch.tensor(np.asarray(img_vectors[name], dtype=np.float64), dtype=torch.float)
        if name in name_vectors:
            poi_text_vec[i] = torch.tensor(np.asarray(name_vectors[name], dtype=np.float64), dtype=torch.float)
    return mean_poi_img_vec, poi_text_vec, min(len(names), MAX_POIS)


# ---------------------------------------------------------------- ranking dataset
class Dropped(namedtuple('Dropped', 'lineno reason')):
    """A pair that could not be built; upstream returned Nones and silently dropped it (quirk 21)."""


PairSample = namedtuple('PairSample', 'img_1 img_2 label text mean_poi_img_vec poi_text_vec poi_len lineno')
PairBatch = namedtuple('PairBatch', PairSample._fields)


class RankingPairs(Dataset):
    """OSSDataset with local files: image A from oss_url, B from oss_url2 (quirk 20), read from
    <image_root>/<basename>. Text embeddings are computed by the caller in batches."""

    def __init__(self, path, image_root, poi_tables, transform=None, image_size=224):
        if not os.path.isdir(image_root):
            raise MissingFileError('%s: image folder (--image_root) not found; fetch the images with '
                                   'avas/download_images.py' % image_root)
        self.size = (image_size, image_size)
        self.path = path
        self.lines = read_ranking_lines(path)
        self.image_root = image_root
        self.pic_num, self.img_vectors, self.name_vectors = poi_tables
        self.transform = transform

    def __len__(self):
        return len(self.lines)

    def _image_path(self, url):
        path = url_to_local(url, self.image_root)
        if not os.path.isfile(path):
            raise BadImageError('image missing: %s (from %s)' % (path, url))
        return path

    def _image(self, url):
        img = open_rgb(self._image_path(url))
        if self.transform is not None:
            img = self.transform(img)
        return torch.from_numpy(normalize_image(img, self.size))

    def verify(self, strict=False, show_progress=True):
        """Check every pair's line and both images up front (training): bad pairs are removed and
        returned as Dropped (or, with strict, the first one is an error)."""
        kept, dropped = [], []
        for lineno, line in progress(self.lines, desc='verify pairs', unit='pair', enabled=show_progress):
            try:
                record = parse_ranking_line(line, lineno, self.path)
                for url in (record.oss_url, record.oss_url2):
                    open_rgb(self._image_path(url))
            except (DataFormatError, BadImageError) as err:
                if strict:
                    raise InputError('%s:%d: %s (--strict)' % (self.path, lineno, err)) from None
                dropped.append(Dropped(lineno, str(err)))
                continue
            kept.append((lineno, line))
        self.lines = kept
        return dropped

    def __getitem__(self, index):
        lineno, line = self.lines[index]
        try:
            record = parse_ranking_line(line, lineno, self.path)
            img_1, img_2 = self._image(record.oss_url), self._image(record.oss_url2)
        except (DataFormatError, BadImageError) as err:
            return Dropped(lineno, str(err))
        mean_poi_img_vec, poi_text_vec, poi_len = poi_inputs(
            record.poi_names, self.pic_num, self.img_vectors, self.name_vectors)
        return PairSample(img_1, img_2, torch.tensor([pair_label(record)]), poi_text(record), mean_poi_img_vec,
                          poi_text_vec, torch.tensor([float(poi_len)]), lineno)


def collate_pairs(samples):
    """Stack the kept pairs; dropped ones are returned alongside (never silently lost)."""
    kept = [s for s in samples if not isinstance(s, Dropped)]
    dropped = [s for s in samples if isinstance(s, Dropped)]
    if not kept:
        return None, dropped
    stacked = {k: torch.stack([getattr(s, k) for s in kept]) for k in
               ('img_1', 'img_2', 'label', 'mean_poi_img_vec', 'poi_text_vec', 'poi_len')}
    return PairBatch(text=[s.text for s in kept], lineno=[s.lineno for s in kept], **stacked), dropped


def make_pair_loader(dataset, batch_size, num_workers=0, shuffle=False, sampler=None, generator=None):
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      num_workers=num_workers, collate_fn=collate_pairs, generator=generator)


def train_transform():
    """Upstream's 'train' mode augmentation on the PIL image (datasets_attention_local.py:57)."""
    return transforms.Compose([transforms.RandomRotation(5), transforms.RandomHorizontalFlip(0.3)])


# ---------------------------------------------------------------- recall training pairs


class AlignPairs(Dataset):
    """(image, POI-name text) pairs from a recall-format CSV whose images are in image_dir. Missing
    images are skipped (listed in .missing); every present image is decoded once up front, bad ones
    skipped and counted (.bad) or, with strict, an error -- never a crash in the middle of an epoch."""

    def __init__(self, csv_path, image_dir, transform=None, skip_missing=True, image_size=224, strict=False,
                 show_progress=True):
        if not os.path.isdir(image_dir):
            raise MissingFileError('%s: training image folder (--image_dir) not found' % image_dir)
        self.size = (image_size, image_size)
        items, self.missing = [], []
        for row in read_recall_csv(csv_path):
            path = os.path.join(image_dir, recall_image_name(row))
            (items if os.path.isfile(path) else self.missing).append((path, row.name))
        if self.missing and (strict or not skip_missing):
            raise MissingFileError('%d images of %s missing from %s, e.g. %s'
                                   % (len(self.missing), csv_path, image_dir, self.missing[0][0]))
        if not items:
            raise MissingFileError('%s: none of the images of %s found' % (image_dir, csv_path))
        good, self.bad = check_images([p for p, _ in items], strict, 'training images', show_progress)
        good = set(good)
        self.items = [(p, text) for p, text in items if p in good]
        self.transform = transform

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        path, text = self.items[index]
        img = open_rgb(path)
        if self.transform is not None:
            img = self.transform(img)
        return torch.from_numpy(normalize_image(img, self.size)), text


def collate_align(samples):
    return torch.stack([s[0] for s in samples]), [s[1] for s in samples]
