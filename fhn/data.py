"""Polyvore-U outfit data: tuple files, negatives, LMDB images, loaders (upstream polyvore/data)."""
import io
import logging
import os

import lmdb
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from common.checkpoint import CheckpointError, load_pickle
from common.errors import InputError
from fhn.image_store import check_lmdb

SEMANTIC_DIM = 2400  # sentence vectors (the text encoder's input size, fixed upstream)

LOGGER = logging.getLogger(__name__)

DATA_MODES = [
    "TupleOnly", "PosiOnly", "NegaOnly", "PairWise", "TripleWise",
    "TuplePosi", "TupleNega", "TuplePair",
]
NEGA_MODES = ["RandomOnline", "RandomFix", "HardOnline", "HardFix"]


class DataError(InputError, ValueError):
    """A data file is missing or malformed (message names file and line)."""


def get_img_trans(phase, image_size=291):
    """Image transforms (upstream transforms.py:38-67): 291 -> no resize, else 224 crops."""
    normalize = T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    if phase == "train":
        if image_size == 291:
            return T.Compose([T.RandomHorizontalFlip(), T.ToTensor(), normalize])
        return T.Compose(
            [T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), normalize]
        )
    if phase in ["test", "val"]:
        if image_size == 291:
            return T.Compose([T.ToTensor(), normalize])
        return T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), normalize])
    raise KeyError("phase must be train, val or test, got %r" % phase)


def read_tuples(path, num_cols=None):
    """Read a tuple CSV (header + integer rows) into an int64 array [N, C]."""
    if not os.path.isfile(path):
        raise DataError("missing tuple file: %s" % path)
    with open(path) as f:
        header = f.readline().strip().split(",")
        rows = []
        for lineno, line in enumerate(f, start=2):
            if not line.strip():
                continue
            fields = line.strip().split(",")
            if len(fields) != len(header):
                raise DataError(
                    "%s:%d: expected %d fields (%s), got %d"
                    % (path, lineno, len(header), ",".join(header), len(fields))
                )
            try:
                rows.append([int(x) for x in fields])
            except ValueError:
                raise DataError("%s:%d: non-integer field in %r" % (path, lineno, line.strip()))
    if num_cols is not None and len(header) != num_cols:
        raise DataError(
            "%s:1: expected %d columns, header has %d (%s)"
            % (path, num_cols, len(header), ",".join(header))
        )
    return np.array(rows, dtype=np.int64).reshape(-1, len(header))


def read_image_list(image_list_fn):
    """image_list[c][n] = file name of the n-th item of category c."""
    lists = []
    for fn in image_list_fn:
        if not os.path.isfile(fn):
            raise DataError("missing image list: %s" % fn)
        with open(fn) as f:
            lists.append(f.read().splitlines())
    return lists


def load_semantic_data(semantic_fn):
    """{image name: vector}: upstream's pickle, read through the allow-list (numpy only)."""
    if not os.path.isfile(semantic_fn):
        raise DataError("missing sentence vectors: %s" % semantic_fn)
    try:
        data = load_pickle(semantic_fn)
    except CheckpointError as err:
        raise DataError("sentence vectors: %s" % err) from None
    if not isinstance(data, dict):
        raise DataError("%s: expected a dict {image name: vector}, found %s"
                        % (semantic_fn, type(data).__name__))
    return data


def read_item_list(posi_tpl, variable_length):
    """Items used in the split's positives, per slot (upstream fashionset.py:42-66).

    Variable length: the second-top list is padded with -1 to keep the ratio of
    one-top outfits.
    """
    outfits = posi_tpl[:, 1:]
    if variable_length:
        main_top = list(set(outfits[:, 0]))
        sub_top = set(outfits[:, 1])
        sub_top.discard(-1)
        sub_top = list(sub_top)
        bot = list(set(outfits[:, 2]))
        sho = list(set(outfits[:, 3]))
        p = sum(outfits[:, 1] == -1) / len(outfits)
        if p < 1:
            sub_top = sub_top + [-1] * int(len(sub_top) * p / (1 - p))
        else:  # port: upstream divides by zero when no outfit has two tops
            sub_top = [-1]
        return [main_top, sub_top, bot, sho]
    return [list(set(items)) for items in outfits.transpose()]


