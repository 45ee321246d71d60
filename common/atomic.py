"""Atomic file writes (temp file beside the target, fsync, rename), without heavy imports."""
import contextlib
import os
import tempfile


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path, mode='wb'):
    """Write to a temp file beside `path`, fsync, then rename: readers never see a partial file."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.' + os.path.basename(path) + '.', suffix='.tmp')
    try:
        encoding = None if 'b' in mode else 'utf-8'
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_copy(src, dst, chunk=1 << 20):
    """Copy `src` to `dst` through atomic_open: `dst` is the old or the complete new file, never partial."""
    with open(src, 'rb') as fin, atomic_open(dst, 'wb') as fout:
        while True:
            block = fin.read(chunk)
            if not block:
                break
            fout.write(block)
