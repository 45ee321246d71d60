"""On-disk formats of both stages, without torch (scripts that only read files stay fast): image
preprocessing and verification, the recall CSV and result CSV, the '$record$' ranking CSV."""
import os
from collections import namedtuple
from urllib.parse import urlparse

import cv2
import numpy as np

from avas.errors import DataFormatError, MissingFileError
from common.errors import InputError
from common.progress import progress
from common.safeio import BadImageError, iter_text_lines, open_image

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
IMAGE_SIZE = (224, 224)
RECORD_SEP = '$record$'
OSS_PREFIX = 'oss://poi-image/'


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
    """The image as RGB, fully decoded; a corrupt or missing file raises BadImageError naming it."""
    return open_image(path)


def load_image(path, size=IMAGE_SIZE):
    return normalize_image(open_rgb(path), size)


def load_image_or_zeros(path):
    """Upstream's recall/AVAS behaviour (an unreadable file becomes a zeros image); kept for tests
    that build tensors of known-good photos. The scripts skip bad images instead (check_images)."""
    try:
        img = np.array(open_rgb(path))
    except BadImageError as err:
        print('WARNING: %s: scored as a zeros image' % err)
        img = np.zeros((224, 224, 3))
    return normalize_image(img)


def report_bad_images(bad, total, what='images'):
    """Print one line per skipped image and a count; the scripts call it before their results."""
    for path, reason in bad:
        print('WARNING: unreadable image %s (%s): skipped' % (path, reason))
    if bad:
        print('skipped %d of %d %s (missing or unreadable); --strict makes this an error' % (len(bad), total, what))


def check_images(paths, strict=False, what='images', show_progress=True):
    """Decode every image once, up front (training must not crash mid-epoch): returns (good paths,
    [(path, reason)] of the bad ones), printing the report; with strict the first bad one is an error."""
    good, bad = [], []
    for path in progress(paths, desc='verify %s' % what, unit='img', enabled=show_progress):
        try:
            open_rgb(path)
        except BadImageError as err:
            if strict:
                raise BadImageError('%s (--strict)' % err) from None
            bad.append((path, str(err).split(': ', 1)[-1]))
            continue
        good.append(path)
    report_bad_images(bad, len(paths), what)
    if not good:
        raise InputError('none of the %d %s could be read (first: %s); check the image folder'
                         % (len(paths), what, paths[0] if paths else '-'))
    return good, bad


def list_images(path_dir):
    """Names ending in 'jpg' or 'png' (case-sensitive, as upstream). Upstream used unsorted
    os.listdir (quirk 7); sorted here so output order and tie-breaks are reproducible."""
    if not os.path.isdir(path_dir):
        raise MissingFileError('%s: image folder not found (download the images first, see '
                               'avas/download_images.py)' % path_dir)
    names = sorted(n for n in os.listdir(path_dir) if n.endswith('jpg') or n.endswith('png'))
    if not names:
        raise InputError('%s: no .jpg/.png images in the folder; check --image_dir' % path_dir)
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
    for lineno, line in enumerate(iter_text_lines(path, 'recall CSV'), 1):
        if len(line) < 2:  # upstream: len(line) < 3 with the newline
            continue
        fields = line.strip().split(',')
        if len(fields) != 7:
            raise DataFormatError('%s:%d: expected 7 comma-separated fields '
                                  '(poi_id,poi_name,image_url,rank_number,width,height,extend), '
                                  'got %d' % (path, lineno, len(fields)))
        rows.append(RecallRow(*fields))
    if not rows:
        raise InputError('%s: the recall CSV has no rows; give a non-empty file' % path)
    return rows


def unique_pois(rows):
    """Distinct (poi_id, name) pairs in first-appearance order (upstream iterates a set)."""
    return list(dict.fromkeys((r.poi_id, r.name) for r in rows))


def read_recall_results(path):
    """Result CSV lines 'poi_id,name,image_path,score' -> list of (poi_id, name, path, score)."""
    rows = []
    for lineno, line in enumerate(iter_text_lines(path, 'recall result CSV'), 1):
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
            raise DataFormatError('%s:%d: score field %r is not a number' % (path, lineno, fields[3])) from None
        if not np.isfinite(score):
            raise DataFormatError('%s:%d: score %r is not finite; re-run the recall script' % (path, lineno, fields[3]))
        rows.append((fields[0], fields[1], fields[2], score))
    if not rows:
        raise InputError('%s: no result rows; run align_recall_test_with_mmkg_model.py first' % path)
    return rows


# ---------------------------------------------------------------- ranking CSV
RankingRecord = namedtuple('RankingRecord', 'item_id url_a url_b ctr_a ctr_b title cate_name '
                                            'oss_url oss_url2 poi_names lineno')


def read_ranking_lines(path):
    """(lineno, line) for each kept line: stripped, len >= 2 (OSSDataset.__init__)."""
    if not os.path.isfile(path):
        raise MissingFileError('%s: ranking CSV not found; check --index_files' % path)
    lines = []
    for lineno, line in enumerate(iter_text_lines(path, 'ranking CSV'), 1):
        line = line.strip()
        if len(line) >= 2:
            lines.append((lineno, line))
    if not lines:
        raise InputError('%s: the ranking CSV has no pairs; give a non-empty file' % path)
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
            raise DataFormatError('%s:%d: field %s=%r is not a number' % (path, lineno, name, value)) from None
    return RankingRecord(*fields, lineno=lineno)


def pair_label(record):
    """1.0 iff ctr_a > ctr_b (ties -> 0)."""
    return 1.0 if float(record.ctr_a) > float(record.ctr_b) else 0.0


def poi_priority(counts):
    """calcu_img_num_weight: n0 + 5*n1 + 3*n2."""
    return counts[0] + counts[1] * 5 + counts[2] * 3


def poi_text(record):
    """The text whose embedding is `pois_feature`: the whole comma-joined poi_names string
    (quirk 19), or the title when poi_names is empty (len(strip) < 1, quirk 17)."""
    return record.title if len(record.poi_names.strip()) < 1 else record.poi_names


def recall_image_name(row):
    """Local name of a recall image: '<poi_id>_<rank_number>.jpg' (the prefix before '_' is what
    align_recall@K.py compares with poi_id; download_images.py writes these names)."""
    return '%s_%s.jpg' % (row.poi_id, row.rank_number)