def fill_second_top(tpl):
    """Quirk (upstream fashionset.py:140-152): a -1 second top becomes the first top.

    Upstream writes into the dataset's own array; the port works on a copy (same
    outfit scored, the stored tuples stay -1).
    """
    tpl = np.array(tpl, copy=True)
    if len(tpl) == 4 and tpl[1] == -1:
        tpl[1] = tpl[0]
    return tpl


_LMDB_ENVS = {}


def open_lmdb(path):
    """One read-only environment per path and process (lmdb refuses a second open)."""
    key = (os.path.abspath(path), os.getpid())
    if key not in _LMDB_ENVS:
        check_lmdb(path)
        _LMDB_ENVS[key] = lmdb.open(path, max_readers=1, readonly=True, lock=False,
                                    readahead=False, meminit=False)
    return _LMDB_ENVS[key]


class Datum(object):
    """Loads the images / sentence vectors of one outfit."""

    def __init__(self, image_list, cate_map, use_semantic=False, semantic=None,
                 use_visual=False, image_dir="", lmdb_dir=None, transforms=None):
        self.cate_map = cate_map
        self.image_list = image_list
        self.use_semantic = use_semantic
        self.semantic = semantic
        self.use_visual = use_visual
        self.image_dir = image_dir
        self.lmdb_dir = lmdb_dir
        self.transforms = transforms
        if lmdb_dir is not None and not os.path.isdir(lmdb_dir):
            raise DataError("missing LMDB folder: %s (build it with scripts/build_polyvore.py)"
                            % lmdb_dir)

    def _lmdb(self):
        return open_lmdb(self.lmdb_dir)

    def load_image(self, c, n):
        img_name = self.image_list[c][n]
        if self.lmdb_dir:
            with self._lmdb().begin(write=False) as txn:
                buf = txn.get(img_name.encode())
            if buf is None:
                raise DataError("image %s not in LMDB %s" % (img_name, self.lmdb_dir))
            return decode(io.BytesIO(buf), "%s in LMDB %s" % (img_name, self.lmdb_dir))
        path = os.path.join(self.image_dir, img_name)
        with open(path, "rb") as f:
            return decode(f, path)

    def load_semantics(self, c, n):
        name = self.image_list[c][n]
        vec = np.asarray(self.semantic[name])
        if vec.shape != (SEMANTIC_DIM,):
            raise DataError("sentence vector of %s has shape %s, expected (%d,)"
                            % (name, vec.shape, SEMANTIC_DIM))
        return torch.from_numpy(vec.astype(np.float32))

    def has_item(self, c, n):
        """The item's picture (when images are used) and sentence vector (when used) exist."""
        name = self.image_list[c][n]
        if self.use_semantic and name not in self.semantic:
            return False
        if not self.use_visual:
            return True
        if self.lmdb_dir:
            with self._lmdb().begin(write=False) as txn:
                return txn.get(name.encode()) is not None
        return os.path.isfile(os.path.join(self.image_dir, name))

    def missing_rows(self, tuples):
        """Boolean mask of the outfits (rows of item ids, -1 = none) with a missing item."""
        mask = np.zeros(len(tuples), dtype=bool)
        known = {}
        for k, cate in enumerate(self.cate_map):
            for row, n in enumerate(tuples[:, k]):
                n = int(n)
                if n < 0:
                    continue
                if n >= len(self.image_list[cate]):
                    raise DataError("item %d of category %d does not exist: the image list has %d "
                                    "lines" % (n, cate, len(self.image_list[cate])))
                if (cate, n) not in known:
                    known[(cate, n)] = self.has_item(cate, n)
                mask[row] |= not known[(cate, n)]
        return mask

    def semantic_data(self, tpl):
        return [self.load_semantics(c, i) for i, c in zip(fill_second_top(tpl), self.cate_map)]

    def visual_data(self, tpl):
        images = []
        for idx, cate in zip(fill_second_top(tpl), self.cate_map):
            img = self.load_image(cate, idx)
            if self.transforms:
                img = self.transforms(img)
            images.append(img)
        return images

    def get(self, tpl):
        if self.use_semantic and self.use_visual:
            return self.visual_data(tpl), self.semantic_data(tpl)
        if self.use_visual:
            return self.visual_data(tpl)
        if self.use_semantic:
            return self.semantic_data(tpl)
        return tpl


