"""Precomputed Corel5K features + tag captions: dataset, collate and loaders (upstream data_provider.py).

Folder layout (upstream data_provider.py), for split in train/dev/test under `<data_path>/<data_name>/`:
    {split}_caps.txt     N lines of tags
    {split}_cnns.npy     (N, cnn_dim) global | (N, 9, cnn_dim) local    AlexNet fc7
    {split}_bovws.npy    (N, bovw_dim)       | (N, 9, bovw_dim)          BoVW histograms
    {split}_labels.npy   (N,) or (N, 1)      one class id per image
Feature row i pairs with caption line i.
"""
import os

import numpy as np
import torch
import torch.utils.data as data

from common.errors import InputError
from common.safeio import load_npy
from common.text import tokenize
from common.vocab import caption_to_ids, deserialize_vocab, pad_captions, sort_by_caption_length

N_REGIONS = 9  # 3x3 blocks of the local (fine-grained) features
FINITE_CHECK_ROWS = 256  # rows per chunk when scanning a memory-mapped feature file for NaN/inf


class DataLayoutError(InputError, ValueError):
    """A data file is missing, unreadable or has the wrong shape; the message names the file."""


def read_vocab(path):
    """A vocabulary JSON, or an InputError naming the file (missing, not JSON, fields missing)."""
    try:
        return deserialize_vocab(path)
    except FileNotFoundError:
        raise InputError('%s: vocabulary file not found; pass the --vocab_path used for training' % path) from None
    except (ValueError, UnicodeDecodeError, AttributeError, TypeError) as err:
        raise InputError('%s: not a usable vocabulary JSON (%s); rebuild it with m2hse/vocab.py'
                         % (path, str(err).replace(path + ': ', ''))) from None


def read_captions(path):
    """Caption lines as upstream's codecs.open(...) line loop + strip() reads them (CRLF-safe)."""
    with open(path, 'rb') as f:
        raw = f.read()
    try:
        text = raw.decode('utf-8')
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b'\n') + 1
        raise DataLayoutError('%s, line %d: not valid UTF-8 (%s)' % (path, line, err.reason)) from None
    # codecs' StreamReader splits lines with str.splitlines, so do we.
    return [line.strip() for line in text.splitlines()]


def _shape_text(shape):
    return '(' + ', '.join(str(s) for s in shape) + ')'


def check_split(dpath, split, level, cnn_dim, bovw_dim):
    """Check the four files of one split before anything is trained; return the caption count."""
    caps = os.path.join(dpath, '%s_caps.txt' % split)
    if not os.path.isfile(caps):
        hint = ''
        parent = os.path.join(os.path.dirname(os.path.normpath(dpath)), '%s_caps.txt' % split)
        if os.path.isfile(parent):  # upstream shipped its captions one level too high (quirk 9.4)
            hint = '; %s exists: move the split files into %s/' % (parent, dpath)
        raise DataLayoutError('missing caption file %s (expected N lines of tags; the loaders read '
                              '<data_path>/<data_name>/{split}_caps.txt)%s' % (caps, hint))
    n = len(read_captions(caps))
    if n == 0:
        raise DataLayoutError('%s: the %s split has no captions (empty file); every split needs at least '
                              'one item' % (caps, split))
    regions = (N_REGIONS,) if level == 'local' else ()
    expected = {'cnns': (n,) + regions + (cnn_dim,), 'bovws': (n,) + regions + (bovw_dim,)}
    for kind, shape in expected.items():
        path = os.path.join(dpath, '%s_%s.npy' % (split, kind))
        got = _npy_shape(path, _shape_text(shape))
        if tuple(got) != shape:
            raise DataLayoutError('%s has shape %s, expected %s for %s-level features with %d captions '
                                  'in %s' % (path, _shape_text(got), _shape_text(shape), level, n, caps))
    path = os.path.join(dpath, '%s_labels.npy' % split)
    got = _npy_shape(path, '(%d,) or (%d, 1)' % (n, n))
    if tuple(got) not in ((n,), (n, 1)):
        raise DataLayoutError('%s has shape %s, expected (%d,) or (%d, 1): one class id per caption line'
                              % (path, _shape_text(got), n, n))
    for kind in ('cnns', 'bovws', 'labels'):
        _check_finite_rows(os.path.join(dpath, '%s_%s.npy' % (split, kind)))
    return n


def _npy_shape(path, expected):
    if not os.path.isfile(path):
        raise DataLayoutError('missing file %s (expected a .npy array of shape %s)' % (path, expected))
    try:
        return load_npy(path, mmap_mode='r').shape  # refuses pickles; names truncated/garbled files
    except InputError as err:
        raise DataLayoutError('%s; expected shape %s' % (err, expected)) from None


