"""Checkpoint I/O: atomic writes, and a torch>=2.6-safe loader for checkpoints written by the
original code bases (pickled argparse.Namespace opts, numpy values, upstream classes such as
`vocab.Vocabulary`, legacy non-zip files with CUDA storages, Python 2 pickles).

Nothing is unpickled blindly: torch's weights-only unpickler is used with an explicit allow-list,
and upstream class paths are mapped onto our classes through `aliases`.
"""
import argparse
import collections
import os
import pickle
import re
import struct
import warnings

import numpy as np
import torch

from common.atomic import atomic_copy, atomic_open  # noqa: F401  (atomic_open re-exported: papers import it from here)


class CheckpointError(Exception):
    """A file that cannot be read as a checkpoint; the message names the file and the reason."""


def save_checkpoint(obj, path):
    """torch.save(obj, path), atomically."""
    with atomic_open(path, 'wb') as f:
        torch.save(obj, f)


def copy_to_best(src, dst):
    """Copy a checkpoint just written (e.g. checkpoint.pth.tar) to the best-model file, atomically:
    a kill during the copy leaves the previous best intact."""
    atomic_copy(src, dst)


def _numpy_globals():
    """numpy objects found in upstream checkpoints, under the names numpy 1 and numpy 2 pickle them."""
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    found = [(np.ndarray, 'numpy.ndarray'), (np.dtype, 'numpy.dtype')]
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        found.append((multiarray._reconstruct, module + '._reconstruct'))
        found.append((multiarray.scalar, module + '.scalar'))
    for dtype_cls in {type(np.dtype(c)) for c in '?bBhHiIlLqQefdgFDGUSO'}:
        found.append((dtype_cls, 'numpy.dtypes.' + dtype_cls.__name__))
    return found


_BASE_ALLOWED = [
    (argparse.Namespace, 'argparse.Namespace'),
    (collections.OrderedDict, 'collections.OrderedDict'),
    (collections.Counter, 'collections.Counter'),
    (collections.defaultdict, 'collections.defaultdict'),
    (set, 'builtins.set'), (frozenset, 'builtins.frozenset'), (slice, 'builtins.slice'),
    (complex, 'builtins.complex'),
] + _numpy_globals()


def _allow_list(aliases, allow):
    entries = list(_BASE_ALLOWED)
    for name, cls in (aliases or {}).items():
        entries.append((cls, name))
    for cls in allow:
        entries.append(cls)
    return entries


_REFUSED = re.compile(r'(?:Unsupported global: (?:GLOBAL )?|unsupported GLOBAL |Unsupported class )([\w.]+)')


def _explain(path, err):
    text = str(err)
    refused = _REFUSED.search(text)
    if refused or 'Weights only load failed' in text:
        # Name the refused global; never repeat torch's advice to retry with weights_only=False,
        # which would run whatever code the file carries.
        name = refused.group(1) if refused else 'unknown'
        return ('%s: refused: the file pickles an object that is not on the allow-list (%s), so it '
                'was not loaded and nothing in it ran. Use a checkpoint written by this repository or by the '
                'original code; if this class is a trusted upstream one, map it with '
                'load_checkpoint(..., aliases={...})' % (path, name))
    # A file cut short shows up as a missing zip directory, or as the unpickler running off the end.
    if 'central directory' in text or 'truncated' in text.lower() or \
            isinstance(err, (EOFError, IndexError, struct.error)):
        return '%s: the file is truncated or corrupt (%s)' % (path, text.splitlines()[0] if text else type(err).__name__)
    return '%s: not a readable PyTorch checkpoint (%s: %s)' % (path, type(err).__name__,
                                                                text.splitlines()[0] if text else '')


def load_checkpoint(path, map_location='cpu', aliases=None, allow=()):
    """Load a checkpoint written by torch.save (any version since 0.4) without arbitrary unpickling.

    aliases: {'upstream_module.ClassName': OurClass} for pickled upstream objects.
    allow:   extra classes (or (class, 'module.Name') pairs) that may be unpickled as themselves.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError('%s: checkpoint file not found' % path)
    if os.path.getsize(path) == 0:
        raise CheckpointError('%s: the file is empty (an interrupted save?)' % path)
    with open(path, 'rb') as f:
        magic = f.read(2)
    if magic != b'PK' and magic[:1] != b'\x80':  # zip archive, or a legacy file's pickle header
        raise CheckpointError('%s: not a PyTorch checkpoint (it starts with %r, neither a zip '
                              'archive nor a pickle)' % (path, magic))
    try:
        with torch.serialization.safe_globals(_allow_list(aliases, allow)), warnings.catch_warnings():
            # torch warns that pickle args are ignored with weights_only, yet it does pass the
            # encoding on; latin1 is what Python 2 pickles (str data, numpy buffers) need.
            warnings.filterwarnings('ignore', message='pickle_load_args only works')
            return torch.load(path, map_location=map_location, weights_only=True, encoding='latin1')
    except Exception as err:  # torch raises RuntimeError/UnpicklingError/EOFError/ValueError here
        raise CheckpointError(_explain(path, err)) from err


class _AllowListUnpickler(pickle.Unpickler):
    """pickle.Unpickler that only resolves allow-listed globals (plain builtins are always fine)."""

    _builtins = {'list', 'dict', 'tuple', 'set', 'frozenset', 'int', 'float', 'str', 'bytes',
                 'bool', 'complex', 'slice', 'bytearray', 'object'}

    def __init__(self, f, table, **kwargs):
        super().__init__(f, **kwargs)
        self._table = table

    def find_class(self, module, name):
        if module in ('builtins', '__builtin__') and name in self._builtins:
            return super().find_class('builtins', name)
        if module == 'copy_reg' and name == '_reconstructor' or \
                module == 'copyreg' and name == '_reconstructor':
            return super().find_class('copyreg', '_reconstructor')
        key = '%s.%s' % (module, name)
        if key in self._table:
            return self._table[key]
        raise pickle.UnpicklingError('Unsupported global: %s' % key)


def load_pickle(path, aliases=None, allow=()):
    """Load a plain pickle (.pkl) through the same allow-list as `load_checkpoint`."""
    path = os.fspath(path)
    table = {}
    for entry in _allow_list(aliases, allow):
        cls, name = entry if isinstance(entry, tuple) else (entry, '%s.%s' % (entry.__module__, entry.__qualname__))
        table[name] = cls
    try:
        with open(path, 'rb') as f:
            return _AllowListUnpickler(f, table, encoding='latin1').load()
    except FileNotFoundError:
        raise CheckpointError('%s: file not found' % path) from None
    except Exception as err:
        raise CheckpointError(_explain(path, err)) from err