def decode(f, where):
    try:
        return Image.open(f).convert("RGB")
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError("%s: corrupt image (%s); rebuild the LMDB with fhn/scripts/build_polyvore.py, "
                        "which skips corrupt images" % (where, err)) from None


def report_missing(param, dropped, total, what):
    """One printed line (or, with strict_images, an error) for outfits left out."""
    if not dropped:
        return
    store = param.lmdb_dir if (param.use_lmdb and param.use_visual) else param.image_dir
    msg = ("%s: %d of %d %s use images or sentence vectors missing from %s or %s"
           % (param.data_dir, dropped, total, what, store, param.semantic_fn))
    if param.strict_images or dropped == total:
        raise DataError(msg + "; add the missing items or remove those %s" % what)
    LOGGER.warning("%s; left out (--strict makes this an error)", msg)


def make_datum(param, transforms):
    image_list = read_image_list(param.image_list_fn)
    semantic = load_semantic_data(param.semantic_fn) if param.use_semantic else None
    return image_list, Datum(
        image_list,
        param.cate_map,
        use_semantic=param.use_semantic,
        semantic=semantic,
        use_visual=param.use_visual,
        image_dir=param.image_dir,
        lmdb_dir=param.lmdb_dir if (param.use_lmdb and param.use_visual) else None,
        transforms=transforms,
    )