def _check_finite_rows(path):
    """NaN/inf features would silently zero the MSB loss (no pair is mined): name the first bad row."""
    array = load_npy(path, mmap_mode='r')
    if array.dtype.kind not in 'fc':
        return
    for start in range(0, len(array), FINITE_CHECK_ROWS):
        chunk = np.asarray(array[start:start + FINITE_CHECK_ROWS])
        bad = ~np.isfinite(chunk.reshape(len(chunk), -1)).all(axis=1)
        if bad.any():
            raise DataLayoutError('%s: row %d holds NaN or inf values; fix or regenerate the features'
                                  % (path, start + int(np.argmax(bad))))


class PrecompDataset(data.Dataset):
    """Precomputed CNN/BoVW features, one tag caption and one label per image."""

    def __init__(self, data_path, data_split, vocab, level='global', cnn_dim=4096, bovw_dim=500,
                 verbose=True):
        self.vocab = vocab
        self.data_split = data_split
        check_split(data_path, data_split, level, cnn_dim, bovw_dim)
        self.captions = read_captions(os.path.join(data_path, '%s_caps.txt' % data_split))
        # memory-mapped: the local train features alone are 4493 x 9 x 4096 floats (rows are copied on use)
        self.images = load_npy(os.path.join(data_path, '%s_cnns.npy' % data_split), mmap_mode='r')
        self.bovws = load_npy(os.path.join(data_path, '%s_bovws.npy' % data_split), mmap_mode='r')
        # (N,) and (N, 1) both accepted; upstream needed (N, 1) (torch.Tensor(labels[i])).
        self.labels = load_npy(os.path.join(data_path, '%s_labels.npy' % data_split)).reshape(-1)
        self.length = len(self.captions)
        if verbose:
            print("split: %s, total images_CNN: %d, total images_BovW: %d, total captions: %d"
                  % (data_split, self.images.shape[0], self.bovws.shape[0], self.length))

    def encode_caption(self, caption):
        return caption_to_ids(self.vocab, str(caption), tokenize)

    def __getitem__(self, index):
        image = torch.from_numpy(np.array(self.images[index], dtype=np.float32))
        bovw = torch.from_numpy(np.array(self.bovws[index], dtype=np.float32))
        # upstream torch.Tensor(label): labels are compared as float32 in the loss
        lab = float(np.float32(self.labels[index]))
        target = torch.tensor(self.encode_caption(self.captions[index]), dtype=torch.long)
        return image, target, index, lab, bovw

    def __len__(self):
        return self.length


def collate_fn(batch):
    """Sort by caption length (descending, stable) and pad; returns upstream's 7-tuple.

    `ids` is a list (upstream: a tuple that only worked after pin_memory turned it into a list) and
    `lab` a float32 (B,) tensor (upstream: a tuple of (1,) tensors that the loss concatenated).
    """
    images, captions, ids, lab, bovws = zip(*sort_by_caption_length(batch))
    images = torch.stack(images, 0)
    bovws = torch.stack(bovws, 0)
    targets, lengths = pad_captions(captions)
    lengths = torch.tensor(lengths, dtype=torch.long)
    masks = (torch.arange(targets.shape[1]) < lengths[:, None]).long()
    return images, targets, lengths, masks, list(ids), torch.tensor(lab, dtype=torch.float32), bovws


def get_precomp_loader(data_path, data_split, vocab, batch_size=100, shuffle=True, level='global',
                       cnn_dim=4096, bovw_dim=500, workers=0, sampler=None, generator=None,
                       worker_init_fn=None, pin_memory=False):
    dset = PrecompDataset(data_path, data_split, vocab, level, cnn_dim, bovw_dim)
    return torch.utils.data.DataLoader(dataset=dset, batch_size=batch_size,
                                       shuffle=shuffle and sampler is None, sampler=sampler,
                                       pin_memory=pin_memory, num_workers=workers,
                                       collate_fn=collate_fn, generator=generator,
                                       worker_init_fn=worker_init_fn)


def split_dir(opt):
    """upstream data_provider.py:92 reads <data_path>/<data_name>/ (quirk 9.4)."""
    return os.path.join(opt.data_path, opt.data_name)


def get_test_loader(level, vocab, opt, split='test'):
    """Unshuffled loader in file order; upstream always reads the `test` files (quirk 9.6)."""
    return get_precomp_loader(split_dir(opt), split, vocab, opt.batch_size, False, level,
                              opt.cnn_dim, opt.bovw_dim)
