"""Reading untrusted files with clear errors (no pickles), and writing outputs atomically."""
import csv
import glob
import hashlib
import json
import math
import os
import tempfile
import zipfile

import numpy as np

from common.atomic import atomic_open
from common.errors import InputError


class NonFiniteError(InputError):
    """A loss or weight became NaN/inf: the run stops instead of saving wrong numbers."""


class BadImageError(InputError):
    """An image file that cannot be decoded (callers may skip and count it)."""


def _need_file(path, what):
    if not os.path.exists(path):
        raise InputError('%s: %sfile not found; check the path' % (path, what + ' ' if what else ''))
    if os.path.isdir(path):
        raise InputError('%s: is a folder, expected a %sfile' % (path, what + ' ' if what else ''))


def _npy_header(path):
    """(shape, fortran_order, dtype, data offset) of a .npy file, or InputError naming it."""
    try:
        with open(path, 'rb') as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            return shape, fortran, dtype, f.tell()
    except (ValueError, OSError, EOFError) as err:
        raise InputError('%s: not a .npy array file (%s); regenerate it' % (path, err)) from None


def _check_shape(path, found, ndim, shape, what):
    label = what + ' ' if what else ''
    if ndim is not None and len(found) != ndim:
        raise InputError('%s: %sarray has shape %s, expected %d dimensions'
                         % (path, label, tuple(found), ndim))
    if shape is not None:
        if len(found) != len(shape) or any(s is not None and s != f for s, f in zip(shape, found)):
            want = '(%s)' % ', '.join('N' if s is None else str(s) for s in shape)
            raise InputError('%s: %sarray has shape %s, expected %s; was it made with other settings?'
                             % (path, label, tuple(found), want))


def load_npy(path, mmap_mode=None, dtype=None, ndim=None, shape=None, what=''):
    """np.load of a .npy without pickles; truncation, garbage and wrong shapes name the file.

    shape: expected shape, None entries are free (e.g. (None, 36, 2048)).
    """
    path = os.fspath(path)
    _need_file(path, what)
    found, _, file_dtype, offset = _npy_header(path)
    if file_dtype.hasobject:
        raise InputError('%s: holds Python objects (a pickle); refused, since loading it could run '
                         'code. Re-save it as a plain numeric array' % path)
    expected = offset + int(np.prod(found, dtype=np.int64)) * file_dtype.itemsize
    size = os.path.getsize(path)
    if size < expected:
        raise InputError('%s: truncated (%d of %d bytes); the write was interrupted, regenerate it'
                         % (path, size, expected))
    _check_shape(path, found, ndim, shape, what)
    if dtype is not None and np.dtype(dtype).kind != file_dtype.kind:
        raise InputError('%s: %sarray has dtype %s, expected %s'
                         % (path, what + ' ' if what else '', file_dtype, np.dtype(dtype)))
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise InputError('%s: unreadable .npy (%s); regenerate it' % (path, err)) from None


