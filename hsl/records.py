"""`Query`, `Product` and `Scores`: the objects upstream unpickles from the parsed files.

Upstream imports them from a root `data.py` that was never published; this is the reconstruction
described in hsl/README.md section 5. Everything is stored as a few flat numpy arrays, so a 3M-row train split
pickles compactly and the box features stay in a memory-mapped `.npy`.
"""
import csv
import pickle

import numpy as np

from common.atomic import atomic_open
from common.errors import InputError
from common.safeio import load_npy, read_text_lines

VOCAB_FILE = 'kddcup_vocab.pkl'  # beside the split folders: {data_path}/{data_name}/kddcup_vocab.pkl
# the competition TSV's header, in order
COLUMNS = ('product_id', 'image_h', 'image_w', 'num_boxes', 'boxes', 'features',
           'class_labels', 'query', 'query_id')


def save_records(obj, path):
    """Pickle a Query or Product atomically: upstream's main.py unpickles these files, so they stay
    pickles (this repository reads them back through the allow-list loader only)."""
    with atomic_open(path, 'wb') as f:
        pickle.dump(obj, f, protocol=4)


def box_areas(boxes):
    """(b[:,2]-b[:,0]) * (b[:,3]-b[:,1]): the same under [top,left,bottom,right] and [x1,y1,x2,y2]."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def top_k_boxes(boxes, top_k):
    """Row indices of the top_k largest boxes, largest first, ties in file order (stable sort)."""
    return np.argsort(-box_areas(boxes), kind='stable')[:top_k]


class Product(object):
    """All products of a split: per product its feature-row offset, num_boxes, boxes, labels, h, w.

    Box features are not pickled: `load_images(ids.txt, features.npy)` maps them from disk.
    `prods(product_id, top_k)` -> float32 (m, feature_dim), 1 <= m <= top_k.
    """

    def __init__(self, product_ids, num_boxes, boxes, class_labels, image_h, image_w):
        self.product_ids = np.asarray(product_ids, dtype=np.int64)
        self.num_boxes = np.asarray(num_boxes, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.num_boxes)[:-1]]).astype(np.int64)
        self.boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        self.class_labels = np.asarray(class_labels, dtype=np.int64)
        self.image_h = np.asarray(image_h, dtype=np.int64)
        self.image_w = np.asarray(image_w, dtype=np.int64)
        self.features = None
        self.features_path = None
        self._index = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state['features'] = None  # never pickle the (memory-mapped) features
        state['_index'] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self.__dict__.get('features_path'):  # e.g. a DataLoader worker started with 'spawn'
            self.features = np.load(self.features_path, mmap_mode='r')

    def __len__(self):
        return len(self.product_ids)

    def index(self, product_id):
        if self._index is None:
            self._index = {int(p): i for i, p in enumerate(self.product_ids)}
        try:
            return self._index[int(product_id)]
        except KeyError:
            raise KeyError('product %s is not in this split' % product_id) from None

    def load_images(self, ids_path, features_path):
        """Memory-map the features; ids.txt must list this object's products in order."""
        ids = [line.strip() for line in read_text_lines(ids_path, 'product id list') if line.strip()]
        for number, text in enumerate(ids, 1):
            if not text.isdigit():
                raise InputError('%s:%d: not a product id: %r; re-run parse_dataset.py'
                                 % (ids_path, number, text[:40]))
        if len(ids) != len(self) or any(int(a) != int(b) for a, b in zip(ids, self.product_ids)):
            raise InputError('%s does not match the products pickle (%d ids vs %d products); '
                             're-run parse_dataset.py' % (ids_path, len(ids), len(self)))
        self.features = load_npy(features_path, mmap_mode='r', ndim=2, what='box features')
        self.features_path = features_path
        if self.features.shape[0] != int(self.num_boxes.sum()):
            raise InputError('%s has %d rows, the products pickle expects %d boxes; re-run '
                             'parse_dataset.py' % (features_path, self.features.shape[0],
                                                   int(self.num_boxes.sum())))

    def box_rows(self, product_id, top_k):
        """Feature-row numbers of the kept boxes of one product."""
        i = self.index(product_id)
        start, n = int(self.offsets[i]), int(self.num_boxes[i])
        return start + top_k_boxes(self.boxes[start:start + n], top_k)

    def __call__(self, product_id, top_k):
        return np.asarray(self.features[self.box_rows(product_id, top_k)], dtype=np.float32)


class Query(object):
    """Queries of a split.

    train: `queries(i)` -> (query_text, product_id)
    valid: `queries(i)` -> ((query_id as str, query_text), [candidate product ids in row order])
    Texts are stored once; rows point at them.
    """

    def __init__(self, split_kind, texts, text_index, product_ids, query_ids=None, pool_offsets=None):
        self.split_kind = split_kind
        self.texts = list(texts)
        self.text_index = np.asarray(text_index, dtype=np.int64)
        self.product_ids = np.asarray(product_ids, dtype=np.int64)
        self.query_ids = None if query_ids is None else [str(q) for q in query_ids]
        self.pool_offsets = None if pool_offsets is None else np.asarray(pool_offsets, dtype=np.int64)

    def __len__(self):
        return len(self.text_index)

    def text(self, i):
        return self.texts[self.text_index[i]]

    def pool(self, i):
        return [int(p) for p in self.product_ids[self.pool_offsets[i]:self.pool_offsets[i + 1]]]

    def __call__(self, i):
        if self.split_kind == 'train':
            return self.text(i), int(self.product_ids[i])
        return (self.query_ids[i], self.text(i)), self.pool(i)


class Scores(object):
    """(query_id, product_id, score) records; dump() writes the CSV `query_id,product_id,score`."""

    def __init__(self):
        self.items = []

    def add_item(self, query_id, product_id, score):
        self.items.append((query_id, product_id, float(score)))

    def dump(self, path):
        with atomic_open(path, 'w') as f:
            writer = csv.writer(f, lineterminator='\n')
            writer.writerow(['query_id', 'product_id', 'score'])
            for query_id, product_id, score in self.items:
                writer.writerow([query_id, product_id, repr(score)])
