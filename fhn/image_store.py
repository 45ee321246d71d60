"""The Polyvore image store: packing a folder of JPEGs into an LMDB (key = file name, value =
raw bytes, upstream scripts/build_polyvore.py) with every image verified, and checking that an
LMDB is complete before it is read."""
import io
import logging
import os

import lmdb
from PIL import Image, UnidentifiedImageError

from common.errors import InputError

LOGGER = logging.getLogger(__name__)


def decode_error(data):
    """None when the bytes decode completely as an image, else the reason."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
        return None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        return str(err) or type(err).__name__


def pack_images(dataset, image_dir, map_size=2 ** 40, strict=False, bar=None):
    """Write every decodable image of `image_dir` into the LMDB `dataset`.

    Returns (written, skipped) with skipped = [(file name, reason)]; with strict=True the first
    bad image is an InputError and nothing is written.
    """
    LOGGER.info("Creating LMDB to %s", dataset)
    # upstream: every entry of the folder (os.listdir, no filter); sub-folders skipped here
    image_list = sorted(f for f in os.listdir(image_dir)
                        if os.path.isfile(os.path.join(image_dir, f)))
    good, skipped = [], []
    for name in image_list:
        try:
            key = name.encode("ascii")
        except UnicodeEncodeError:
            raise InputError("%s: image names must be ASCII (LMDB keys); rename it"
                             % os.path.join(image_dir, name)) from None
        with open(os.path.join(image_dir, name), "rb") as f:
            data = f.read()
        reason = decode_error(data)
        if reason is not None:
            if strict:
                raise InputError("%s: corrupt or unreadable image (%s); replace or remove it, or "
                                 "drop --strict to skip it" % (os.path.join(image_dir, name), reason))
            skipped.append((name, reason))
        else:
            good.append((key, data))
        if bar is not None:
            bar.update(1)
    env = lmdb.open(dataset, map_size=map_size)
    with env.begin(write=True) as txn:  # one transaction: a kill leaves the old database
        for key, data in good:
            txn.put(key, data)
    env.close()
    LOGGER.info("Converted Polyvore to LDMB (%d images)", len(good))
    return len(good), skipped


def check_lmdb(path):
    """InputError unless the LMDB's data file holds every page its header promises.

    A cut-short data.mdb is otherwise mapped as it is, and reading a missing page kills the
    process with SIGBUS (exit 135) and no message.
    """
    data_file = os.path.join(path, "data.mdb")
    if not os.path.isfile(data_file):
        raise InputError("%s: no data.mdb; build the LMDB with fhn/scripts/build_polyvore.py" % path)
    try:
        env = lmdb.open(path, readonly=True, lock=False, max_readers=1, readahead=False)
    except lmdb.Error as err:
        raise InputError("%s: not a readable LMDB (%s); rebuild it with fhn/scripts/build_polyvore.py"
                         % (path, err)) from None
    try:
        needed = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    finally:
        env.close()
    size = os.path.getsize(data_file)
    if size < needed:
        raise InputError("%s: truncated (%d of %d bytes); the copy or build was interrupted, "
                         "rebuild it with fhn/scripts/build_polyvore.py" % (data_file, size, needed))
