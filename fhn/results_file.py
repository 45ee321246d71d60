"""The evaluation `result_file` (.npz merged across actions, upstream's update_npz) without pickles.

Upstream saved ragged per-user score lists as object arrays (pickles inside the npz). Here a
ragged list `key` is stored as two plain arrays: `key` (all values, user after user) and
`key__sizes` (values per user); `read_result_file` gives the per-user lists back.
"""
import os

import numpy as np

from common.errors import InputError
from common.safeio import load_npz, save_npz_atomic

SIZES = "__sizes"


def _is_ragged(value):
    return isinstance(value, list) and value and isinstance(value[0], (list, np.ndarray))


def pack(results):
    """{key: value} -> plain arrays (ragged lists flattened with a sizes array)."""
    packed = {}
    for key, value in results.items():
        if _is_ragged(value):
            packed[key] = np.asarray([float(x) for v in value for x in v], dtype=np.float64)
            packed[key + SIZES] = np.asarray([len(v) for v in value], dtype=np.int64)
        else:
            packed[key] = np.asarray(value)
    return packed


def unpack(arrays):
    """Inverse of `pack`: ragged keys become lists of per-user arrays again."""
    out = {}
    for key, value in arrays.items():
        if key.endswith(SIZES):
            continue
        sizes = arrays.get(key + SIZES)
        if sizes is not None:
            out[key] = np.split(value, np.cumsum(sizes)[:-1]) if len(sizes) else []
        else:
            out[key] = value
    return out


def read_result_file(path):
    """The results of a result_file as {key: array or list of per-user arrays}."""
    return unpack(load_npz(path, what="result_file"))


def update_npz(fn, results):
    """Merge `results` into the npz `fn` (written atomically; an older file is read without pickles)."""
    if fn is None:
        return
    if not fn.endswith(".npz"):
        fn = fn + ".npz"  # what np.savez(fn) does with a bare name
    packed = pack(results)
    if os.path.exists(fn):
        try:
            old = load_npz(fn, what="result_file")
        except InputError as err:
            raise InputError("%s (an existing result_file, merged with the new results: move it "
                             "away or set another result_file)" % err) from None
        for key in list(old):  # a ragged key written again replaces its sizes too
            base = key[:-len(SIZES)] if key.endswith(SIZES) else key
            if base in results:
                del old[key]
        old.update(packed)
        packed = old
    folder = os.path.dirname(fn)
    if folder:
        os.makedirs(folder, exist_ok=True)
    save_npz_atomic(fn, **packed)

