"""On-disk formats of both stages: image preprocessing, the recall CSV and image folder, the
'$record$' ranking CSV, the POI side tables, and the ranking pair dataset (local image files)."""
import os
from collections import namedtuple
from urllib.parse import urlparse

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
IMAGE_SIZE = (224, 224)
MAX_POIS = 5
RECORD_SEP = '$record$'
OSS_PREFIX = 'oss://poi-image/'

# POI side tables, looked up in --poi_tables under upstream's file names (model_local.py:53-63)
PIC_NUM_TABLE = 'temp_dataset_item_pois_relation_1129_poi_2_pic_num.npy'
IMG_VEC_TABLE = 'temp_dataset_item_pois_relation_0110_imgs_avg10_vector.npy'
IMG_VEC_TABLE_WO_NORM = 'temp_dataset_item_pois_relation_0110_imgs_avg_10vector_wo_norm.npy'
NAME_VEC_TABLE = 'temp_dataset_item_pois_relation_0110_poi_name_vector.npy'


class DataFormatError(ValueError):
    pass


# ---------------------------------------------------------------- images
def normalize_image(img, size=IMAGE_SIZE):
    """normalize_image of the recall script / datasets file: RGB uint8 -> cv2 bilinear resize on
    uint8 (quirk 6: not PIL/torchvision resizing) -> float64 ImageNet normalisation -> CHW float32."""
    img = np.asarray(img)
    if size is not None:
        img = cv2.resize(img, size)
    img = (img / 255.0 - MEAN) / STD
    return np.transpose(img, (2, 0, 1)).astype(np.float32)


def open_rgb(path):
    with Image.open(path) as img:
        return img.convert('RGB')


def load_image_or_zeros(path):
    """Recall/AVAS behaviour: an unreadable file becomes a zeros image (reported, not fatal)."""
    try:
        img = np.array(open_rgb(path))
    except Exception as err:  # PIL raises many types for bad files
        print('WARNING: unreadable image %s (%s): scored as a zeros image' % (path, err))
        img = np.zeros((224, 224, 3))
    return normalize_image(img)


def list_images(path_dir):
    """Names ending in 'jpg' or 'png' (case-sensitive, as upstream). Upstream used unsorted
    os.listdir (quirk 7); sorted here so output order and tie-breaks are reproducible."""
    if not os.path.isdir(path_dir):
        raise FileNotFoundError('%s: image folder not found (download the images first, see '
                                'avas/download_images.py)' % path_dir)
    names = sorted(n for n in os.listdir(path_dir) if n.endswith('jpg') or n.endswith('png'))
    if not names:
        raise FileNotFoundError('%s: no .jpg/.png images in the folder' % path_dir)
    return [os.path.join(path_dir, n) for n in names]


def url_to_local(url, image_root):
    """Ranking images are read from <image_root>/<basename of the URL path>."""
    return os.path.join(image_root, os.path.basename(urlparse(url).path))


# ---------------------------------------------------------------- recall CSV
RecallRow = namedtuple('RecallRow', 'poi_id name url rank_number width height extend')


def read_recall_csv(path):
    """poi_id,poi_name,image_url,rank_number,width,height,extend; no header. Upstream skips lines
    shorter than 3 characters and splits on ',' (a comma in a name is an error, quirk 8)."""
    rows = []
    with open(path, encoding='utf-8') as f:
        for lineno, line in enumerate(f, 1):
            if len(line) < 3:
                continue
            fields = line.strip().split(',')
            if len(fields) != 7:
                raise DataFormatError('%s:%d: expected 7 comma-separated fields '
                                      '(poi_id,poi_name,image_url,rank_number,width,height,extend), '
                                      'got %d' % (path, lineno, len(fields)))
            rows.append(RecallRow(*fields))
    return rows


def unique_pois(rows):
    """Distinct (poi_id, name) pairs in first-appearance order (upstream iterates a set)."""
    return list(dict.fromkeys((r.poi_id, r.name) for r in rows))