def load_npz(path, what=''):
    """All arrays of an .npz as a dict, without pickles."""
    path = os.fspath(path)
    _need_file(path, what)
    if not zipfile.is_zipfile(path):  # np.load would take anything else for a pickle
        raise InputError('%s: not an .npz archive (truncated or another format); regenerate it' % path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except ValueError as err:
        if 'allow_pickle' in str(err) or 'Object arrays' in str(err):
            raise InputError('%s: holds Python objects (a pickle); refused, since loading it could '
                             'run code. Re-save it with plain arrays' % path) from None
        raise InputError('%s: unreadable .npz (%s); regenerate it' % (path, err)) from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as err:
        raise InputError('%s: not a readable .npz archive (%s); regenerate it' % (path, err)) from None


def iter_text_lines(path, what='', encoding='utf-8', keepends=False):
    """Yield the lines of a text file (newline stripped unless keepends); bad bytes name the file and line."""
    path = os.fspath(path)
    _need_file(path, what)
    with open(path, 'rb') as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode(encoding)
                yield line if keepends else line.rstrip('\r\n')
            except UnicodeDecodeError as err:
                raise InputError('%s:%d: not %s text (%s); re-save the file as %s'
                                 % (path, number, encoding.upper(), err.reason, encoding.upper())) from None


def read_text_lines(path, what='', encoding='utf-8'):
    return list(iter_text_lines(path, what, encoding))


def read_csv_rows(path, what='', encoding='utf-8', **kwargs):
    """csv.reader rows of a UTF-8 file; decoding and CSV errors name the file and line."""
    # line ends kept, as open(newline='') gives them: quoted fields may hold newlines
    reader = csv.reader(iter_text_lines(path, what, encoding, keepends=True), **kwargs)
    try:
        return list(reader)
    except csv.Error as err:
        raise InputError('%s:%d: malformed CSV (%s)' % (path, reader.line_num, err)) from None


def check_writable(path, what='output'):
    """Fail now, before long work, if `path` cannot be written (its folder is made if missing)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise InputError('%s: is a folder; the %s must be a file path' % (path, what))
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix='.write-check.', suffix='.tmp')
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise InputError('%s: cannot write the %s there (%s); choose a writable location'
                         % (path, what, err.strerror or err)) from None
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise InputError('%s: the existing %s is read-only; choose another path' % (path, what))
    return path


def check_writable_dir(folder, what='output folder'):
    """Like check_writable, for a folder that will receive several files."""
    folder = os.fspath(folder)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise InputError('%s: exists and is not a folder; the %s must be a folder' % (folder, what))
    check_writable(os.path.join(folder, '.probe'), what)
    return folder


def cleanup_stale_tmp(target):
    """Remove leftovers of interrupted atomic writes (`.NAME.*.tmp`) for a file or in a folder."""
    target = os.fspath(target)
    if os.path.isdir(target):
        pattern = os.path.join(target, '.*.tmp')
    else:
        pattern = os.path.join(os.path.dirname(os.path.abspath(target)),
                               '.%s.*.tmp' % glob.escape(os.path.basename(target)))
    removed = []
    for leftover in glob.glob(pattern):
        try:
            os.unlink(leftover)
            removed.append(leftover)
        except OSError:
            pass
    return removed


def check_finite(value, where):
    """Raise NonFiniteError when a loss (float or 0-d tensor) is NaN/inf; `where` says when."""
    number = float(value)
    if not math.isfinite(number):
        raise NonFiniteError('non-finite loss (%s) at %s; the run stops and nothing from this step is '
                             'saved. Lower the learning rate or check the inputs for NaN/inf values'
                             % (number, where))
    return number


def all_finite(state_dict):
    """True when every floating tensor of a state_dict is finite (checked before saving)."""
    import torch  # here, not at the top: the readers above must not pay torch's import time
    for value in state_dict.values():
        if isinstance(value, dict):
            if not all_finite(value):
                return False
        elif torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all():
            return False
    return True


def fingerprint(items):
    """sha256 (hex) of an ordered list of strings: a vocabulary or item list, for checkpoints."""
    h = hashlib.sha256()
    for item in items:
        h.update(str(item).encode('utf-8'))
        h.update(b'\n')
    return h.hexdigest()


def open_image(path, what='image'):
    """Decode an image fully, as RGB; a corrupt or missing file raises BadImageError naming it."""
    from PIL import Image, UnidentifiedImageError  # PIL only where images are read
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BadImageError('%s: %s file not found' % (path, what))
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert('RGB')
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise BadImageError('%s: corrupt or unreadable %s (%s); replace or remove it'
                            % (path, what, err)) from None


def verify_image(path, what='image'):
    """Raise BadImageError unless `path` decodes completely."""
    open_image(path, what)


def save_npy_atomic(path, array):
    with atomic_open(path, 'wb') as f:
        np.save(f, np.asarray(array), allow_pickle=False)


def save_npz_atomic(path, **arrays):
    with atomic_open(path, 'wb') as f:
        np.savez(f, **arrays)


def write_text_atomic(path, text):
    with atomic_open(path, 'w') as f:
        f.write(text)


def write_json_atomic(path, obj, **kwargs):
    kwargs.setdefault('indent', 2)
    with atomic_open(path, 'w') as f:
        json.dump(obj, f, **kwargs)
        f.write('\n')
