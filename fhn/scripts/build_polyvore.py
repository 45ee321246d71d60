#!/usr/bin/env python
"""Polyvore images -> LMDB: `build_polyvore.py SRC_DIR DST_LMDB` (upstream scripts/build_polyvore.py).

Key = image file name (ASCII), value = the raw file bytes (JPEG), one write transaction.
"""
import os
import sys

if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import argparse  # noqa: E402
import logging  # noqa: E402

LOGGER = logging.getLogger(__name__)


def create_lmdb(dataset, image_dir, map_size=2 ** 40):
    import lmdb

    LOGGER.info("Creating LMDB to %s", dataset)
    # upstream: every entry of the folder (os.listdir, no filter); sub-folders skipped here
    image_list = sorted(f for f in os.listdir(image_dir)
                        if os.path.isfile(os.path.join(image_dir, f)))
    env = lmdb.open(dataset, map_size=map_size)
    with env.begin(write=True) as txn:
        for image_name in image_list:
            with open(os.path.join(image_dir, image_name), "rb") as f:
                txn.put(image_name.encode("ascii"), f.read())
    env.close()
    LOGGER.info("Converted Polyvore to LDMB (%d images)", len(image_list))
    return len(image_list)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Create LMDB")
    parser.add_argument("src", default="data/polyvore/images/291x291", type=str,
                        help="image folder for polyvore dataset")
    parser.add_argument("dst", type=str, help="folder to save lmdb")
    parser.add_argument("--map_size", type=int, default=2 ** 40,
                        help="LMDB map size in bytes (upstream: 2**40)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] - %(asctime)s - %(message)s")
    if not os.path.isdir(args.src):
        print("error: image folder not found: %s" % args.src, file=sys.stderr)
        return 2
    try:
        count = create_lmdb(args.dst, args.src, args.map_size)
    except UnicodeEncodeError as err:
        print("error: image names must be ASCII (%s)" % err, file=sys.stderr)
        return 2
    print("%d images written to %s" % (count, args.dst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