def read_recall_results(path):
    """Result CSV lines 'poi_id,name,image_path,score' -> list of (poi_id, name, path, score)."""
    rows = []
    with open(path, encoding='utf-8') as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if len(line) < 3:
                continue
            fields = line.split(',')
            if len(fields) != 4:
                raise DataFormatError('%s:%d: expected poi_id,name,image_path,score, got %d fields'
                                      % (path, lineno, len(fields)))
            try:
                score = float(fields[3])
            except ValueError:
                raise DataFormatError('%s:%d: score field %r is not a number' % (path, lineno, fields[3]))
            rows.append((fields[0], fields[1], fields[2], score))
    return rows


# ---------------------------------------------------------------- ranking CSV
RankingRecord = namedtuple('RankingRecord', 'item_id url_a url_b ctr_a ctr_b title cate_name '
                                            'oss_url oss_url2 poi_names lineno')


def read_ranking_lines(path):
    """(lineno, line) for each kept line: stripped, len >= 2 (OSSDataset.__init__)."""
    if not os.path.isfile(path):
        raise FileNotFoundError('%s: ranking CSV not found' % path)
    lines = []
    with open(path, encoding='utf-8') as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if len(line) >= 2:
                lines.append((lineno, line))
    return lines


def parse_ranking_line(line, lineno=0, path='?'):
    """One pair: 10 fields joined by '$record$'. Raises DataFormatError naming file/line."""
    line = line.replace(OSS_PREFIX, '')
    if RECORD_SEP not in line:
        raise DataFormatError('%s:%d: no "$record$" separator' % (path, lineno))
    fields = line.split(RECORD_SEP)
    if len(fields) != 10:
        raise DataFormatError('%s:%d: expected 10 "$record$" fields, got %d' % (path, lineno, len(fields)))
    for name, value in (('ctr_a', fields[3]), ('ctr_b', fields[4])):
        try:
            float(value)
        except ValueError:
            raise DataFormatError('%s:%d: field %s=%r is not a number' % (path, lineno, name, value))
    return RankingRecord(*fields, lineno=lineno)


def pair_label(record):
    """1.0 iff ctr_a > ctr_b (ties -> 0)."""
    return 1.0 if float(record.ctr_a) > float(record.ctr_b) else 0.0


# ---------------------------------------------------------------- POI tables
def poi_priority(counts):
    """calcu_img_num_weight: n0 + 5*n1 + 3*n2."""
    return counts[0] + counts[1] * 5 + counts[2] * 3