class PolyvoreDataset(Dataset):
    """Positive tuples + negatives (R per positive: negative row i pairs with positive i//R)."""

    def __init__(self, param, transforms=None):
        self.param = param
        self.image_list, self.datum = make_datum(param, transforms)
        num_cols = 1 + len(param.cate_map)
        self.posi_tpl = read_tuples(param.posi_fn, num_cols)
        self.nega_tpl = read_tuples(param.nega_fn, num_cols)
        if len(self.posi_tpl) == 0:
            raise DataError("%s: no positive tuples" % param.posi_fn)
        self.posi_tpl, self.nega_tpl = self._drop_missing(self.posi_tpl, self.nega_tpl)
        self.item_list = read_item_list(self.posi_tpl, param.variable_length)
        self.item_size = [len(ilist) for ilist in self.item_list]
        self.hard_ratio = 0.8
        self.ratio = self.ratio_fix = len(self.nega_tpl) // len(self.posi_tpl)
        self.uidxs = self.posi_tpl[:, 0]
        self.posi = self.posi_tpl[:, 1:]
        self.nega = self.nega_fix = self.nega_tpl[:, 1:]
        self.num_posi = len(self.posi)
        self.num_users = len(set(self.uidxs.tolist()))
        self.posi_set = set(map(tuple, self.posi.tolist()))
        self.num_posi_per_user = np.bincount(self.uidxs)
        self.set_data_mode(param.data_mode)
        self.set_nega_mode(param.nega_mode)
        LOGGER.info("Summary for %s data set", param.phase)
        LOGGER.info("Number of users: %s", self.num_users)
        LOGGER.info("Number of items: %s", ",".join(map(str, self.item_size)))
        LOGGER.info("Number of positive outfits: %s", self.num_posi)

    def _drop_missing(self, posi, nega):
        """Leave out each positive with a missing item, together with its R fixed negatives."""
        ratio = len(nega) // len(posi)
        bad = self.datum.missing_rows(posi[:, 1:])
        if ratio:
            bad_nega = self.datum.missing_rows(nega[: ratio * len(posi), 1:])
            bad |= bad_nega.reshape(len(posi), ratio).any(axis=1)
        report_missing(self.param, int(bad.sum()), len(posi), "outfits of %s" % self.param.phase)
        if not bad.any():
            return posi, nega
        keep = ~bad
        if ratio:
            nega = nega[: ratio * len(posi)][np.repeat(keep, ratio)]
        return posi[keep], nega

    def get_image_path(self, c, n):
        return os.path.join(self.param.image_dir, self.image_list[c][n])

    def get_names(self, tpl):
        return [self.image_list[c][i] for c, i in zip(self.param.cate_map, fill_second_top(tpl))]

    def get_outfits_list(self):
        """Positive then negative tuples of each user (evaluate-rank order)."""
        tpls = [[] for _ in range(self.num_users)]
        for u, tpl in zip(self.uidxs, self.posi):
            tpls[u].append(tpl)
        for i, tpl in enumerate(self.nega):
            tpls[self.uidxs[i // self.ratio]].append(tpl)
        return tpls

    def set_nega_mode(self, mode):
        assert mode in NEGA_MODES, "Unknown negative mode."
        if self.param.data_mode == "PosiOnly":
            LOGGER.warning("Current data-mode is %s. The negative mode will be ignored!",
                           self.param.data_mode)
        else:
            LOGGER.info("Set negative mode to %s.", mode)
            self.param.nega_mode = mode
            self.make_nega()

    def set_data_mode(self, mode):
        assert mode in DATA_MODES, "Unknown data mode: %s" % mode
        LOGGER.info("Set data mode to %s.", mode)
        self.param.data_mode = mode

    def set_prob_hard(self, p):
        # quirk 9 (upstream fashionset.py:295-313): stored, never used
        self.phard = p

    def _random_nega(self, ratio=1):
        """Random mixtures of the split's items that are not a positive (unseeded np.random)."""
        row, col = self.posi.shape
        nrow = row * ratio
        drow = 2 * nrow
        nega = np.empty((drow, col), dtype=np.int64)
        for i in range(col):
            nega[:, i] = np.random.choice(self.item_list[i], drow)
        idx = []
        for i, tpl in enumerate(nega.tolist()):
            if tuple(tpl) in self.posi_set:
                continue
            idx.append(i)
            if len(idx) == nrow:
                break
        return nega.take(idx, axis=0)

    def _hard_nega(self, ratio=1):
        """Positives of other users (HardOnline)."""
        idxs = []
        num_nega_per_user = self.num_posi_per_user * ratio
        random_idx_per_user = [
            np.random.randint(self.num_posi, size=num * 3) for num in num_nega_per_user
        ]
        for uid in range(self.num_users):
            num_nega = num_nega_per_user[uid]
            random_idx = random_idx_per_user[uid]
            random_idx = random_idx[(self.uidxs[random_idx] != uid).nonzero()]
            while len(random_idx) < num_nega:
                random_idx = np.random.randint(self.num_posi, size=num_nega * 5)
                random_idx = random_idx[(self.uidxs[random_idx] != uid).nonzero()]
            idxs.append(random_idx[:num_nega])
        return self.posi.take(np.hstack(idxs), axis=0)

    def make_nega(self, ratio=1):
        LOGGER.info("Make negative outfit for mode %s ", self.param.nega_mode)
        if self.param.nega_mode == "RandomOnline":
            self.nega = self._random_nega(ratio)
            self.ratio = ratio
        if self.param.nega_mode == "HardOnline":
            rand_nega = self._random_nega(ratio)
            hard_nega = self._hard_nega(ratio)
            assert rand_nega.shape == hard_nega.shape
            nega = np.vstack((rand_nega, hard_nega))
            size = self.uidxs.size * ratio
            indicator = np.random.uniform(size=size) < self.hard_ratio
            self.nega = nega.take(np.arange(size) + indicator * size, axis=0)
            self.ratio = ratio
        if self.param.nega_mode.endswith("Fix"):
            self.nega = self.nega_fix
            self.ratio = self.ratio_fix
        if self.ratio == 0:
            raise DataError("%s: fewer negative rows than positives in %s"
                            % (self.param.nega_fn, self.param.posi_fn))

    def __getitem__(self, index):
        mode = self.param.data_mode
        if mode in ("TupleOnly", "TuplePosi", "PosiOnly", "TripleWise"):
            uidx, tpl = self.uidxs[index], self.posi[index]
            if mode == "TupleOnly":
                return self.datum.get(tpl), tpl
            if mode == "TuplePosi":
                return tpl, uidx
            if mode == "PosiOnly":
                return self.datum.get(tpl), uidx
            return self.datum.get(tpl), tpl, uidx
        uidx = self.uidxs[index // self.ratio]
        nega_tpl = self.nega[index]
        if mode == "NegaOnly":
            return self.datum.get(nega_tpl), uidx
        if mode == "TupleNega":
            return nega_tpl, uidx
        posi_tpl = self.posi[index // self.ratio]
        if mode == "TuplePair":
            return posi_tpl, nega_tpl, uidx
        return self.datum.get(posi_tpl), self.datum.get(nega_tpl), uidx

    def __len__(self):
        if self.param.data_mode in ("TupleOnly", "PosiOnly", "TripleWise", "TuplePosi"):
            return self.num_posi
        return self.ratio * self.num_posi


class _Loader(object):
    def __len__(self):
        return len(self.loader)

    @property
    def num_batch(self):
        return len(self.loader)

    @property
    def num_sample(self):
        return len(self.dataset)

    def __iter__(self):
        for data in self.loader:
            yield data


class PolyvoreLoader(_Loader):
    def __init__(self, param, sampler=None, generator=None):
        LOGGER.info("Loading data (%s) in phase (%s)", param.data_set, param.phase)
        LOGGER.info("Data loader configuration: batch size (%s) number of workers (%s)",
                    param.batch_size, param.num_workers)
        self.dataset = PolyvoreDataset(param, get_img_trans(param.phase, param.image_size))
        self.sampler = sampler
        self.loader = DataLoader(
            dataset=self.dataset,
            batch_size=param.batch_size,
            num_workers=param.num_workers,
            shuffle=param.shuffle if sampler is None else False,
            sampler=sampler,
            generator=generator,
            pin_memory=torch.cuda.is_available(),
        )
        self.num_users = self.dataset.num_users

    def make_nega(self, ratio=1):
        self.dataset.make_nega(ratio)
        return self

    def set_nega_mode(self, mode):
        self.dataset.set_nega_mode(mode)
        return self

    def set_data_mode(self, mode):
        self.dataset.set_data_mode(mode)
        return self

    def set_prob_hard(self, p):
        self.dataset.set_prob_hard(p)
        return self


class FITBDataset(Dataset):
    """Fill-in-the-blank questions: each row = num_cand outfits, the first is the truth."""

    def __init__(self, param, transforms=None):
        self.param = param
        self.image_list, self.datum = make_datum(param, transforms)
        self.fitb = read_tuples(param.fitb_fn, (1 + len(param.cate_name)) * param.num_cand)
        num = len(param.cate_name) + 1
        rows = self.fitb.reshape(-1, num)[:, 1:]
        bad = self.datum.missing_rows(rows).reshape(len(self.fitb), param.num_cand).any(axis=1)
        report_missing(param, int(bad.sum()), len(self.fitb), "FITB questions")
        self.fitb = self.fitb[~bad]
        self.num_comparisons = len(self.fitb)

    def __getitem__(self, index):
        n, i = index // self.param.num_cand, index % self.param.num_cand
        num = len(self.param.cate_name) + 1
        tpls = self.fitb[n]
        return self.datum.get(tpls[num * i + 1: num * (i + 1)]), tpls[num * i]

    def question(self, n):
        """(uidx list, tuples) of the n-th question."""
        num = len(self.param.cate_name) + 1
        rows = self.fitb[n].reshape(self.param.num_cand, num)
        return rows[:, 0], rows[:, 1:]

    def __len__(self):
        return len(self.fitb) * self.param.num_cand


class FITBLoader(_Loader):
    def __init__(self, param):
        LOGGER.info("Loading data (%s) in phase (%s)", param.data_set, param.phase)
        self.dataset = FITBDataset(param, get_img_trans(param.phase, param.image_size))
        self.loader = DataLoader(
            dataset=self.dataset,
            batch_size=param.num_cand,
            num_workers=param.num_workers,
            shuffle=False,
            pin_memory=torch.cuda.is_available(),
        )


def get_dataloader(param, **kwargs):
    name = param.__class__.__name__
    if name == "FITBDataParam":
        return FITBLoader(param)
    if name == "DataParam":
        return PolyvoreLoader(param, **kwargs)
    return None
