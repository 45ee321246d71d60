"""Atomic file writes (temp file beside the target, fsync, rename), without heavy imports."""
import contextlib
import os
import sys
import tempfile
import time

# Test hook (the kill -9 tests): XMODAL_TEST_PAUSE_IN_ATOMIC_WRITE=<file name>[@<n>] stops the n-th
# (default: first) atomic write of a file with that name after its data and before the rename,
# says so on stderr and sleeps, so a test can kill the process inside the write window.
PAUSE_ENV = 'XMODAL_TEST_PAUSE_IN_ATOMIC_WRITE'
PAUSE_MESSAGE = 'test hook: paused in the atomic write of'
_writes_seen = {}


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pause_for_tests(path):
    wanted = os.environ.get(PAUSE_ENV)
    if not wanted:
        return
    name, _, nth = wanted.partition('@')
    if name != os.path.basename(path):
        return
    _writes_seen[name] = _writes_seen.get(name, 0) + 1
    if _writes_seen[name] == int(nth or 1):
        print('%s %s' % (PAUSE_MESSAGE, path), file=sys.stderr, flush=True)
        time.sleep(600)


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
            _pause_for_tests(path)
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