def load_table(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(
            '%s: POI side table not found in --poi_tables. %s = avas/data/%s; the 0110 vector tables are '
            'files of github.com/youyuge34/AutoImageSelection (too large for its mirror here; the _wo_norm one '
            'was never published); or build tables with avas.poi_tables.build_poi_vector_tables.'
            % (path, PIC_NUM_TABLE, PIC_NUM_TABLE))
    return np.load(path, allow_pickle=True).item()


def load_poi_tables(poi_dir, use_norm_vector=1):
    """(pic_num, img_vectors, name_vectors) as model_local.Config loads them."""
    img_table = IMG_VEC_TABLE if use_norm_vector else IMG_VEC_TABLE_WO_NORM
    return (load_table(os.path.join(poi_dir, PIC_NUM_TABLE)),
            load_table(os.path.join(poi_dir, img_table)),
            load_table(os.path.join(poi_dir, NAME_VEC_TABLE)))


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


def poi_text(record):
    """The text whose embedding is `pois_feature`: the whole comma-joined poi_names string
    (quirk 19), or the title when poi_names is empty (len(strip) < 1, quirk 17)."""
    return record.title if len(record.poi_names.strip()) < 1 else record.poi_names


# ---------------------------------------------------------------- ranking dataset
class Dropped(namedtuple('Dropped', 'lineno reason')):
    """A pair that could not be built; upstream returned Nones and silently dropped it (quirk 21)."""


class RankingPairs(Dataset):
    """OSSDataset with local files: image A from oss_url, B from oss_url2 (quirk 20), read from
    <image_root>/<basename>. Text embeddings are computed by the caller in batches."""

    def __init__(self, path, image_root, poi_tables, transform=None, image_size=224):
        self.size = (image_size, image_size)
        self.path = path
        self.lines = read_ranking_lines(path)
        self.image_root = image_root
        self.pic_num, self.img_vectors, self.name_vectors = poi_tables
        self.transform = transform

    def __len__(self):
        return len(self.lines)

    def _image(self, url):
        path = url_to_local(url, self.image_root)
        if not os.path.isfile(path):
            raise FileNotFoundError('image missing: %s (from %s)' % (path, url))
        try:
            img = open_rgb(path)
        except Exception as err:
            raise OSError('image unreadable: %s (%s)' % (path, err))
        if self.transform is not None:
            img = self.transform(img)
        return torch.from_numpy(normalize_image(img, self.size))

    def __getitem__(self, index):
        lineno, line = self.lines[index]
        try:
            record = parse_ranking_line(line, lineno, self.path)
            img_1, img_2 = self._image(record.oss_url), self._image(record.oss_url2)
        except (DataFormatError, OSError) as err:
            return Dropped(lineno, str(err))
        mean_poi_img_vec, poi_text_vec, poi_len = poi_inputs(
            record.poi_names, self.pic_num, self.img_vectors, self.name_vectors)
        return {'img_1': img_1, 'img_2': img_2, 'label': torch.tensor([pair_label(record)]),
                'text': poi_text(record), 'mean_poi_img_vec': mean_poi_img_vec,
                'poi_text_vec': poi_text_vec, 'poi_len': torch.tensor([float(poi_len)]),
                'lineno': lineno}


def collate_pairs(samples):
    """Stack the kept pairs; dropped ones are returned alongside (never silently lost)."""
    kept = [s for s in samples if not isinstance(s, Dropped)]
    dropped = [s for s in samples if isinstance(s, Dropped)]
    if not kept:
        return None, dropped
    batch = {k: torch.stack([s[k] for s in kept]) for k in
             ('img_1', 'img_2', 'label', 'mean_poi_img_vec', 'poi_text_vec', 'poi_len')}
    batch['text'] = [s['text'] for s in kept]
    batch['lineno'] = [s['lineno'] for s in kept]
    return batch, dropped


def train_transform():
    """Upstream's 'train' mode augmentation on the PIL image (datasets_attention_local.py:57)."""
    from torchvision import transforms
    return transforms.Compose([transforms.RandomRotation(5), transforms.RandomHorizontalFlip(0.3)])


# ---------------------------------------------------------------- recall training pairs
def recall_image_name(row):
    """Local name of a recall image: '<poi_id>_<rank_number>.jpg' (the prefix before '_' is what
    align_recall@K.py compares with poi_id; download_images.py writes these names)."""
    return '%s_%s.jpg' % (row.poi_id, row.rank_number)


class AlignPairs(Dataset):
    """(image, POI-name text) pairs from a recall-format CSV whose images are in image_dir."""

    def __init__(self, csv_path, image_dir, transform=None, skip_missing=True, image_size=224):
        self.size = (image_size, image_size)
        self.items, self.missing = [], []
        for row in read_recall_csv(csv_path):
            path = os.path.join(image_dir, recall_image_name(row))
            (self.items if os.path.isfile(path) else self.missing).append((path, row.name))
        if self.missing and not skip_missing:
            raise FileNotFoundError('%d images of %s missing from %s, e.g. %s'
                                    % (len(self.missing), csv_path, image_dir, self.missing[0][0]))
        if not self.items:
            raise FileNotFoundError('%s: none of the images of %s found' % (image_dir, csv_path))
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
